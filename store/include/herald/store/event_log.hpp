#pragma once

/// The durable event log of a node, and its consumer offsets, on RocksDB.
///
/// A node's log is one *stream*: a sequence of envelopes numbered by `seq`
/// from 1, named by a UUID made when the data directory is created (a wiped
/// directory is a new stream, never a reused one). Appends are group
/// committed: one thread (the committer) takes every record queued since its
/// last write, writes them in one WriteBatch, syncs per the fsync policy and
/// then completes their tickets and hands them to the commit callback, in
/// seq order.
///
/// Layout (column families): `events` (one value per commit group; key:
/// the group's first seq, 8 bytes big-endian; value: the group's entries,
/// laid out as store/src/group_format.hpp says), `meta` (stream id, per-type
/// heads, last dead-letter id), `offsets` (key: consumer '\0' stream; value:
/// seq, 8 bytes big-endian), `dead_letters` (key: id, 8 bytes big-endian;
/// value: the dead letter as a MessagePack map). A data directory made before
/// `dead_letters` existed opens as is: the column family is created then.
///
/// Dead letters are events a consumer gave up on, kept with what is needed
/// to understand and redrive them. They are few and are only removed on
/// purpose: retention (`enforce_retention`) never deletes them, even when
/// the event they hold has long expired from `events`. Their types are in
/// dead_letter.hpp.
///
/// Thread safety: every member is safe to call from any thread. `append`
/// must be called in seq order (the caller holds its stream lock while it
/// assigns seq and appends).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "herald/store/dead_letter.hpp"

namespace herald::store {

/// When an append counts as durable.
enum class fsync_policy {
  /// Every record is written and fdatasync'ed on its own.
  always,
  /// Group commit: the records that queue while a group is written and
  /// fdatasync'ed form the next group, so one sync serves many appends and
  /// a record waits at most for the group ahead of it. No timer.
  batch,
  /// Written to the OS (survives a process crash, not a machine crash).
  os,
};

/// Parses "always", "batch" or "os".
caf::expected<fsync_policy> parse_fsync_policy(std::string_view text);

/// How to open a log.
struct log_options {
  /// The node's data directory; created if missing. REQUIRES: not empty.
  std::string dir;
  /// Default: batch.
  fsync_policy fsync = fsync_policy::batch;
  /// How long events are kept. Default: 7 days.
  std::chrono::microseconds retention = std::chrono::hours{24 * 7};
  /// The clock retention reads, microseconds since the epoch. Default: the
  /// system clock. Tests inject their own.
  std::function<int64_t()> clock;
  /// The most bytes (envelopes and type names) appended and not yet written
  /// and handed to the commit callback: the bound `try_append` keeps, so a
  /// publisher faster than the disk cannot grow the queue without limit.
  /// A record larger than the bound is taken when nothing is pending.
  /// Default: 64 MiB. REQUIRES: > 0.
  size_t max_pending_bytes = size_t{32} << 20;
};

/// One record to append. `envelope` is the encoded envelope (it contains
/// `seq` and `type_seq` too); `type` names its event type and is not
/// copied: it must outlive the log (e.g. a catalog event name).
struct record {
  uint64_t seq = 0;
  std::string_view type;
  uint64_t type_seq = 0;
  /// Microseconds since the epoch: retention compares it to the clock.
  int64_t timestamp_us = 0;
  std::string envelope;
};

/// Completion of one commit group: every append of a group shares it.
class commit_ticket {
public:
  /// Waits until the group is durable or failed; returns its error (none on
  /// success).
  caf::error wait() const;

  /// Like `wait`, at most `timeout`; returns nothing on timeout.
  std::optional<caf::error> wait_for(std::chrono::milliseconds timeout) const;

  /// Whether the group is durable or failed.
  bool done() const;

  /// Called by the log. Wakes every waiter.
  void complete(caf::error err);

private:
  mutable std::mutex mtx_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  caf::error err_;
};

/// An envelope read back from the log.
struct stored_event {
  uint64_t seq = 0;
  std::string envelope;
};

/// What a range read returned.
struct read_result {
  /// The events found, in seq order.
  std::vector<stored_event> events;
  /// The seq the next read should start at (one past the last seq looked
  /// at, matching the filter or not).
  uint64_t next = 0;
  /// The last durable seq when the read ran.
  uint64_t head = 0;
  /// The oldest retained seq when the read ran (head + 1 if empty).
  uint64_t first = 0;
};

/// The durable log of one node.
class event_log {
public:
  /// Called on the committer thread after each group, in seq order:
  /// the group's records (moved from) and its error, if the write failed.
  using commit_callback =
    std::function<void(std::vector<record>& group, const caf::error& err)>;

