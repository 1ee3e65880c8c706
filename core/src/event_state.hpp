#pragma once

// The shared, immutable state behind herald::event. Private to core.

#include <memory>
#include <mutex>
#include <string_view>

#include <msgpack.hpp>

#include "herald/core/event.hpp"

namespace herald::detail {

/// Decoded envelope. The routing fields and the strings of `data_obj` (the
/// undecoded payload) are views into the received buffer, which `owner`
/// keeps alive; `zone` holds the decoded objects.
/// Thread safety: immutable after decode except `data`, which is filled
/// once under `once`.
struct event_state {
  explicit event_state(size_t chunk) : zone(chunk) {}

  /// Keeps alive the buffer the views and `data_obj` refer into.
  std::shared_ptr<const void> owner;
  msgpack::zone zone;
  std::string_view type;
  std::string_view id;
  std::string_view source;
  std::string_view key;
  std::string_view stream;
  std::string_view traceparent;
  /// The whole encoded envelope.
  std::string_view envelope;
  int64_t timestamp_us = 0;
  uint64_t seq = 0;
  uint64_t type_seq = 0;
  uint32_t schema_version = 1;
  msgpack::object data_obj;
  mutable std::once_flag once;
  mutable payload data;
};

/// Converts a MessagePack object to JSON. Every map key in `obj` must be a
/// string: `decode_next` and `decode_payload` refuse frames with others.
payload to_json(const msgpack::object& obj);

} // namespace herald::detail
