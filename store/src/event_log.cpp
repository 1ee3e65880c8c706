#include "herald/store/event_log.hpp"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/write_batch.h>

#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"

namespace herald::store {

namespace {

// The most records or envelope bytes in one commit group.
constexpr size_t max_group_records = 1024;

// With fsync `os`, the appending thread writes its record itself unless it
// appends fast: more than `lead_burst` appends in a row, each within
// `lead_gap` of the one before (see event_log::append).
constexpr auto lead_gap = std::chrono::microseconds{5};
constexpr size_t lead_burst = 32;
constexpr size_t max_group_bytes = size_t{512} << 10;

// One value in `events` holds one commit group: its key is the group's first
// seq, and the value is a count (4 bytes BE) followed by that many entries of
// timestamp (8 bytes BE), type length (2 bytes BE), type, envelope length
// (4 bytes BE), envelope. Entry i has seq key + i. One RocksDB write per
// group instead of per event keeps the committer's cost per event small;
// retention deletes whole groups.
constexpr size_t entry_header_size = 14;

// A parsed entry of a group value; views into the value.
struct entry_view {
  uint64_t seq = 0;
  int64_t timestamp_us = 0;
  std::string_view type;
  std::string_view envelope;
};

// Walks the entries of one group value. `next` returns false at the end;
// `corrupt` tells whether it stopped on a malformed entry.
class group_reader {
public:
  group_reader(uint64_t first_seq, std::string_view value)
      : seq_(first_seq), rest_(value) {
    if (rest_.size() < 4) {
      corrupt_ = true;
      return;
    }
    left_ = (uint32_t{static_cast<unsigned char>(rest_[0])} << 24)
            | (uint32_t{static_cast<unsigned char>(rest_[1])} << 16)
            | (uint32_t{static_cast<unsigned char>(rest_[2])} << 8)
            | uint32_t{static_cast<unsigned char>(rest_[3])};
    rest_.remove_prefix(4);
  }

  bool next(entry_view& out) {
    if (corrupt_ || left_ == 0)
      return false;
    if (rest_.size() < entry_header_size)
      return fail();
    auto byte = [this](size_t i) {
      return static_cast<uint64_t>(static_cast<unsigned char>(rest_[i]));
    };
    uint64_t ts = 0;
    for (size_t i = 0; i < 8; ++i)
      ts = (ts << 8) | byte(i);
    auto tlen = static_cast<size_t>((byte(8) << 8) | byte(9));
    auto elen = static_cast<size_t>((byte(10) << 24) | (byte(11) << 16)
                                    | (byte(12) << 8) | byte(13));
    if (rest_.size() < entry_header_size + tlen + elen)
      return fail();
    out.seq = seq_++;
    out.timestamp_us = static_cast<int64_t>(ts);
    out.type = rest_.substr(entry_header_size, tlen);
    out.envelope = rest_.substr(entry_header_size + tlen, elen);
    rest_.remove_prefix(entry_header_size + tlen + elen);
    --left_;
    return true;
  }

  /// The seq after the group's last entry, once `next` returned false.
  uint64_t end_seq() const noexcept {
    return seq_ + left_;
  }

  bool corrupt() const noexcept {
    return corrupt_ || (left_ == 0 && !rest_.empty());
  }

private:
  bool fail() {
    corrupt_ = true;
    return false;
  }
  uint64_t seq_;
  std::string_view rest_;
  uint32_t left_ = 0;
  bool corrupt_ = false;
};

constexpr std::string_view meta_stream_id = "stream_id";
constexpr std::string_view meta_last_seq = "last_seq";
constexpr std::string_view meta_type_prefix = "type:";
// The last dead-letter id ever assigned: with it an id stays unused even
// when the newest letter was removed before a restart.
constexpr std::string_view meta_last_dead_letter = "last_dead_letter";

void put_be64(char* out, uint64_t x) noexcept {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(x & 0xff);
    x >>= 8;
  }
}

uint64_t get_be64(const char* in) noexcept {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i)
    x = (x << 8) | static_cast<unsigned char>(in[i]);
  return x;
}

struct be64 {
  explicit be64(uint64_t x) noexcept {
    put_be64(buf, x);
  }
  rocksdb::Slice slice() const noexcept {
    return {buf, sizeof(buf)};
  }
  char buf[8];
};

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

/// The error of a failed read: corruption or plain I/O.
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

} // namespace

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