  /// Opens (or creates) the log under `opts.dir`. Fails naming the data
  /// directory with `errc::corrupt_log` when RocksDB finds it corrupt
  /// (checksums are verified), with `errc::io_error` when it cannot open
  /// it otherwise, and with `errc::invalid_argument` when `opts.dir` is
  /// empty.
  static caf::expected<std::unique_ptr<event_log>> open(log_options opts);

  ~event_log();

  /// The stream id, made with the data directory.
  const std::string& stream_id() const noexcept;

  /// The last seq appended (durable or queued); 0 for an empty log.
  uint64_t last_seq() const noexcept;

  /// The last durable seq.
  uint64_t head() const noexcept;

  /// Whether the log can be written now: none when it can, otherwise
  /// why not (`errc::io_error` naming the data directory and the last
  /// failed write's or background flush's cause, e.g. no space left).
  /// Any writer's failure counts: events, offsets, dead letters,
  /// retention. After a failure it first resumes the store as the next
  /// write would (`DB::Resume`, see RocksDB's wiki "Background Error
  /// Handling"), so the answer clears once the cause is gone, with
  /// nothing written meanwhile. Thread safety: any thread; while a resume
  /// runs on another thread it answers with the last error at once
  /// instead of waiting. The resume may flush memtables (milliseconds).
  caf::error writable();

  /// The oldest retained seq; head() + 1 when none is retained.
  uint64_t first() const noexcept;

  /// When the oldest retained event (seq `first()`) was published, in
  /// microseconds since the epoch; std::nullopt when none is retained.
  /// Fails as `read` does.
  caf::expected<std::optional<int64_t>> first_timestamp() const;

  /// The last type_seq of every type, as of the last durable append.
  std::unordered_map<std::string, uint64_t> type_heads() const;

  /// Sets the callback (before the first append).
  void on_commit(commit_callback cb);

  /// Queues `r` and returns the ticket of its group. Never blocks on I/O
  /// and ignores `max_pending_bytes` (see `try_append`).
  /// REQUIRES: r.seq == last_seq() + 1.
  std::shared_ptr<const commit_ticket> append(record r);

  /// Like `append`, within the bound: queues `r` (moved from) and returns
  /// the ticket of its group when the bytes pending (see `pending_bytes`)
  /// plus `r`'s stay within `max_pending_bytes`, or nothing is pending.
  /// Otherwise returns null at once, leaves `r` as it was and appends
  /// nothing (`last_seq()` does not move): the caller gives the seq back
  /// and tries again later, e.g. after `wait_for_room`. Never blocks on
  /// I/O. REQUIRES: r.seq == last_seq() + 1.
  std::shared_ptr<const commit_ticket> try_append(record& r);

  /// Blocks the calling thread until a record of `bytes` (envelope and type
  /// name) would fit within `max_pending_bytes`, at most until `deadline`.
  /// Returns whether it would. Another thread may take the room first: a
  /// `try_append` after it may still return null. Returns false at once
  /// when the log is closing.
  bool wait_for_room(size_t bytes,
                     std::chrono::steady_clock::time_point deadline) const;

  /// Bytes (envelopes and type names) appended and not yet written and
  /// handed to the commit callback; at most `max_pending_bytes` plus one
  /// record, unless `append` was used.
  size_t pending_bytes() const noexcept;

  /// The bound `try_append` keeps (`log_options::max_pending_bytes`).
  size_t max_pending_bytes() const noexcept;

  /// Reads events with seq in [from, to] (inclusive), oldest first, at most
  /// `max_count` of them and about `max_bytes` of envelopes, keeping those
  /// whose type `accept` returns true for (all when `accept` is empty).
  /// Never returns an event that failed its checksum: that is an
  /// `errc::corrupt_log` naming the data directory; a failed read is an
  /// `errc::io_error`.
  caf::expected<read_result>
  read(uint64_t from, uint64_t to, size_t max_count, size_t max_bytes,
       const std::function<bool(std::string_view type)>& accept = {}) const;

  /// The seq of the first retained event whose timestamp is at or after
  /// `time_us` (microseconds since the epoch): where a reader that wants
  /// the events "since" a time starts. `head() + 1` when no retained event
  /// is that recent; `first()` when every retained one is.
  ///
  /// Events are in seq order; their timestamps are taken before the
  /// publisher's stream lock, so they rise with seq but may step back by a
  /// lock wait (microseconds). The search is a binary search over the
  /// commit groups (a few RocksDB seeks whatever the log's size), taking
  /// the first group whose newest event is at or after `time_us`, then the
  /// first such event in it: exact where timestamps rise with seq, and off
  /// by at most the events of one such step-back around `time_us`.
  /// Fails like `read` (`errc::corrupt_log`, `errc::io_error`).
  caf::expected<uint64_t> seq_at_or_after(int64_t time_us) const;

