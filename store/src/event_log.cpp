#include "herald/store/event_log.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <rocksdb/iterator.h>

#include "event_log_impl.hpp"
#include "group_format.hpp"
#include "herald/core/errc.hpp"

namespace herald::store {

namespace detail {

std::string dir_prefix(const std::string& dir) {
  return fmt::format("data directory '{}'", dir);
}

caf::error corrupt_error(const std::string& dir, const std::string& what) {
  return make_error(errc::corrupt_log,
                    fmt::format("{}: the event log is corrupt ({}); restore it "
                                "from a backup or move it away to start a new "
                                "stream",
                                dir_prefix(dir), what));
}

caf::error read_error(const std::string& dir, const rocksdb::Status& st) {
  if (st.IsCorruption())
    return corrupt_error(dir, st.ToString());
  return make_error(errc::io_error,
                    fmt::format("{}: cannot read the event log ({}); check the "
                                "disk and the directory's permissions",
                                dir_prefix(dir), st.ToString()));
}

caf::error write_error(const std::string& dir, const rocksdb::Status& st) {
  return make_error(errc::io_error,
                    fmt::format("{}: cannot write the event log ({}); free "
                                "disk space; publishing resumes once there is "
                                "space",
                                dir_prefix(dir), st.ToString()));
}

} // namespace detail

using namespace detail;

// -- writes -----------------------------------------------------------------

void event_log::impl::note_write_failure(const rocksdb::Status& st) {
  {
    std::lock_guard<std::mutex> guard{write_error_mtx};
    write_error_text = st.ToString();
  }
  write_failed.store(true, std::memory_order_release);
}

rocksdb::Status event_log::impl::resume_locked() {
  // Cleared before the resume: a write that fails meanwhile sets it
  // again, so its error is resumed from too.
  if (!write_failed.exchange(false, std::memory_order_acq_rel))
    return rocksdb::Status::OK();
  // Cheap when RocksDB has no background error; otherwise it flushes the
  // memtables and clears the error, or fails while the cause (no space)
  // lasts.
  auto resumed = db->Resume();
  if (!resumed.ok()) {
    write_failed.store(true, std::memory_order_release);
    return resumed;
  }
  std::lock_guard<std::mutex> guard{write_error_mtx};
  write_error_text.clear();
  return resumed;
}

rocksdb::Status event_log::impl::write(const rocksdb::WriteOptions& wo,
                                       rocksdb::WriteBatch& batch) {
  if (write_failed.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> guard{resume_mtx};
    // Nothing is written while the resume fails: writing through a WAL
    // that failed is not allowed. Busy: RocksDB's own recovery from
    // another kind of error runs (the one from a full disk is turned off,
    // see open_db). Not a success: the write below tells whether it is
    // done, and the next write resumes again.
    if (auto resumed = resume_locked(); !resumed.ok() && !resumed.IsBusy())
      return resumed;
  }
  auto s = db->Write(wo, &batch);
  if (!s.ok())
    note_write_failure(s);
  return s;
}

caf::error event_log::writable() {
  auto& self = *impl_;
  if (self.write_failed.load(std::memory_order_acquire)) {
    std::unique_lock<std::mutex> guard{self.resume_mtx, std::try_to_lock};
    if (guard.owns_lock())
      self.resume_locked();
  }
  if (!self.write_failed.load(std::memory_order_acquire))
    return {};
  std::lock_guard<std::mutex> guard{self.write_error_mtx};
  return make_error(errc::io_error,
                    fmt::format("{}: cannot write the event log ({})",
                                dir_prefix(self.opts.dir),
                                self.write_error_text));
}

// -- commit_ticket ----------------------------------------------------------

caf::error commit_ticket::wait() const {
  std::unique_lock<std::mutex> guard{mtx_};
  cv_.wait(guard, [this] {
    return done_;
  });
  return err_;
}

std::optional<caf::error>
commit_ticket::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!cv_.wait_for(guard, timeout, [this] {
        return done_;
      }))
    return std::nullopt;
  return err_;
}

bool commit_ticket::done() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return done_;
}

void commit_ticket::complete(caf::error err) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (done_)
      return;
    err_ = std::move(err);
    done_ = true;
  }
  cv_.notify_all();
}

// -- parse_fsync_policy -----------------------------------------------------

caf::expected<fsync_policy> parse_fsync_policy(std::string_view text) {
  if (text == "always")
    return fsync_policy::always;
  if (text == "batch")
    return fsync_policy::batch;
  if (text == "os")
    return fsync_policy::os;
  return make_error(errc::invalid_config,
                    fmt::format("fsync policy '{}': must be \"always\", "
                                "\"batch\" or \"os\"; use \"batch\" (the "
                                "default) unless you know why not",
                                text));
}

// -- impl -------------------------------------------------------------------

event_log::impl::~impl() {
  {
    std::unique_lock<std::mutex> guard{queue_mtx};
    stop = true;
    // Publishers waiting for room give up; none may still be inside
    // `wait_for_room` once the log is gone.
    room_cv.notify_all();
    room_cv.wait(guard, [this] {
      return room_waiters == 0;
    });
  }
  queue_cv.notify_all();
  if (committer.joinable())
    committer.join();
  if (db) {
    for (auto* cf :
         {cf_default, cf_events, cf_meta, cf_offsets, cf_dead_letters})
      if (cf != nullptr)
        db->DestroyColumnFamilyHandle(cf);
    db->Close();
    db.reset();
  }
}

// -- event_log --------------------------------------------------------------

