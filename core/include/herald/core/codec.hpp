#pragma once

/// The MessagePack codec of the envelope.
///
/// The wire form is a MessagePack map with string keys: `event_type`,
/// `timestamp` (uint, microseconds since the epoch), `id`, `source`, `key`,
/// `stream`, `seq`, `type_seq`, `schema_version`, `traceparent` (omitted
/// when empty) and `data` (a map, last). Unknown keys are ignored so that
/// newer producers can add fields. Every map key, at any depth of `data`
/// (and of a `decode_payload` value), must be a string, as JSON's are: a
/// frame with another key (a number, a map, bytes) is refused, naming its
/// path.
///
/// Decoding never throws and never trusts sizes announced by the input:
/// msgpack-c's `unpack_limit` bounds depth and container / string sizes,
/// and frames over `max_frame` are refused before parsing.

#include <cstddef>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "herald/core/event.hpp"

namespace herald {

/// Bounds applied while decoding untrusted frames.
struct decode_limits {
  /// Largest frame accepted, in bytes. Default: 1 MiB.
  size_t max_frame = 1024 * 1024;
  /// Deepest nesting of arrays and maps. Default: 32.
  size_t max_depth = 32;
  /// Most elements of one array. Default: 65536.
  size_t max_array = 65536;
  /// Most entries of one map. Default: 65536.
  size_t max_map = 65536;
  /// Longest string, bin or ext, in bytes. Default: 1 MiB.
  size_t max_str = 1024 * 1024;
};

/// Appends the MessagePack form of the envelope `hdr` + `data` to `out`.
/// `data` must be a JSON object (validated beforehand). Never throws for
/// JSON values (numbers, strings, booleans, null, arrays, objects).
void encode(const envelope_header& hdr, const payload& data, std::string& out);

/// Decodes a frame holding exactly one envelope (copying it). Fails with
/// `errc::frame_too_large` or `errc::decode_error` (naming what was wrong)
/// on truncated, oversized, too deep, wrong-typed or trailing-garbage
/// input; never throws.
caf::expected<event> decode(std::string_view frame,
                            const decode_limits& limits = {});

/// Decodes the envelope that starts at `offset` in `frame` and advances
/// `offset` past it: a frame may carry several envelopes back to back (a
/// MessagePack stream), which is how the transport batches. The event
/// refers into `frame` without copying; `owner` keeps it alive. Errors as
/// for `decode`; after an error `offset` is unspecified.
caf::expected<event> decode_next(std::string_view frame, size_t& offset,
                                 std::shared_ptr<const void> owner,
                                 const decode_limits& limits = {});

/// Encodes a payload alone as MessagePack (control messages, tools, tests).
std::string encode_payload(const payload& data);

/// Decodes one MessagePack value as JSON, under the same limits and with
/// the same errors as `decode`; never throws.
caf::expected<payload> decode_payload(std::string_view frame,
                                      const decode_limits& limits = {});

} // namespace herald
