#pragma once

/// Payloads generated from a catalog's schema, valid for any catalog:
/// every required field, each optional one half of the time, values of
/// the field's type (enums from their values, nested objects and arrays
/// recursively), and the entity key in the event's key field.
///
/// Thread safety: pure functions; `rng` is the caller's.

#include <cstdint>
#include <random>
#include <string>

#include <caf/expected.hpp>

#include "herald/core/catalog.hpp"

namespace herald::harness {

/// The type of `spec`'s key field. Fails with `errc::invalid_config`
/// naming the event and the field when it is not string, uuid or email
/// (the types a generated key can take).
caf::expected<field_type> key_type_of(const event_spec& spec);

/// Entity key `i` of a run with `seed`, of type `t` (string, uuid, email):
/// distinct per `i`, the same for the same seed and `i`.
std::string make_key(field_type t, uint64_t seed, size_t i);

/// A payload of `spec` with `key` in its key field, valid under the
/// catalog.
payload make_payload(const event_spec& spec, const std::string& key,
                     std::mt19937_64& rng);

} // namespace herald::harness
