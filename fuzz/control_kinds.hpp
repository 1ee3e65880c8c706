#pragma once

/// The control messages the `control` fuzz target reads, by the first byte
/// of its input: 0 a request (`decode_request`), 1 to 16 the reply of each
/// request (`decode_reply<R>`, R in `replies`, in that order), 17 an id
/// only (`message_id`); a larger byte wraps around. The seed corpus writer
/// and the target share this list, so every decoder has seeds.

#include <cstddef>
#include <tuple>

#include "herald/runtime/control.hpp"

namespace herald::fuzz {

/// Every reply type `decode_reply` is instantiated for.
using replies = std::tuple<
  control::replay_reply, control::dlq_list_reply, control::dlq_show_reply,
  control::dlq_redrive_reply, control::dlq_purge_reply, control::publish_reply,
  control::status_reply, control::hello_reply, control::test_hooks_reply,
  control::gossip_sync_reply, control::gossip_ack, control::gossip_probe_reply,
  control::members_reply, control::group_lease_reply,
  control::group_describe_reply, control::group_reset_reply>;

/// The selector of a request.
inline constexpr unsigned char request_kind = 0;
/// The selector of the first reply type; reply `i` is `first_reply + i`.
inline constexpr unsigned char first_reply = 1;
/// The selector of `message_id`.
inline constexpr unsigned char id_kind =
  first_reply + std::tuple_size_v<replies>;
/// How many selectors there are.
inline constexpr unsigned kinds = id_kind + 1;

} // namespace herald::fuzz