struct event_log::impl {
  log_options opts;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* cf_default = nullptr;
  rocksdb::ColumnFamilyHandle* cf_events = nullptr;
  rocksdb::ColumnFamilyHandle* cf_meta = nullptr;
  rocksdb::ColumnFamilyHandle* cf_offsets = nullptr;
  rocksdb::ColumnFamilyHandle* cf_dead_letters = nullptr;
  std::string stream_id;

  std::atomic<uint64_t> last_seq{0};
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> first{1};

  mutable std::mutex heads_mtx;
  std::unordered_map<std::string, uint64_t> type_heads;

  // Guards enforce_retention against itself.
  std::mutex retention_mtx;

  // Serializes the writers of dead letters: ids are assigned, and the count
  // changes, in the order of their writes.
  std::mutex dead_letters_mtx;
  // The last dead-letter id assigned; guarded by dead_letters_mtx.
  uint64_t last_dead_letter = 0;
  // Like `needs_resume`, for the writers of dead letters; guarded by
  // dead_letters_mtx.
  bool dead_letters_need_resume = false;
  std::atomic<uint64_t> dead_letter_count{0};

  // The queue of the committer, guarded by `mtx`.
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<record> queue;
  size_t queued_bytes = 0;
  // Open tickets, oldest first, each with the last seq it covers.
  struct open_ticket {
    std::shared_ptr<commit_ticket> ticket;
    uint64_t last = 0;
  };
  std::deque<open_ticket> tickets;
  size_t ticket_records = 0; // records on tickets.back()
  std::shared_ptr<const commit_callback> callback;
  bool stop = false;
  // Whether records are being written (by the committer, or by a publisher
  // writing its own record, see `append`): nobody else may write then.
  bool busy = false;
  // When the last append came, for the choice of who writes (`append`).
  std::chrono::steady_clock::time_point last_append;
  // Appends in a row that came within `lead_gap` of the one before.
  size_t fast_appends = 0;
  std::thread committer;

  // State of the committer thread only.
  rocksdb::WriteBatch batch;
  std::string value; // the group value being built
  std::unordered_map<std::string_view, uint64_t> group_heads;
  bool needs_resume = false;

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stop = true;
    }
    cv.notify_all();
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

  rocksdb::ReadOptions read_options() const {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    return ro;
  }

  // Writes that must be durable once they return, per the fsync policy.
  rocksdb::WriteOptions durable_write_options() const {
    rocksdb::WriteOptions wo;
    wo.sync = opts.fsync != fsync_policy::os;
    return wo;
  }

  void run();
  caf::error write_group(std::vector<record>& group);
  rocksdb::Status write_dead_letters(rocksdb::WriteBatch& batch);
  void hand_out(const std::shared_ptr<const commit_callback>& cb,
                std::vector<record>& group, const caf::error& err);
};

void event_log::impl::run() {
  // Records taken from the queue and not yet written; consumed from `pos`
  // in capped groups. Only this thread touches them.
  std::vector<record> pending;
  size_t pos = 0;
  std::vector<record> group;
  std::vector<std::shared_ptr<commit_ticket>> done_tickets;
  std::unique_lock<std::mutex> guard{mtx};
  for (;;) {
    if (pos == pending.size()) {
      pending.clear();
      pos = 0;
      busy = false;
      cv.wait(guard, [this] {
        return stop || (!queue.empty() && !busy);
      });
      if (queue.empty() || busy)
        return; // stop requested and nothing left to write
      busy = true;
      // batch and os: group commit. Whatever queued while the last group
      // was written (and synced) goes next; nothing waits for a timer, so
      // a record waits at most for the groups ahead of it.
      pending.swap(queue);
      queued_bytes = 0;
    }
    // A group is capped (one record with `always`): a replay reads whole
    // groups, so a huge one would make every replay request slow.
    size_t take = opts.fsync == fsync_policy::always ? 1 : max_group_records;
    size_t bytes = 0;
    size_t end = pos;
    while (end < pending.size() && end - pos < take
           && (end == pos || bytes < max_group_bytes)) {
      bytes += pending[end].envelope.size() + pending[end].type.size();
      ++end;
    }
    group.assign(std::make_move_iterator(pending.begin()
                                         + static_cast<std::ptrdiff_t>(pos)),
                 std::make_move_iterator(pending.begin()
                                         + static_cast<std::ptrdiff_t>(end)));
    pos = end;
    // The tickets whose records are all in this group or before it.
    done_tickets.clear();
    while (!tickets.empty() && tickets.front().last <= group.back().seq) {
      done_tickets.push_back(std::move(tickets.front().ticket));
      tickets.pop_front();
    }
    if (tickets.empty())
      ticket_records = 0;
    auto cb = callback;
    guard.unlock();
    auto err = write_group(group);
    hand_out(cb, group, err);
    for (auto& t : done_tickets)
      t->complete(err);
    group.clear();
    guard.lock();
  }
}