  /// Deletes every event older than the retention, in whole ranges from the
  /// oldest. Returns how many were deleted. Dead letters are never deleted.
  /// Fails with `errc::io_error` naming the data directory when the events
  /// cannot be read or deleted; `first()` does not move then.
  caf::expected<uint64_t> enforce_retention();

  /// Stores `seq` as the offset of `consumer` in `stream` (not synced: a
  /// lost offset only replays more). Fails with `errc::io_error` naming the
  /// data directory when the write fails.
  caf::error commit_offset(std::string_view consumer, std::string_view stream,
                           uint64_t seq);

  /// Stores several offsets in `stream` in one write, each `(consumer,
  /// seq)` as `commit_offset` does: all or none. One write waits at most
  /// once behind a synced commit group, where as many writes would wait
  /// as many times. Fails as `commit_offset`.
  caf::error
  commit_offsets(const std::vector<std::pair<std::string, uint64_t>>& offsets,
                 std::string_view stream);

  /// The stored offset of `consumer` in `stream`: every event of the stream
  /// the consumer selects with seq <= the offset was handled. 0 when none is
  /// stored (seqs start at 1, so 0 says that nothing was handled yet; it is
  /// also what a consumer that never ran starts from). Fails naming the
  /// consumer, the stream and the data directory, with `errc::io_error`
  /// when the offset cannot be read and with `errc::corrupt_log` for a
  /// checksum mismatch or a stored value that is not 8 bytes: an error is never
  /// reported as 0, which would replay the stream from its start.
  /// Thread-safe.
  caf::expected<uint64_t> offset(std::string_view consumer,
                                 std::string_view stream) const;

  // -- dead letters ----------------------------------------------------------

  /// Stores `letters` durably in one write (synced unless the fsync policy
  /// is `os`) and returns their ids. A letter with `id` 0 is new: it gets
  /// the next id, in the order of `letters`, and its `id` is set. A letter
  /// with an `id` is a redriven one that was dead-lettered again: its
  /// attempts are appended to those stored under that id, and its reason
  /// and `parked` replace the stored ones (consumer, event, `created_us`
  /// and `redrives` stay as stored); when nothing is stored under the id
  /// (purged meanwhile), the letter is stored under it as it is. Fails with
  /// `errc::io_error` naming the data directory when the write fails
  /// (nothing is stored and no `id` is set then), and as `dead_letters`
  /// when a stored letter to extend cannot be read.
  caf::expected<std::vector<uint64_t>>
  add_dead_letters(std::vector<dead_letter>& letters);

  /// Records a redrive of the stored letters `ids` at `time_us` asked for
  /// `by` (see `dead_letter_redrive`), durably in one write, before they
  /// are handed back to their consumers. Ids not stored are skipped.
  /// Returns how many letters were extended. Errors as for
  /// `add_dead_letters`.
  caf::expected<size_t> record_redrive(const std::vector<uint64_t>& ids,
                                       int64_t time_us, const std::string& by);

  /// The dead letters `filter` selects, in id order. Fails naming the data
  /// directory with `errc::io_error` when a letter cannot be read, and with
  /// `errc::corrupt_log` (naming the id too) for a malformed letter.
  caf::expected<std::vector<dead_letter>>
  dead_letters(const dead_letter_filter& filter) const;

  /// The dead letter `id`, or std::nullopt when there is none with that id.
  /// Errors as for `dead_letters`.
  caf::expected<std::optional<dead_letter>> find_dead_letter(uint64_t id) const;

  /// Deletes the dead letters `ids` durably in one write (synced unless the
  /// fsync policy is `os`); unknown and repeated ids are ignored. Returns
  /// how many of them existed. Fails with `errc::io_error` naming the data
  /// directory; nothing is deleted then.
  caf::expected<size_t> remove_dead_letters(const std::vector<uint64_t>& ids);

  /// How many dead letters are stored now.
  uint64_t dead_letter_count() const noexcept;

  /// How many dead letters each consumer has, by consumer name (consumers
  /// without any are absent). Reads every letter, keeping none. Errors as
  /// for `dead_letters`.
  caf::expected<std::map<std::string, uint64_t, std::less<>>>
  dead_letter_counts() const;

  /// The state behind the log (private: store/src/event_log_impl.hpp).
  struct impl;

private:
  explicit event_log(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace herald::store
