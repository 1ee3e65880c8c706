#pragma once

// The state behind `event_log`, shared by the files of the store:
// event_log.cpp (lifetime, accessors, reads), event_log_open.cpp (open),
// committer.cpp (append and the committer thread), retention.cpp,
// offsets.cpp and dead_letters.cpp.
//
// Thread safety: every field is in one of the sections below, which names
// what guards it. Set by `open` and read-only afterwards: no lock (RocksDB's
// `DB` is thread-safe). Atomics: no lock; each says who writes it.
// `heads_mtx`, `retention_mtx`, `dead_letters_mtx`, `queue_mtx` and
// `resume_mtx` guard their sections. The writer's section has no mutex: it
// belongs to whoever set `busy` under `queue_mtx` (the committer thread, or a
// publisher writing its own record), and `busy` lets one writer at a time in.
//
// Lock order: `resume_mtx` comes last (a dead-letter write takes it under
// `dead_letters_mtx`, a retention delete under `retention_mtx`) and only
// after a failed write. The other four are leaves; no path holds two of
// them at once. The other nesting is `queue_mtx`, then a new
// `commit_ticket`'s own mutex (an append refused under the queue lock
// completes its ticket there); a ticket's mutex is never held while taking
// one of these. The commit callback and every RocksDB write of events run
// with none of the four held; dead-letter writes run under
// `dead_letters_mtx` and the retention delete under `retention_mtx`.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <caf/error.hpp>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/status.h>
#include <rocksdb/write_batch.h>

#include "coding.hpp"
#include "herald/store/event_log.hpp"

namespace herald::store {

namespace detail {

/// The most records in one commit group (one with fsync `always`); also the
/// most records one ticket covers.
inline constexpr size_t max_group_records = 1024;

/// About the most envelope and type bytes in one commit group: a group ends
/// with the record that reaches it.
inline constexpr size_t max_group_bytes = size_t{512} << 10;

/// With fsync `os`, the appending thread writes its record itself unless it
/// appends fast: more than `lead_burst` appends in a row, each within
/// `lead_gap` of the one before (see `event_log::append`).
inline constexpr auto lead_gap = std::chrono::microseconds{5};
inline constexpr size_t lead_burst = 32;

/// Keys of the `meta` column family.
inline constexpr std::string_view meta_stream_id = "stream_id";
inline constexpr std::string_view meta_last_seq = "last_seq";
/// Followed by an event type: the last type_seq of that type.
inline constexpr std::string_view meta_type_prefix = "type:";
/// The last dead-letter id ever assigned: with it an id stays unused even
/// when the newest letter was removed before a restart.
inline constexpr std::string_view meta_last_dead_letter = "last_dead_letter";

/// An 8-byte big-endian key or value (a seq, an offset, a dead-letter id).
struct be64 {
  explicit be64(uint64_t x) noexcept {
    put_be64(buf, x);
  }
  rocksdb::Slice slice() const noexcept {
    return {buf, sizeof(buf)};
  }
  char buf[8];
};

/// "data directory '<dir>'", the start of every error about the log.
std::string dir_prefix(const std::string& dir);

/// The log in `dir` is corrupt: `what` says where.
caf::error corrupt_error(const std::string& dir, const std::string& what);

/// The error of a failed read: corruption or plain I/O.
caf::error read_error(const std::string& dir, const rocksdb::Status& st);

/// The error of a failed write of events or offsets.
caf::error write_error(const std::string& dir, const rocksdb::Status& st);

} // namespace detail

struct event_log::impl {
  // -- set by open, read-only afterwards -------------------------------------

  log_options opts;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* cf_default = nullptr;
  rocksdb::ColumnFamilyHandle* cf_events = nullptr;
  rocksdb::ColumnFamilyHandle* cf_meta = nullptr;
  rocksdb::ColumnFamilyHandle* cf_offsets = nullptr;
  rocksdb::ColumnFamilyHandle* cf_dead_letters = nullptr;
  std::string stream_id;

  // -- atomics ---------------------------------------------------------------

  /// The last seq appended; written by `append` under `queue_mtx`.
  std::atomic<uint64_t> last_seq{0};
  /// The last durable seq; written by the writer.
  std::atomic<uint64_t> head{0};
  /// The oldest retained seq; written under `retention_mtx`.
  std::atomic<uint64_t> first{1};
  /// Dead letters stored; written under `dead_letters_mtx`.
  std::atomic<uint64_t> dead_letter_count{0};
  /// `pending_bytes`, written with it under `queue_mtx`.
  std::atomic<size_t> pending_bytes_seen{0};

  // -- guarded by heads_mtx --------------------------------------------------

  mutable std::mutex heads_mtx;
  /// The last type_seq of every type, as of the last durable group.
  std::unordered_map<std::string, uint64_t> type_heads;

  // -- guarded by retention_mtx ----------------------------------------------

  /// Serializes `enforce_retention` against itself (no data of its own).
  std::mutex retention_mtx;

  // -- guarded by dead_letters_mtx -------------------------------------------

  /// Serializes the writers of dead letters: ids are assigned, and the
  /// count changes, in the order of their writes.
  std::mutex dead_letters_mtx;
  /// The last dead-letter id assigned.
  uint64_t last_dead_letter = 0;

  // -- write errors: `write_failed` atomic, the rest under resume_mtx --------

  /// Whether a write failed since RocksDB last resumed: after a failed write
  /// (e.g. disk full) RocksDB refuses every write until `DB::Resume` clears
  /// its background error, so the next writer of any kind resumes it first
  /// (see `write`). Set by any writer; cleared under `resume_mtx`.
  std::atomic<bool> write_failed{false};
  /// Serializes `DB::Resume`: two at once would make one of them Busy.
  std::mutex resume_mtx;
  /// Why the last failed write or background job failed (RocksDB's
  /// status text); kept until a resume succeeds. Guarded by
  /// `write_error_mtx`, a leaf taken under no other lock of the store.
  std::string write_error_text;
  mutable std::mutex write_error_mtx;