// Calls the commit callback. It hands the events to the transport, and runs
// before the tickets complete: an acknowledged event is already on its way.
void event_log::impl::hand_out(const std::shared_ptr<const commit_callback>& cb,
                               std::vector<record>& group,
                               const caf::error& err) {
  if (!cb || !*cb)
    return;
  try {
    (*cb)(group, err);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "herald: event log commit callback threw: %s\n",
                 ex.what());
  } catch (...) {
    std::fprintf(stderr, "herald: event log commit callback threw\n");
  }
}

caf::error event_log::impl::write_group(std::vector<record>& group) {
  if (group.empty())
    return {};
  if (needs_resume) {
    // After a failed write (e.g. disk full) RocksDB refuses writes until the
    // background error is cleared; if the cause is gone this clears it.
    // While it is not, nothing is written: writing through a WAL that
    // failed is not allowed.
    // Busy: RocksDB's own recovery runs; the write below tells whether it
    // is done.
    auto resumed = db->Resume();
    if (!resumed.ok() && !resumed.IsBusy())
      return write_error(opts.dir, resumed);
    needs_resume = false;
  }
  batch.Clear();
  group_heads.clear();
  value.clear();
  auto put32 = [this](size_t x) {
    char b[4] = {static_cast<char>(x >> 24), static_cast<char>(x >> 16),
                 static_cast<char>(x >> 8), static_cast<char>(x)};
    value.append(b, 4);
  };
  put32(group.size());
  for (auto& r : group) {
    char header[10];
    put_be64(header, static_cast<uint64_t>(r.timestamp_us));
    header[8] = static_cast<char>(r.type.size() >> 8);
    header[9] = static_cast<char>(r.type.size() & 0xff);
    value.append(header, sizeof(header));
    put32(r.envelope.size());
    value.append(r.type);
    value.append(r.envelope);
    auto& h = group_heads[r.type];
    h = std::max(h, r.type_seq);
  }
  batch.Put(cf_events, be64{group.front().seq}.slice(), value);
  std::string meta_key;
  for (auto& [type, type_seq] : group_heads) {
    meta_key.assign(meta_type_prefix);
    meta_key.append(type);
    batch.Put(cf_meta, meta_key, be64{type_seq}.slice());
  }
  auto last = group.back().seq;
  batch.Put(cf_meta, meta_last_seq, be64{last}.slice());
  auto st = db->Write(durable_write_options(), &batch);
  if (!st.ok()) {
    needs_resume = true;
    return write_error(opts.dir, st);
  }
  {
    std::lock_guard<std::mutex> guard{heads_mtx};
    for (auto& [type, type_seq] : group_heads) {
      auto i = type_heads.find(std::string{type});
      if (i == type_heads.end())
        type_heads.emplace(std::string{type}, type_seq);
      else
        i->second = std::max(i->second, type_seq);
    }
  }
  head.store(std::max(head.load(std::memory_order_relaxed), last),
             std::memory_order_release);
  return {};
}

// Writes a change of the dead letters durably. REQUIRES: dead_letters_mtx.
rocksdb::Status
event_log::impl::write_dead_letters(rocksdb::WriteBatch& batch) {
  if (dead_letters_need_resume) {
    // As in write_group: after a failed write RocksDB refuses writes until
    // its background error is cleared, which this does once the cause is
    // gone.
    auto resumed = db->Resume();
    if (!resumed.ok() && !resumed.IsBusy())
      return resumed;
    dead_letters_need_resume = false;
  }
  auto s = db->Write(durable_write_options(), &batch);
  dead_letters_need_resume = !s.ok();
  return s;
}

// RocksDB's own diagnostics go to stderr, warnings and worse only, never
// to a LOG file in the data directory: on a full disk that file fails too,
// and RocksDB aborts on a second write to a failed file.
class stderr_logger : public rocksdb::Logger {
public:
  stderr_logger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::fputs("rocksdb: ", stderr);
    std::vfprintf(stderr, format, ap);
    std::fputc('\n', stderr);
  }
};

// -- event_log --------------------------------------------------------------

