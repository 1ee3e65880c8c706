#pragma once

/// The envelope of an event and the event as a handler sees it.
///
/// On the wire the envelope is a MessagePack map (see codec.hpp); shown to a
/// person it is JSON. Its fields map onto CloudEvents attributes:
///
/// | field            | meaning                                   | CloudEvents
/// |
/// |------------------|-------------------------------------------|--------------|
/// | `event_type`     | `domain.entity.action`                    | `type` | |
/// `timestamp`      | microseconds since the Unix epoch, UTC    | `time` | |
/// `data`           | the payload, validated against the catalog| `data` | |
/// `id`             | UUIDv7, unique per event                  | `id` | |
/// `source`         | producing service                         | `source` | |
/// `key`            | entity id (the catalog's key field)       | `subject` |
/// | `stream`, `seq`  | producer's stream id, position in it      | extension |
/// | `type_seq`       | position among the stream's events of the same type |
/// extension | | `schema_version` | catalog version of the payload            |
/// `dataschema` | | `traceparent`    | optional W3C trace context | extension |

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace herald {

/// A payload: a JSON-like tree, always an object at the top.
using payload = nlohmann::json;

/// The envelope fields a producer fills in, all but `data`. The views must
/// outlive the call they are passed to.
struct envelope_header {
  std::string_view event_type;
  int64_t timestamp_us = 0;
  std::string_view id;
  std::string_view source;
  std::string_view key;
  std::string_view stream;
  uint64_t seq = 0;
  uint64_t type_seq = 0;
  uint32_t schema_version = 1;
  std::string_view traceparent;
};

namespace detail {
struct event_state;
} // namespace detail

/// An event as consumers see it: the decoded envelope and a payload that is
/// decoded from MessagePack only when `data()` is first called.
///
/// Thread safety: copies share one immutable state; all members are safe to
/// call from several threads at once.
class event {
public:
  event() = default;

  explicit event(std::shared_ptr<const detail::event_state> state,
                 bool redelivered = false) noexcept
      : state_(std::move(state)), redelivered_(redelivered) {}

  /// `domain.entity.action`.
  std::string_view type() const noexcept;
  /// UUIDv7 of the event, the same on every delivery: the idempotency key.
  std::string_view id() const noexcept;
  /// The producing service.
  std::string_view source() const noexcept;
  /// The entity id, taken from the payload field the catalog names.
  std::string_view key() const noexcept;
  /// The producing node's stream id.
  std::string_view stream() const noexcept;
  /// Position in the producer's stream, from 1.
  uint64_t seq() const noexcept;
  /// Position among the stream's events of this type, from 1.
  uint64_t type_seq() const noexcept;
  /// Catalog version of the payload schema.
  uint32_t schema_version() const noexcept;
  /// W3C trace context, empty when none.
  std::string_view traceparent() const noexcept;
  /// Publish time, microseconds since the Unix epoch (UTC).
  int64_t timestamp_us() const noexcept;
  /// Publish time as RFC 3339 UTC with microseconds.
  std::string timestamp() const;
  /// The payload. Decoded on first use; decoding was validated on receipt.
  const payload& data() const;
  /// The whole envelope as received, MessagePack (see codec.hpp): what a
  /// dead letter keeps.
  std::string_view envelope() const noexcept;
  /// Whether this event may have been handed to this consumer before.
  bool redelivered() const noexcept {
    return redelivered_;
  }
  /// Returns a copy of this event marked as redelivered.
  event as_redelivered() const {
    event copy{state_, true};
    copy.partition_ = partition_;
    copy.lease_epoch_ = lease_epoch_;
    return copy;
  }
  /// The consumer group partition this event was handed out under, in
  /// [0, the consumer's `partitions`): `partition_of(key(), partitions)`
  /// (partition.hpp). 0 for an event not handed out by a consumer group
  /// (redriven dead letters, `herald tail`).
  uint32_t partition() const noexcept {
    return partition_;
  }
  /// The epoch of the lease under which this consumer holds `partition()`:
  /// a fencing token for the handler's own side effects. Epochs of one
  /// (stream, group, partition) only grow, across members and owner
  /// restarts; a store that remembers the highest epoch it accepted per
  /// partition and refuses lower ones refuses the writes of a member whose
  /// lease ended (after Kleppmann, "How to do distributed locking"). 0 when
  /// the event was not handed out under a lease (redriven dead letters,
  /// `herald tail`).
  uint64_t lease_epoch() const noexcept {
    return lease_epoch_;
  }
  /// Returns a copy of this event handed out under the lease `epoch` on
  /// `partition`.
  event under_lease(uint32_t partition, uint64_t epoch) const {
    event copy{state_, redelivered_};
    copy.partition_ = partition;
    copy.lease_epoch_ = epoch;
    return copy;
  }
  /// Whether this handle refers to an event.
  bool valid() const noexcept {
    return state_ != nullptr;
  }
  /// The whole envelope as JSON: event_type, timestamp, data, then id,
  /// source, key, stream, seq, type_seq, schema_version (and traceparent).
  nlohmann::ordered_json to_json() const;
  /// The event as a CloudEvents 1.0 structured-mode JSON object
  /// (`herald tail --format cloudevents`), a plain mapping of the
  /// envelope: `specversion` "1.0", `id`, `source`, `type` (the event
  /// type), `time` (RFC 3339 UTC, microseconds), `subject` (the key),
  /// `datacontenttype` "application/json", then the extensions
  /// `heraldstream`, `heraldseq`, `heraldtypeseq`, `heraldschemaversion`
  /// and, when set, `traceparent` (the distributed-tracing extension),
  /// then `data`. `heraldseq` and `heraldtypeseq` are decimal strings:
  /// CloudEvents integers are 32-bit and a stream's positions outgrow
  /// them. The schema version is an extension, not `dataschema`, which
  /// must be a URI the catalog does not have.
  nlohmann::ordered_json to_cloudevent() const;

private:
  std::shared_ptr<const detail::event_state> state_;
  bool redelivered_ = false;
  uint32_t partition_ = 0;
  uint64_t lease_epoch_ = 0;
};

/// Several events carried in one actor message.
using event_batch = std::vector<event>;

/// Formats microseconds since the epoch as RFC 3339 UTC, e.g.
/// `2024-01-01T00:00:00.000000Z`.
std::string format_timestamp(int64_t micros_since_epoch);

/// Parses an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`
/// (`t` and `z` too), into microseconds since the epoch; digits of the
/// fraction past the sixth are dropped. Nothing when `text` is not one: the
/// rule of the catalog's `timestamp` type (a leap second only as 23:59:60
/// UTC on a day that had one, RFC 3339 §5.7, counted as the next second;
/// years 0000-9999 in UTC).
std::optional<int64_t> parse_timestamp(std::string_view text);

/// Microseconds since the Unix epoch, from the system clock.
int64_t now_us() noexcept;

/// A new UUIDv7 (time ordered) in canonical text form. Thread-safe.
std::string make_uuid_v7();

/// A new UUIDv7 for the time `micros_since_epoch`. Thread-safe.
std::string make_uuid_v7(int64_t micros_since_epoch);

/// A new random UUIDv4 in canonical text form. Thread-safe.
std::string make_uuid_v4();

} // namespace herald
