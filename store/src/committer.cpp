// The committer: `event_log::append` queues records, and one thread writes
// what queued in capped groups (group commit), completes their tickets and
// hands them to the commit callback. With fsync `os`, a publisher that finds
// the log idle writes its own record instead (see `append`).
//
// Thread safety: see event_log_impl.hpp. The queue is guarded by
// `queue_mtx`; the write itself runs without it, by whoever set `busy`.

#include "herald/store/event_log.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iterator>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "event_log_impl.hpp"
#include "group_format.hpp"
#include "herald/core/errc.hpp"

namespace herald::store {

using namespace detail;

void event_log::impl::run() {
  // Records taken from the queue and not yet written; consumed from `pos`
  // in capped groups. Only this thread touches them.
  std::vector<record> pending;
  size_t pos = 0;
  std::vector<record> group;
  std::vector<std::shared_ptr<commit_ticket>> done_tickets;
  std::unique_lock<std::mutex> guard{queue_mtx};
  for (;;) {
    if (pos == pending.size()) {
      pending.clear();
      pos = 0;
      busy = false;
      queue_cv.wait(guard, [this] {
        return stop || (!queue.empty() && !busy);
      });
      if (queue.empty() || busy)
        return; // stop requested and nothing left to write
      busy = true;
      // batch and os: group commit. Whatever queued while the last group
      // was written (and synced) goes next; nothing waits for a timer, so
      // a record waits at most for the groups ahead of it.
      pending.swap(queue);
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
    release_pending(bytes);
  }
}

void event_log::impl::release_pending(size_t bytes) {
  pending_bytes -= std::min(bytes, pending_bytes);
  pending_bytes_seen.store(pending_bytes, std::memory_order_relaxed);
  if (room_waiters > 0)
    room_cv.notify_all();
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
  batch.Clear();
  group_heads.clear();
  encode_group(group, value);
  for (auto& r : group) {
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
  auto st = write(durable_write_options(), batch);
  if (!st.ok())
    return write_error(opts.dir, st);
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

namespace {

// A ticket complete with `err`, for a record that is not queued.
std::shared_ptr<const commit_ticket> completed_ticket(caf::error err) {
  auto t = std::make_shared<commit_ticket>();
  t->complete(std::move(err));
  return t;
}

} // namespace

bool event_log::impl::take_lead() {
  // With `os` (no sync, a write costs microseconds) a publisher that finds
  // the log idle, at a low rate, writes its record itself: one thread
  // hand-off less on the way to consumers. At high rates records queue as
  // usual, and the committer writes them in groups.
  auto now = std::chrono::steady_clock::now();
  fast_appends = now - last_append < lead_gap ? fast_appends + 1 : 0;
  last_append = now;
  bool lead = opts.fsync == fsync_policy::os && !busy && !stop && queue.empty()
              && tickets.empty() && fast_appends < lead_burst;
  if (lead)
    busy = true;
  return lead;
}

std::shared_ptr<const commit_ticket> event_log::impl::enqueue(record r) {
  pending_bytes += r.envelope.size() + r.type.size();
  pending_bytes_seen.store(pending_bytes, std::memory_order_relaxed);
  auto seq = r.seq;
  queue.push_back(std::move(r));
  // A ticket covers at most a group's worth of records, so it completes as
  // soon as its records are written, even under sustained load.
  if (tickets.empty() || ticket_records >= max_group_records) {
    tickets.push_back({std::make_shared<commit_ticket>(), 0});
    ticket_records = 0;
  }
  tickets.back().last = seq;
  ++ticket_records;
  return tickets.back().ticket;
}

std::shared_ptr<const commit_ticket> event_log::impl::write_own(
  record r, const std::shared_ptr<const commit_callback>& cb, bool& wake) {
  std::vector<record> group;
  group.push_back(std::move(r));
  auto err = write_group(group);
  hand_out(cb, group, err);
  auto ticket = completed_ticket(err);
  std::lock_guard<std::mutex> guard{queue_mtx};
  busy = false;
  // Measured from the end of this write: a publisher that appends again
  // right away is publishing fast, and its records should queue.
  last_append = std::chrono::steady_clock::now();
  wake = !queue.empty() || stop;
  return ticket;
}

std::shared_ptr<const commit_ticket> event_log::append(record r) {
  return impl_->append(r, false);
}

std::shared_ptr<const commit_ticket> event_log::try_append(record& r) {
  return impl_->append(r, true);
}

bool event_log::wait_for_room(
  size_t bytes, std::chrono::steady_clock::time_point deadline) const {
  auto& self = *impl_;
  std::unique_lock<std::mutex> guard{self.queue_mtx};
  ++self.room_waiters;
  self.room_cv.wait_until(guard, deadline, [&] {
    return self.stop || self.has_room(bytes);
  });
  bool room = !self.stop && self.has_room(bytes);
  if (--self.room_waiters == 0 && self.stop)
    self.room_cv.notify_all(); // the destructor waits for the last one
  return room;
}

size_t event_log::pending_bytes() const noexcept {
  return impl_->pending_bytes_seen.load(std::memory_order_relaxed);
}

size_t event_log::max_pending_bytes() const noexcept {
  return impl_->opts.max_pending_bytes;
}

std::shared_ptr<const commit_ticket> event_log::impl::append(record& r,
                                                             bool bounded) {
  auto& self = *this;
  if (r.type.size() > std::numeric_limits<uint16_t>::max())
    return completed_ticket(
      make_error(errc::invalid_argument,
                 fmt::format("event seq {}: type name of {} bytes exceeds "
                             "65535; use a shorter name",
                             r.seq, r.type.size())));
  std::shared_ptr<const commit_ticket> result;
  bool wake = false;
  bool lead = false;
  std::shared_ptr<const commit_callback> cb;
  {
    std::lock_guard<std::mutex> guard{self.queue_mtx};
    auto last = self.last_seq.load(std::memory_order_relaxed);
    if (r.seq != last + 1)
      return completed_ticket(
        make_error(errc::invalid_argument,
                   fmt::format("{}: append of seq {} does not follow "
                               "the last seq {}; assign seq under "
                               "the stream lock",
                               dir_prefix(self.opts.dir), r.seq, last)));
    if (bounded && !self.has_room(r.envelope.size() + r.type.size()))
      return nullptr; // not taken: the caller keeps `r` and its seq
    self.last_seq.store(last + 1, std::memory_order_release);
    lead = self.take_lead();
    if (lead) {
      cb = self.callback;
    } else {
      wake = self.queue.empty();
      result = self.enqueue(std::move(r));
    }
  }
  if (lead)
    result = self.write_own(std::move(r), cb, wake);
  if (wake)
    self.queue_cv.notify_one();
  return result;
}

} // namespace herald::store