event_log::event_log(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

event_log::~event_log() = default;

caf::expected<std::unique_ptr<event_log>> event_log::open(log_options opts) {
  if (opts.dir.empty())
    return make_error(errc::invalid_argument,
                      "data directory '': must not be empty; set the node's "
                      "data directory");
  if (!opts.clock)
    opts.clock = [] {
      return now_us();
    };
  std::error_code ec;
  std::filesystem::create_directories(opts.dir, ec);
  if (ec)
    return make_error(errc::io_error,
                      fmt::format("{}: cannot create it ({}); check the path "
                                  "and its permissions",
                                  dir_prefix(opts.dir), ec.message()));
  auto st = std::make_unique<impl>();
  auto& self = *st;
  self.opts = std::move(opts);
  const auto& dir = self.opts.dir;

  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  options.info_log = std::make_shared<stderr_logger>();
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Reusing WAL files keeps their size, so a sync need not update file
  // metadata: fewer journal commits per fdatasync.
  options.recycle_log_file_num = 4;
  options.keep_log_file_num = 4;
  options.max_background_jobs = 2;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs{
    {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions{options}},
    {"events", rocksdb::ColumnFamilyOptions{options}},
    {"meta", rocksdb::ColumnFamilyOptions{options}},
    {"offsets", rocksdb::ColumnFamilyOptions{options}},
    {"dead_letters", rocksdb::ColumnFamilyOptions{options}},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s =
    rocksdb::DB::Open(rocksdb::DBOptions{options}, dir, cfs, &handles, &raw);
  if (!s.ok()) {
    if (s.IsCorruption())
      return corrupt_error(dir, s.ToString());
    return make_error(errc::io_error,
                      fmt::format("{}: cannot open the event log ({}); check "
                                  "that no other node uses the directory and "
                                  "that it is writable",
                                  dir_prefix(dir), s.ToString()));
  }
  self.db.reset(raw);
  self.cf_default = handles[0];
  self.cf_events = handles[1];
  self.cf_meta = handles[2];
  self.cf_offsets = handles[3];
  self.cf_dead_letters = handles[4];
  auto ro = self.read_options();

  // The stream id, made with the directory.
  std::string value;
  s = self.db->Get(ro, self.cf_meta, meta_stream_id, &value);
  if (s.ok()) {
    self.stream_id = std::move(value);
  } else if (s.IsNotFound()) {
    self.stream_id = make_uuid_v4();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = self.db->Put(wo, self.cf_meta, meta_stream_id, self.stream_id);
    if (!s.ok())
      return write_error(dir, s);
  } else {
    return read_error(dir, s);
  }

  // The head: the newest event, or the last seq ever written if retention
  // deleted it (a seq is never reused).
  uint64_t head = 0;
  s = self.db->Get(ro, self.cf_meta, meta_last_seq, &value);
  if (s.ok()) {
    if (value.size() != 8)
      return corrupt_error(dir, "meta 'last_seq' is not 8 bytes");
    head = get_be64(value.data());
  } else if (!s.IsNotFound()) {
    return read_error(dir, s);
  }
  uint64_t first = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it{
      self.db->NewIterator(ro, self.cf_events)};
    it->SeekToLast();
    if (it->Valid()) {
      if (it->key().size() != 8)
        return corrupt_error(dir, "an events key is not 8 bytes");
      group_reader g{get_be64(it->key().data()), it->value().ToStringView()};
      entry_view e;
      while (g.next(e)) {
      }
      if (g.corrupt())
        return corrupt_error(dir, "the newest group of events is malformed");
      head = std::max(head, g.end_seq() - 1);
      it->SeekToFirst();
      if (it->Valid()) {
        if (it->key().size() != 8)
          return corrupt_error(dir, "an events key is not 8 bytes");
        first = get_be64(it->key().data());
      }
    }
    if (!it->status().ok())
      return read_error(dir, it->status());
  }
  self.last_seq = head;
  self.head = head;
  self.first = first != 0 ? first : head + 1;

  // The type heads.
  {
    std::unique_ptr<rocksdb::Iterator> it{
      self.db->NewIterator(ro, self.cf_meta)};
    for (it->Seek(meta_type_prefix);
         it->Valid() && it->key().starts_with(meta_type_prefix); it->Next()) {
      if (it->value().size() != 8)
        return corrupt_error(dir, "a type head in meta is not 8 bytes");
      auto key = it->key();
      key.remove_prefix(meta_type_prefix.size());
      self.type_heads.emplace(key.ToString(), get_be64(it->value().data()));
    }
    if (!it->status().ok())
      return read_error(dir, it->status());
  }

  // The dead letters: how many there are, and the last id assigned.
  {
    s = self.db->Get(ro, self.cf_meta, meta_last_dead_letter, &value);
    if (s.ok()) {
      if (value.size() != 8)
        return corrupt_error(dir, "meta 'last_dead_letter' is not 8 bytes");
      self.last_dead_letter = get_be64(value.data());
    } else if (!s.IsNotFound()) {
      return read_error(dir, s);
    }
    std::unique_ptr<rocksdb::Iterator> it{
      self.db->NewIterator(ro, self.cf_dead_letters)};
    uint64_t count = 0;
    uint64_t last = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 8)
        return corrupt_error(dir, "a dead_letters key is not 8 bytes");
      last = get_be64(it->key().data());
      ++count;
    }
    if (!it->status().ok())
      return read_error(dir, it->status());
    self.dead_letter_count = count;
    self.last_dead_letter = std::max(self.last_dead_letter, last);
  }

  try {
    self.committer = std::thread{[ptr = st.get()] {
      ptr->run();
    }};
  } catch (const std::exception& ex) {
    return make_error(errc::io_error,
                      fmt::format("{}: cannot start the committer thread ({}); "
                                  "raise the process' thread limit",
                                  dir_prefix(dir), ex.what()));
  }
  return std::unique_ptr<event_log>{new event_log(std::move(st))};
}

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

