#pragma once

/// The event catalog: every event's trigger, producer, entity key, payload
/// schema and consumers, loaded from `config/events.yaml`.
///
/// File format:
///
/// ```yaml
/// version: 1                      # optional, default 1: the schema_version
/// events:
///   user.account.created:
///     trigger: New user registration completed
///     producer: UserService
///     key: user_id                # a required string/uuid payload field
///     payload:
///       user_id: {type: uuid}
///       email: {type: email}
///       registration_source: {type: enum, values: [web, api, oauth]}
///       note: {type: string, optional: true}
///       tags: {type: array, items: {type: string}}
///       address: {type: object, fields: {city: {type: string}}}
///     consumers:
///       EmailService: Send welcome email
/// ```
///
/// Types: string, uuid, email, int, float, bool, timestamp (RFC 3339), enum
/// (`values`), array (`items`), object (`fields`). Every field is required
/// unless `optional: true`; a payload with a field the schema does not name
/// is rejected. Every value has one canonical form, which publishing
/// stores and delivers (`canonical_form`): a uuid in lower case, an email
/// with its domain in lower case, a timestamp in UTC (`Z`) without trailing
/// fraction zeros, an int or float from `1.0` as `1` (MessagePack carries
/// an integral double as an integer);
/// `null` is the same as absent for every type (an optional field is
/// dropped, a required one is missing). `docs/events.md` ("Values") gives
/// each type's rule, its source (RFC 3339, RFC 4122, RFC 5321/5322 and the
/// subset herald takes) and examples.
///
/// Every catalog also holds herald's own events (`herald.alert.raised`);
/// the domain `herald` is reserved for them.
///
/// Thread safety: a loaded catalog is immutable; all const members are safe
/// to call concurrently.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "herald/core/event.hpp"

namespace herald {

/// The type of one payload field.
enum class field_type {
  string,
  uuid,
  email,
  integer,
  floating,
  boolean,
  timestamp,
  enumeration,
  array,
  object,
};

/// Returns the catalog spelling of `t`, e.g. "int" for `field_type::integer`.
const char* to_string(field_type t);

/// The schema of one payload field.
struct field_spec {
  std::string name;
  field_type type = field_type::string;
  bool optional = false;
  /// The allowed values of an enum.
  std::vector<std::string> values;
  /// The fields of an object.
  std::vector<field_spec> fields;
  /// The element schema of an array (exactly one element), empty otherwise.
  std::vector<field_spec> items;
  /// Optional free text shown in the generated docs.
  std::string description;
};

/// One event of the catalog.
struct event_spec {
  std::string name;
  std::string trigger;
  std::string producer;
  /// The payload field holding the entity id.
  std::string key;
  uint32_t schema_version = 1;
  std::vector<field_spec> payload;
  /// Consumer name and the action it takes, in file order.
  std::vector<std::pair<std::string, std::string>> consumers;
  /// Line of the event's entry in the file, from 1 (0 for herald's own).
  int line = 0;
  /// One of herald's own events (`herald.alert.raised`), in every catalog:
  /// its producer is the runtime and any service may consume it.
  bool builtin = false;

  /// Returns whether `consumer` is one of this event's consumers.
  bool has_consumer(std::string_view consumer) const noexcept;
};

/// A hash for maps keyed by `std::string` that are looked up with
/// `std::string_view` without making a string (with `std::equal_to<>`).
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};

/// The loaded catalog.
class catalog {
public:
  /// Loads and checks `path`. On failure the error lists every problem
  /// found, one per line, each as `FILE:LINE: event 'NAME': problem`.
  static caf::expected<catalog> load_file(const std::string& path);

  /// Parses YAML text; `source_name` stands for the file in messages.
  static caf::expected<catalog> parse(std::string_view yaml,
                                      const std::string& source_name);

  /// The event named `type`, or null.
  const event_spec* find(std::string_view type) const noexcept;

  /// All events, in file order, then herald's own (`builtin`).
  const std::vector<event_spec>& events() const noexcept {
    return events_;
  }

  /// Checks `data` against the schema of `type`. Fails with
  /// `errc::unknown_event` for a type not in the catalog, else with
  /// `errc::invalid_payload` naming event, field and rule, e.g.
  /// `event 'user.account.created': field 'email': "x" is not an email
  /// address`.
  caf::error validate(std::string_view type, const payload& data) const;

  /// Checks `data` against `spec` (see `validate`).
  static caf::error validate(const event_spec& spec, const payload& data);

  /// Checks `data` against `spec` and returns its canonical form: the
  /// payload with every value spelled canonically and optional fields sent
  /// as `null` left out (see the file comment). Returns nothing when `data`
  /// already is canonical (then no copy is made: the common case costs one
  /// walk). Fails as `validate`, with `errc::invalid_payload` naming the
  /// event, the field, the rule and the part of the value that breaks it,
  /// e.g. `event 'user.account.created': field 'email':
  /// "john.doe.@example.com" is not an email address: the local part
  /// 'john.doe.' ends with a dot (RFC 5322 §3.4.1 dot-atom)`. Thread-safe.
  static caf::expected<std::optional<payload>>
  canonical_form(const event_spec& spec, const payload& data);

  /// The file the catalog was loaded from (or the `source_name`).
  const std::string& source() const noexcept {
    return source_;
  }

private:
  // Lets `find` look up a string_view without making a std::string.
  std::string source_;
  std::vector<event_spec> events_;
  std::unordered_map<std::string, size_t, string_hash, std::equal_to<>> index_;
};

} // namespace herald
