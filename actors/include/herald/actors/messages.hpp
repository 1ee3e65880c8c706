#pragma once

/// The types herald passes between actors of one node. They never leave the
/// process through CAF (events cross nodes over ZeroMQ), so they are allowed
/// as unsafe message types instead of being announced for serialization.

#include <functional>
#include <string>

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

} // namespace herald

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::event_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::subscription)
