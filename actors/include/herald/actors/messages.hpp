#pragma once

/// The types herald passes between actors of one node. They never leave the
/// process through CAF (events cross nodes over ZeroMQ), so they are allowed
/// as unsafe message types instead of being announced for serialization.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "herald/core/names.hpp"
#include "herald/store/event_log.hpp"

namespace herald {

/// A handler in the seed's style: called once per event. A handler fails by
/// throwing or by returning an error.
using handler_fn = std::function<caf::error(const event&)>;

/// Thrown by a handler whose failure retrying cannot fix (a malformed
/// order, a deleted account): the event is dead-lettered at once.
class non_retryable_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Returned by a handler whose failure retrying cannot fix (see
/// `non_retryable_error`).
inline caf::error non_retryable(std::string why) {
  return make_error(errc::non_retryable, std::move(why));
}

/// A service written as a CAF behavior that handles `const herald::event&`
/// and returns `void` (success) or a `caf::error` (failure), at once or
/// later through a response promise. The consumer calls it to start the
/// service's actor, and again to restart it after it died.
using service_fn = std::function<caf::behavior(caf::event_based_actor*)>;

/// A handler bound to the pattern it was subscribed with.
struct subscription {
  pattern selector;
  handler_fn handler;
};

/// Adds a subscription to a consumer actor.
using subscribe_atom = caf::atom_constant<caf::atom("hsubscr")>;

/// Gives a consumer actor its service (`service_fn`); from the consumer to
/// its shards, the service actor to ask.
using attach_atom = caf::atom_constant<caf::atom("hattach")>;

/// Carries a stream heartbeat to a consumer actor.
using heartbeat_atom = caf::atom_constant<caf::atom("hbeat")>;

/// Carries a replay reply to a consumer actor.
using replay_atom = caf::atom_constant<caf::atom("hreplay")>;

/// Asks a consumer actor to re-send a replay request that got no reply.
using retry_atom = caf::atom_constant<caf::atom("hretry")>;

/// Asks a consumer actor to load a stream's offset again after a read of it
/// failed.
using load_offset_atom = caf::atom_constant<caf::atom("hoffload")>;

/// Asks a consumer actor to commit its offsets now.
using flush_atom = caf::atom_constant<caf::atom("hflush")>;

/// Completions of events, from a shard or the dead-letter actor to the
/// consumer actor; a shard adds its index and how many events wait in its
/// entity queues.
using done_atom = caf::atom_constant<caf::atom("hdone")>;

/// Pauses (and resumes) a stream whose entity queue is full.
using pause_atom = caf::atom_constant<caf::atom("hpause")>;
using resume_atom = caf::atom_constant<caf::atom("hresume")>;

/// A failed event for the dead-letter actor.
using dead_letter_atom = caf::atom_constant<caf::atom("hdeadl")>;

/// Hands dead letters back to their consumer; or tells the dead-letter
/// actor that a redriven one was handled.
using redrive_atom = caf::atom_constant<caf::atom("hredrive")>;

/// Unparks an entity whose dead letters were purged.
using unpark_atom = caf::atom_constant<caf::atom("hunpark")>;

/// A group member's dead letter, to store at its stream's owner: a shard
/// sends `(group_letter_atom, dead_letter_request)` to its consumer.
using group_letter_atom = caf::atom_constant<caf::atom("hgletter")>;

/// Parks entities of a group's partition at a shard: `(group_park_atom,
/// std::string key, uint64_t dead_letter)` parks one behind that letter
/// (the partition was granted with it parked at the owner);
/// `(group_park_atom, uint32_t partitions, uint32_t partition)` lets every
/// entity of that partition parked by the group go on (the partition left
/// this member: its next holder parks them).
using group_park_atom = caf::atom_constant<caf::atom("hgpark")>;

/// A dead letter counted by the alert actor.
using alert_atom = caf::atom_constant<caf::atom("halert")>;

/// The stream index of redriven events: no stream position moves.
inline constexpr uint32_t no_stream = UINT32_MAX;

/// Whether a consumer may handle one partition of one stream now: the
/// epoch of the lease under which shards may start attempts (`take`) and
/// under which they may finish events, handled or dead-lettered (`keep`);
/// 0 for none. Written by the consumer actor only, read by its shards;
/// lives as long as both (see `lease_gates`).
struct lease_gate {
  std::atomic<uint64_t> take{0};
  std::atomic<uint64_t> keep{0};
};

/// The gates of a consumer, one block of `partitions` per stream, at
/// stable addresses: the consumer adds blocks (under `mtx`), shards read
/// gates through the pointers their work items carry.
struct lease_gates {
  std::mutex mtx;
  std::vector<std::unique_ptr<lease_gate[]>> blocks;

  /// A new block of `n` closed gates.
  lease_gate* add(size_t n) {
    std::lock_guard<std::mutex> guard{mtx};
    blocks.push_back(std::make_unique<lease_gate[]>(n));
    return blocks.back().get();
  }
};

/// One event on its way from the consumer actor through a shard.
struct work_item {
  event ev;
  /// The consumer's index of the event's stream, or `no_stream`.
  uint32_t stream = 0;
  /// The dead letter this event is redriven from; 0 for none.
  uint64_t dead_letter = 0;
  /// Sent live by the node (not read from a log, not redriven): counts in
  /// `consumer_stats::live_done` once finished.
  bool live = false;
  /// The event's partition, the lease's epoch it was taken under, and that
  /// lease's gate: an attempt starts only while `gate->take == epoch`, and
  /// the event is finished (handled, dead-lettered) only while
  /// `gate->keep == epoch`; otherwise it is abandoned (the partition's
  /// next holder handles it). Null for redriven dead letters.
  uint32_t partition = 0;
  uint64_t epoch = 0;
  const lease_gate* gate = nullptr;

  /// Whether the item may start an attempt now.
  bool may_start() const noexcept {
    return gate == nullptr
           || gate->take.load(std::memory_order_acquire) == epoch;
  }
  /// Whether the item may finish now.
  bool may_finish() const noexcept {
    return gate == nullptr
           || gate->keep.load(std::memory_order_acquire) == epoch;
  }
};

using work_batch = std::vector<work_item>;

/// One finished event of a stream: handled, or stored as a dead letter;
/// or, `abandoned`, given up because its partition's lease ended (not
/// finished: its offset must not pass it).
struct work_done {
  uint32_t stream = 0;
  uint64_t seq = 0;
  uint32_t partition = 0;
  uint64_t epoch = 0;
  bool abandoned = false;
};

using done_batch = std::vector<work_done>;

struct consumer_stats;

/// An event to store as a dead letter, and whom to tell once it is stored.
struct dead_letter_request {
  store::dead_letter letter;
  /// The stream position it finishes (`stream == no_stream` for none).
  work_done done;
  /// The dead letter it was redriven from; 0 for none. The letter is
  /// stored under that id again, its new attempts added to its record.
  uint64_t redriven_from = 0;
  /// The event came live (see `work_item::live`).
  bool live = false;
  /// Receives `(done_atom, done_batch)` once stored.
  caf::actor consumer;
  /// The shard of the parked entity whose letter this is (it parks it, or
  /// was parked behind an earlier one): told `(dead_letter_atom, key, id)`
  /// once stored, or with id 0 once it will not be (its lease ended, or it
  /// is handled again instead). Null for an entity not parked.
  caf::actor parks;
  std::shared_ptr<consumer_stats> stats;
};

/// What a producer's heartbeat says about its stream.
struct stream_heartbeat {
  /// The stream id.
  std::string stream;
  /// The last durable seq.
  uint64_t head = 0;
  /// Its control endpoint, for replay requests.
  std::string control;
  /// The last type_seq of each type, as of `head`.
  std::unordered_map<std::string, uint64_t> types;
};

/// The answer to a replay request: events of the stream from `from` on.
struct replay_reply {
  /// The request's id.
  uint64_t id = 0;
  std::string stream;
  /// Empty on success; else what went wrong (e.g. unknown stream).
  std::string error;
  /// The last durable seq when the producer read.
  uint64_t head = 0;
  /// The oldest seq the producer still retains.
  uint64_t first = 0;
  /// Where the next request should start.
  uint64_t next = 0;
  /// Per-type heads taken before the read (so at or below `head`).
  std::unordered_map<std::string, uint64_t> type_heads;
  /// The events found, in seq order.
  event_batch events;
  /// Where the read started when the request had `since_us` and the
  /// producer applied it; none from a producer that does not know it.
  std::optional<uint64_t> start;
};

} // namespace herald

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::subscription)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::service_fn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::stream_heartbeat)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::replay_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<herald::pattern>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::work_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::done_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::dead_letter_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<herald::store::dead_letter>)