  /// Marks the store failed with `st`: set by a failed write and by
  /// RocksDB's background error callback (a failed flush or compaction
  /// makes every later write fail too).
  void note_write_failure(const rocksdb::Status& st);
  /// Resumes RocksDB after a failure; must hold `resume_mtx`. Whether
  /// the store can be written again (Busy is not a success: RocksDB's
  /// own recovery still runs).
  rocksdb::Status resume_locked();

  // -- guarded by queue_mtx: the committer's queue ---------------------------

  std::mutex queue_mtx;
  /// Wakes the committer: records queued, the writer is free, or stop.
  std::condition_variable queue_cv;
  std::vector<record> queue;
  /// Wakes publishers waiting for room (`wait_for_room`) when a group was
  /// handed out or the log closes; notified only while `room_waiters` > 0.
  mutable std::condition_variable room_cv;
  mutable size_t room_waiters = 0;
  /// Bytes appended to the queue and not yet written and handed out
  /// (queued, or taken by the committer and not written yet); mirrored in
  /// `pending_bytes_seen` for readers that take no lock.
  size_t pending_bytes = 0;
  /// An open ticket, with the last seq it covers.
  struct open_ticket {
    std::shared_ptr<commit_ticket> ticket;
    uint64_t last = 0;
  };
  /// Open tickets, oldest first.
  std::deque<open_ticket> tickets;
  /// Records on tickets.back().
  size_t ticket_records = 0;
  std::shared_ptr<const commit_callback> callback;
  bool stop = false;
  /// Whether records are being written (by the committer, or by a publisher
  /// writing its own record, see `append`): nobody else may write then.
  bool busy = false;
  /// When the last append came, for the choice of who writes (`append`).
  std::chrono::steady_clock::time_point last_append;
  /// Appends in a row that came within `lead_gap` of the one before.
  size_t fast_appends = 0;

  // -- the writer's: whoever set `busy` ---------------------------------------

  rocksdb::WriteBatch batch;
  /// The group value being built.
  std::string value;
  std::unordered_map<std::string_view, uint64_t> group_heads;

  // -- the committer thread: started by open, joined by ~impl ----------------

  std::thread committer;

  /// Stops and joins the committer (it writes what is queued first), then
  /// closes the database.
  ~impl();

  /// Reads verify checksums: a corrupt record is an error, never returned.
  rocksdb::ReadOptions read_options() const {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    return ro;
  }

  /// Writes that must be durable once they return, per the fsync policy.
  rocksdb::WriteOptions durable_write_options() const {
    rocksdb::WriteOptions wo;
    wo.sync = opts.fsync != fsync_policy::os;
    return wo;
  }

  /// Writes `batch`; every write of the store goes through here. After a
  /// failed write it first resumes RocksDB (clears its background error),
  /// which succeeds once the cause is gone, e.g. space was freed: the first
  /// write after that works, whatever its kind. Returns the error of the
  /// resume or of the write. Thread-safe (event_log.cpp).
  rocksdb::Status write(const rocksdb::WriteOptions& wo,
                        rocksdb::WriteBatch& batch);

  /// The committer thread's loop (committer.cpp).
  void run();

  /// Writes `group` as one group value with the type heads and last seq,
  /// then publishes the new heads. REQUIRES: `busy` set by the caller.
  caf::error write_group(std::vector<record>& group);

  /// Whether the appending publisher writes its record itself; sets `busy`
  /// if so. REQUIRES: queue_mtx.
  bool take_lead();

  /// Queues `r` for the committer; returns the ticket covering it.
  /// REQUIRES: queue_mtx.
  std::shared_ptr<const commit_ticket> enqueue(record r);

  /// Whether `bytes` more fit within `max_pending_bytes` (always when
  /// nothing is pending). REQUIRES: queue_mtx.
  bool has_room(size_t bytes) const noexcept {
    return pending_bytes == 0
           || pending_bytes + bytes <= opts.max_pending_bytes;
  }

  /// Takes `bytes` written and handed out off the pending bytes and wakes
  /// the publishers waiting for room. REQUIRES: queue_mtx.
  void release_pending(size_t bytes);

  /// `append` and `try_append`: appends `r` (moved from only when taken);
  /// with `bounded`, only when it fits (returns null otherwise).
  std::shared_ptr<const commit_ticket> append(record& r, bool bounded);

  /// Writes `r` on the calling thread after `take_lead`, hands it out, frees
  /// the writer; sets `wake` when the committer has work. Returns its
  /// (complete) ticket. REQUIRES: queue_mtx not held.
  std::shared_ptr<const commit_ticket>
  write_own(record r, const std::shared_ptr<const commit_callback>& cb,
            bool& wake);

  /// Calls the commit callback, catching what it throws.
  void hand_out(const std::shared_ptr<const commit_callback>& cb,
                std::vector<record>& group, const caf::error& err);

  /// Writes a change of the dead letters durably (dead_letters.cpp).
  /// REQUIRES: dead_letters_mtx.
  rocksdb::Status write_dead_letters(rocksdb::WriteBatch& change);
  /// The stored dead letter `id` (with its id set), nothing when none is
  /// stored under it; errors as `event_log::dead_letters`. Takes no lock:
  /// a writer that extends the letter holds dead_letters_mtx.
  caf::expected<std::optional<dead_letter>>
  stored_dead_letter(uint64_t id) const;
};

} // namespace herald::store