event_log::event_log(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

event_log::~event_log() = default;

const std::string& event_log::stream_id() const noexcept {
  return impl_->stream_id;
}

uint64_t event_log::last_seq() const noexcept {
  return impl_->last_seq.load(std::memory_order_acquire);
}

uint64_t event_log::head() const noexcept {
  return impl_->head.load(std::memory_order_acquire);
}

uint64_t event_log::first() const noexcept {
  return impl_->first.load(std::memory_order_acquire);
}

caf::expected<std::optional<int64_t>> event_log::first_timestamp() const {
  auto& self = *impl_;
  auto from = first();
  if (from > head())
    return std::optional<int64_t>{};
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(self.read_options(), self.cf_events)};
  // The group holding `from` starts at or before it.
  it->SeekForPrev(be64{from}.slice());
  if (!it->Valid() && it->status().ok())
    it->Seek(be64{from}.slice());
  for (; it->Valid(); it->Next()) {
    auto key = it->key();
    if (key.size() != 8)
      return corrupt_error(self.opts.dir, "an events key is not 8 bytes");
    group_reader g{get_be64(key.data()), it->value().ToStringView()};
    entry_view e;
    while (g.next(e))
      if (e.seq >= from)
        return std::optional<int64_t>{e.timestamp_us};
    if (g.corrupt())
      return corrupt_error(self.opts.dir,
                           fmt::format("the group of events at seq {} is "
                                       "malformed",
                                       get_be64(key.data())));
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  return std::optional<int64_t>{};
}

std::unordered_map<std::string, uint64_t> event_log::type_heads() const {
  std::lock_guard<std::mutex> guard{impl_->heads_mtx};
  return impl_->type_heads;
}

void event_log::on_commit(commit_callback cb) {
  auto ptr = std::make_shared<const commit_callback>(std::move(cb));
  std::lock_guard<std::mutex> guard{impl_->queue_mtx};
  impl_->callback = std::move(ptr);
}

caf::expected<read_result> event_log::read(
  uint64_t from, uint64_t to, size_t max_count, size_t max_bytes,
  const std::function<bool(std::string_view type)>& accept) const {
  auto& self = *impl_;
  read_result res;
  res.head = head();
  res.first = first();
  from = std::max<uint64_t>(from, 1);
  res.next = from;
  to = std::min(to, res.head);
  if (from > to || max_count == 0)
    return res;
  auto ro = self.read_options();
  be64 upper{to == std::numeric_limits<uint64_t>::max() ? to : to + 1};
  rocksdb::Slice upper_slice = upper.slice();
  if (to != std::numeric_limits<uint64_t>::max())
    ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_events)};
  size_t bytes = 0;
  bool exhausted = true;
  bool done = false;
  // The group holding `from` starts at or before it.
  it->SeekForPrev(be64{from}.slice());
  if (!it->Valid() && it->status().ok())
    it->Seek(be64{from}.slice());
  for (; it->Valid() && !done; it->Next()) {
    auto key = it->key();
    if (key.size() != 8)
      return corrupt_error(self.opts.dir, "an events key is not 8 bytes");
    group_reader g{get_be64(key.data()), it->value().ToStringView()};
    entry_view e;
    while (g.next(e)) {
      if (e.seq < from)
        continue;
      if (e.seq > to) {
        done = true;
        break;
      }
      if (accept && !accept(e.type)) {
        res.next = e.seq + 1;
        continue;
      }
      if (!res.events.empty() && bytes + e.envelope.size() > max_bytes) {
        exhausted = false;
        done = true;
        break;
      }
      res.events.push_back(stored_event{e.seq, std::string{e.envelope}});
      bytes += e.envelope.size();
      res.next = e.seq + 1;
      if (res.events.size() >= max_count || bytes >= max_bytes) {
        exhausted = false;
        done = true;
        break;
      }
    }
    if (g.corrupt())
      return corrupt_error(self.opts.dir,
                           fmt::format("the group of events at seq {} is "
                                       "malformed",
                                       get_be64(key.data())));
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  // Everything up to `to` was looked at: skip holes (deleted or never
  // written seqs) at the end of the range too.
  if (exhausted)
    res.next = to + 1;
  return res;
}

caf::expected<uint64_t> event_log::seq_at_or_after(int64_t time_us) const {
  auto& self = *impl_;
  auto end = head() + 1;
  // The answer lies in [lo, hi]; `found` is the first event at or after
  // `time_us` of the lowest group known to reach it.
  uint64_t lo = first();
  uint64_t hi = end;
  uint64_t found = end;
  auto ro = self.read_options();
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_events)};
  while (lo < hi) {
    auto mid = lo + (hi - lo) / 2;
    // The group holding `mid` starts at or before it.
    it->SeekForPrev(be64{mid}.slice());
    if (!it->Valid()) {
      if (!it->status().ok())
        return read_error(self.opts.dir, it->status());
      lo = mid + 1; // nothing retained at or before `mid`
      continue;
    }
    auto key = it->key();
    if (key.size() != 8)
      return corrupt_error(self.opts.dir, "an events key is not 8 bytes");
    auto group = get_be64(key.data());
    group_reader g{group, it->value().ToStringView()};
    entry_view e;
    uint64_t reached = 0; // the group's first event at or after time_us
    while (g.next(e))
      if (reached == 0 && e.timestamp_us >= time_us)
        reached = e.seq;
    if (g.corrupt())
      return corrupt_error(self.opts.dir,
                           fmt::format("the group of events at seq {} is "
                                       "malformed",
                                       group));
    if (reached == 0) {
      // All of the group is older (and `mid` is in it or in a hole after
      // it): the answer comes later.
      lo = std::max(g.end_seq(), mid + 1);
    } else {
      // The group reaches the time: the answer is here or in an earlier
      // group.
      found = reached;
      hi = group;
    }
  }
  return found;
}

} // namespace herald::store