std::unordered_map<std::string, uint64_t> event_log::type_heads() const {
  std::lock_guard<std::mutex> guard{impl_->heads_mtx};
  return impl_->type_heads;
}

void event_log::on_commit(commit_callback cb) {
  auto ptr = std::make_shared<const commit_callback>(std::move(cb));
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->callback = std::move(ptr);
}

std::shared_ptr<const commit_ticket> event_log::append(record r) {
  auto& self = *impl_;
  auto fail = [](caf::error err) {
    auto t = std::make_shared<commit_ticket>();
    t->complete(std::move(err));
    return t;
  };
  if (r.type.size() > std::numeric_limits<uint16_t>::max())
    return fail(make_error(errc::invalid_argument,
                           fmt::format("event seq {}: type name of {} bytes "
                                       "exceeds 65535; use a shorter name",
                                       r.seq, r.type.size())));
  std::shared_ptr<const commit_ticket> result;
  bool wake = false;
  bool lead = false;
  std::shared_ptr<const commit_callback> cb;
  {
    std::lock_guard<std::mutex> guard{self.mtx};
    auto last = self.last_seq.load(std::memory_order_relaxed);
    if (r.seq != last + 1)
      return fail(
        make_error(errc::invalid_argument,
                   fmt::format("{}: append of seq {} does not follow "
                               "the last seq {}; assign seq under "
                               "the stream lock",
                               dir_prefix(self.opts.dir), r.seq, last)));
    self.last_seq.store(last + 1, std::memory_order_release);
    // With `os` (no sync, a write costs microseconds) a publisher that
    // finds the log idle, at a low rate, writes its record itself: one
    // thread hand-off less on the way to consumers. At high rates records
    // queue as usual, and the committer writes them in groups.
    auto now = std::chrono::steady_clock::now();
    self.fast_appends =
      now - self.last_append < lead_gap ? self.fast_appends + 1 : 0;
    self.last_append = now;
    lead = self.opts.fsync == fsync_policy::os && !self.busy && !self.stop
           && self.queue.empty() && self.tickets.empty()
           && self.fast_appends < lead_burst;
    if (lead) {
      self.busy = true;
      cb = self.callback;
    } else {
      wake = self.queue.empty();
      self.queued_bytes += r.envelope.size() + r.type.size();
      self.queue.push_back(std::move(r));
      // A ticket covers at most a group's worth of records, so it completes
      // as soon as its records are written, even under sustained load.
      if (self.tickets.empty() || self.ticket_records >= max_group_records) {
        self.tickets.push_back({std::make_shared<commit_ticket>(), 0});
        self.ticket_records = 0;
      }
      self.tickets.back().last = last + 1;
      ++self.ticket_records;
      result = self.tickets.back().ticket;
    }
  }
  if (lead) {
    std::vector<record> group;
    group.push_back(std::move(r));
    auto err = self.write_group(group);
    self.hand_out(cb, group, err);
    auto ticket = std::make_shared<commit_ticket>();
    ticket->complete(err);
    result = std::move(ticket);
    std::lock_guard<std::mutex> guard{self.mtx};
    self.busy = false;
    // Measured from the end of this write: a publisher that appends again
    // right away is publishing fast, and its records should queue.
    self.last_append = std::chrono::steady_clock::now();
    wake = !self.queue.empty() || self.stop;
  }
  if (wake)
    self.cv.notify_one();
  return result;
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

caf::expected<uint64_t> event_log::enforce_retention() {
  auto& self = *impl_;
  std::lock_guard<std::mutex> guard{self.retention_mtx};
  auto cutoff = self.opts.clock() - self.opts.retention.count();
  auto ro = self.read_options();
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_events)};
  uint64_t first = 0;
  uint64_t end = 0;       // one past the last expired seq
  uint64_t unexpired = 0; // the oldest seq kept, if any
  uint64_t count = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = it->key();
    if (key.size() != 8)
      return corrupt_error(self.opts.dir, "an events key is not 8 bytes");
    auto seq = get_be64(key.data());
    // A group expires whole, once its newest event has.
    group_reader g{seq, it->value().ToStringView()};
    entry_view e;
    int64_t newest = std::numeric_limits<int64_t>::min();
    uint64_t n = 0;
    while (g.next(e)) {
      newest = std::max(newest, e.timestamp_us);
      ++n;
    }
    if (g.corrupt())
      return corrupt_error(self.opts.dir,
                           fmt::format("the group of events at seq {} is "
                                       "malformed",
                                       seq));
    if (newest >= cutoff) {
      unexpired = seq;
      break;
    }
    if (first == 0)
      first = seq;
    end = g.end_seq();
    count += n;
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  it.reset();
  if (count == 0)
    return uint64_t{0};
  rocksdb::WriteOptions wo;
  auto s = self.db->DeleteRange(wo, self.cf_events, be64{first}.slice(),
                                be64{end}.slice());
  if (!s.ok())
    return write_error(self.opts.dir, s);
  // Without an unexpired event the oldest retained one is the next append,
  // whose seq is at least `end`.
  auto next_first = unexpired != 0 ? unexpired : end;
  if (next_first > self.first.load(std::memory_order_relaxed))
    self.first.store(next_first, std::memory_order_release);
  return count;
}

