#pragma once

/// The types herald passes between actors of one node. They never leave the
/// process through CAF (events cross nodes over ZeroMQ), so they are allowed
/// as unsafe message types instead of being announced for serialization.

#include <functional>
#include <string>
#include <unordered_map>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include "herald/core/event.hpp"
#include "herald/core/names.hpp"

namespace herald {

/// A handler in the seed's style: called once per event. A handler fails by
/// throwing or by returning an error.
using handler_fn = std::function<caf::error(const event&)>;

/// A handler bound to the pattern it was subscribed with.
struct subscription {
  pattern selector;
  handler_fn handler;
};

/// Adds a subscription to a consumer actor.
using subscribe_atom = caf::atom_constant<caf::atom("hsubscr")>;

/// Sets the service actor of a consumer actor.
using attach_atom = caf::atom_constant<caf::atom("hattach")>;

/// Carries a stream heartbeat to a consumer actor.
using heartbeat_atom = caf::atom_constant<caf::atom("hbeat")>;

/// Carries a replay reply to a consumer actor.
using replay_atom = caf::atom_constant<caf::atom("hreplay")>;

/// Asks a consumer actor to re-send a replay request that got no reply.
using retry_atom = caf::atom_constant<caf::atom("hretry")>;

/// Asks a consumer actor to commit its offsets now.
using flush_atom = caf::atom_constant<caf::atom("hflush")>;

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
};

} // namespace herald

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::subscription)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::stream_heartbeat)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::replay_reply)