namespace {

// The key of an offset: consumer '\0' stream.
std::string offset_key(std::string_view consumer, std::string_view stream) {
  std::string key;
  key.reserve(consumer.size() + 1 + stream.size());
  key.append(consumer);
  key.push_back('\0');
  key.append(stream);
  return key;
}

} // namespace

caf::error event_log::commit_offset(std::string_view consumer,
                                    std::string_view stream, uint64_t seq) {
  auto& self = *impl_;
  auto key = offset_key(consumer, stream);
  rocksdb::WriteOptions wo;
  wo.sync = false;
  auto s = self.db->Put(wo, self.cf_offsets, key, be64{seq}.slice());
  if (!s.ok())
    return write_error(self.opts.dir, s);
  return {};
}

uint64_t event_log::offset(std::string_view consumer,
                           std::string_view stream) const {
  auto& self = *impl_;
  auto key = offset_key(consumer, stream);
  std::string value;
  auto s = self.db->Get(self.read_options(), self.cf_offsets, key, &value);
  if (!s.ok() || value.size() != 8)
    return 0;
  return get_be64(value.data());
}

// -- dead letters -----------------------------------------------------------

namespace {

// A dead letter's value is a MessagePack map with these keys; the id is the
// key of the value. Unknown keys are ignored, so that a newer version can
// add fields.
constexpr const char* dl_consumer = "consumer";
constexpr const char* dl_node = "node";
constexpr const char* dl_event_type = "event_type";
constexpr const char* dl_event_id = "event_id";
constexpr const char* dl_key = "key";
constexpr const char* dl_stream = "stream";
constexpr const char* dl_seq = "seq";
constexpr const char* dl_envelope = "envelope";
constexpr const char* dl_attempts = "attempts";
constexpr const char* dl_reason = "reason";
constexpr const char* dl_parked = "parked";
constexpr const char* dl_created_us = "created_us";
constexpr const char* dl_time_us = "time_us";
constexpr const char* dl_error = "error";
constexpr const char* dl_error_class = "error_class";

std::string encode_dead_letter(const dead_letter& dl) {
  auto attempts = payload::array();
  for (auto& a : dl.attempts)
    attempts.push_back(payload{{dl_time_us, a.time_us},
                               {dl_error, a.error},
                               {dl_error_class, a.error_class}});
  payload doc{
    {dl_consumer, dl.consumer},
    {dl_node, dl.node},
    {dl_event_type, dl.event_type},
    {dl_event_id, dl.event_id},
    {dl_key, dl.key},
    {dl_stream, dl.stream},
    {dl_seq, dl.seq},
    {dl_envelope, payload::binary(std::vector<uint8_t>(dl.envelope.begin(),
                                                       dl.envelope.end()))},
    {dl_attempts, std::move(attempts)},
    {dl_reason, dl.reason},
    {dl_parked, dl.parked},
    {dl_created_us, dl.created_us},
  };
  return encode_payload(doc);
}

// The field `name` of the map `obj`; null, saying so in `why`, if missing.
const payload* field_of(const payload& obj, const char* name,
                        std::string& why) {
  auto i = obj.find(name);
  if (i == obj.end()) {
    why = fmt::format("field '{}' is missing", name);
    return nullptr;
  }
  return &*i;
}

// The read_field overloads read the field `name` of the map `obj` into
// `out`; on failure they say what was wrong in `why` and return false.

bool wrong_type(const char* name, const char* expected, std::string& why) {
  why = fmt::format("field '{}' is not {}", name, expected);
  return false;
}

bool read_field(const payload& obj, const char* name, std::string& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_string())
    return wrong_type(name, "a string", why);
  out = v->get_ref<const std::string&>();
  return true;
}

bool read_field(const payload& obj, const char* name, uint64_t& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_number_unsigned())
    return wrong_type(name, "an unsigned integer", why);
  out = v->get<uint64_t>();
  return true;
}

bool read_field(const payload& obj, const char* name, int64_t& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (v->is_number_unsigned()) {
    auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return wrong_type(name, "a 64-bit signed integer", why);
    out = static_cast<int64_t>(u);
    return true;
  }
  if (!v->is_number_integer())
    return wrong_type(name, "an integer", why);
  out = v->get<int64_t>();
  return true;
}

bool read_field(const payload& obj, const char* name, bool& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_boolean())
    return wrong_type(name, "a boolean", why);
  out = v->get<bool>();
  return true;
}

// Decodes a dead letter's value; on failure says what was wrong in `why`.
std::optional<dead_letter> decode_dead_letter(std::string_view value,
                                              std::string& why) {
  // An envelope may be as big as a frame: the letter holding it is bigger.
  decode_limits limits;
  limits.max_frame = std::max(limits.max_frame, value.size());
  limits.max_str = limits.max_frame;
  auto doc = decode_payload(value, limits);
  if (!doc) {
    why = message_of(doc.error());
    return std::nullopt;
  }
  if (!doc->is_object()) {
    why = "not a map";
    return std::nullopt;
  }
  dead_letter dl;
  if (!read_field(*doc, dl_consumer, dl.consumer, why)
      || !read_field(*doc, dl_node, dl.node, why)
      || !read_field(*doc, dl_event_type, dl.event_type, why)
      || !read_field(*doc, dl_event_id, dl.event_id, why)
      || !read_field(*doc, dl_key, dl.key, why)
      || !read_field(*doc, dl_stream, dl.stream, why)
      || !read_field(*doc, dl_seq, dl.seq, why)
      || !read_field(*doc, dl_reason, dl.reason, why)
      || !read_field(*doc, dl_parked, dl.parked, why)
      || !read_field(*doc, dl_created_us, dl.created_us, why))
    return std::nullopt;
  auto* env = field_of(*doc, dl_envelope, why);
  if (env == nullptr)
    return std::nullopt;
  if (!env->is_binary()) {
    wrong_type(dl_envelope, "binary", why);
    return std::nullopt;
  }
  auto& bytes = env->get_binary();
  dl.envelope.assign(bytes.begin(), bytes.end());
  auto* attempts = field_of(*doc, dl_attempts, why);
  if (attempts == nullptr)
    return std::nullopt;
  if (!attempts->is_array()) {
    wrong_type(dl_attempts, "an array", why);
    return std::nullopt;
  }
  dl.attempts.reserve(attempts->size());
  for (auto& a : *attempts) {
    if (!a.is_object()) {
      why = "an attempt is not a map";
      return std::nullopt;
    }
    auto& out = dl.attempts.emplace_back();
    if (!read_field(a, dl_time_us, out.time_us, why)
        || !read_field(a, dl_error, out.error, why)
        || !read_field(a, dl_error_class, out.error_class, why)) {
      why = "attempt " + std::to_string(dl.attempts.size()) + ": " + why;
      return std::nullopt;
    }
  }
  return dl;
}

caf::error corrupt_dead_letter(const std::string& dir, uint64_t id,
                               const std::string& why) {
  return make_error(errc::corrupt_log,
                    fmt::format("{}: dead letter {} is corrupt ({}); remove "
                                "it, or restore the data directory from a "
                                "backup",
                                dir_prefix(dir), id, why));
}

caf::error dead_letters_write_error(const std::string& dir,
                                    std::string_view what,
                                    const rocksdb::Status& st) {
  return make_error(errc::io_error,
                    fmt::format("{}: cannot {} ({}); free disk space and "
                                "retry",
                                dir_prefix(dir), what, st.ToString()));
}

bool selects(const dead_letter_filter& filter, const dead_letter& dl) {
  return (filter.consumer.empty() || filter.consumer == dl.consumer)
         && (filter.event_type.empty() || filter.event_type == dl.event_type)
         && (filter.key.empty() || filter.key == dl.key);
}

} // namespace

caf::expected<std::vector<uint64_t>>
event_log::add_dead_letters(std::vector<dead_letter>& letters) {
  auto& self = *impl_;
  std::vector<uint64_t> ids;
  if (letters.empty())
    return ids;
  ids.reserve(letters.size());
  rocksdb::WriteBatch batch;
  std::lock_guard<std::mutex> guard{self.dead_letters_mtx};
  auto id = self.last_dead_letter;
  for (auto& dl : letters) {
    ids.push_back(++id);
    batch.Put(self.cf_dead_letters, be64{id}.slice(), encode_dead_letter(dl));
  }
  // In the same write: an id is never reused, even once its letter is gone.
  batch.Put(self.cf_meta, meta_last_dead_letter, be64{id}.slice());
  auto s = self.write_dead_letters(batch);
  if (!s.ok())
    return dead_letters_write_error(
      self.opts.dir, fmt::format("store {} dead letter(s)", letters.size()), s);
  self.last_dead_letter = id;
  self.dead_letter_count.fetch_add(letters.size(), std::memory_order_release);
  for (size_t i = 0; i < letters.size(); ++i)
    letters[i].id = ids[i];
  return ids;
}

caf::expected<std::vector<dead_letter>>
event_log::dead_letters(const dead_letter_filter& filter) const {
  auto& self = *impl_;
  std::vector<dead_letter> out;
  if (filter.after_id == std::numeric_limits<uint64_t>::max())
    return out;
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(self.read_options(), self.cf_dead_letters)};
  std::string why;
  for (it->Seek(be64{filter.after_id + 1}.slice()); it->Valid(); it->Next()) {
    if (it->key().size() != 8)
      return corrupt_error(self.opts.dir, "a dead_letters key is not 8 bytes");
    auto id = get_be64(it->key().data());
    auto dl = decode_dead_letter(it->value().ToStringView(), why);
    if (!dl)
      return corrupt_dead_letter(self.opts.dir, id, why);
    if (!selects(filter, *dl))
      continue;
    dl->id = id;
    out.push_back(std::move(*dl));
    if (filter.limit != 0 && out.size() >= filter.limit)
      break;
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  return out;
}

caf::expected<std::optional<dead_letter>>
event_log::find_dead_letter(uint64_t id) const {
  auto& self = *impl_;
  rocksdb::PinnableSlice value;
  auto s = self.db->Get(self.read_options(), self.cf_dead_letters,
                        be64{id}.slice(), &value);
  if (s.IsNotFound())
    return std::optional<dead_letter>{};
  if (!s.ok())
    return read_error(self.opts.dir, s);
  std::string why;
  auto dl = decode_dead_letter(value.ToStringView(), why);
  if (!dl)
    return corrupt_dead_letter(self.opts.dir, id, why);
  dl->id = id;
  return dl;
}

caf::expected<size_t>
event_log::remove_dead_letters(const std::vector<uint64_t>& ids) {
  auto& self = *impl_;
  auto unique = ids;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  rocksdb::WriteBatch batch;
  size_t existing = 0;
  // Under the lock: two removes of one id must not both count it.
  std::lock_guard<std::mutex> guard{self.dead_letters_mtx};
  auto ro = self.read_options();
  rocksdb::PinnableSlice value;
  for (auto id : unique) {
    be64 key{id};
    value.Reset();
    auto s = self.db->Get(ro, self.cf_dead_letters, key.slice(), &value);
    if (s.IsNotFound())
      continue;
    if (!s.ok())
      return read_error(self.opts.dir, s);
    batch.Delete(self.cf_dead_letters, key.slice());
    ++existing;
  }
  if (existing == 0)
    return existing;
  auto s = self.write_dead_letters(batch);
  if (!s.ok())
    return dead_letters_write_error(
      self.opts.dir, fmt::format("remove {} dead letter(s)", existing), s);
  self.dead_letter_count.fetch_sub(existing, std::memory_order_release);
  return existing;
}

uint64_t event_log::dead_letter_count() const noexcept {
  return impl_->dead_letter_count.load(std::memory_order_acquire);
}

} // namespace herald::store
