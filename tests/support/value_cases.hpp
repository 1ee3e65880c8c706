#pragma once

// The conformance table of the catalog's value types: for each type, values
// that are accepted as sent, brought to their canonical form, left out
// (null) or refused, with a part of the message that says why. One table
// for every publish path: `catalog::canonical_form`, `node` (event_bus::
// publish) and `herald publish --standalone` and `--control` must give the
// same verdict on every row. docs/events.md ("Values") quotes it.

#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/event.hpp"

namespace herald::test {

/// What publishing does with a value.
enum class verdict {
  /// Published as sent.
  same,
  /// Published as `expect`, its canonical form.
  canonical,
  /// Left out of the payload (an optional field sent as null).
  absent,
  /// Refused; the message contains `expect`.
  refused,
};

/// One row: the value `sent` (JSON text) as field `field` of the event
/// `test.value.TYPE`.
struct value_case {
  std::string_view type;
  /// `v`, a required field of the type, or `o`, an optional one.
  std::string_view field;
  std::string_view sent;
  verdict outcome;
  /// The canonical JSON text (`canonical`) or a part of the message
  /// (`refused`); empty otherwise.
  std::string_view expect;
};

/// The catalog of the table: one event per type, `test.value.TYPE`, with a
/// required field `v` and an optional `o` of the type, keyed by `k` (a
/// string) except `test.value.uuid`, which is keyed by its uuid `v`.
inline std::string value_catalog_yaml() {
  std::string yaml = "events:\n";
  struct type_spec {
    std::string_view name, schema;
  };
  const type_spec types[] = {
    {"string", "{type: string}"},
    {"uuid", "{type: uuid}"},
    {"email", "{type: email}"},
    {"int", "{type: int}"},
    {"float", "{type: float}"},
    {"bool", "{type: bool}"},
    {"timestamp", "{type: timestamp}"},
    {"enum", "{type: enum, values: [web, api]}"},
    {"array", "{type: array, items: {type: uuid}}"},
    {"object", "{type: object, fields: {id: {type: uuid}, note: {type: "
               "string, optional: true}}}"},
  };
  for (auto& t : types) {
    auto optional = std::string{t.schema};
    optional.insert(optional.size() - 1, ", optional: true");
    bool keyed_by_v = t.name == "uuid";
    yaml += "  test.value." + std::string{t.name} + ":\n";
    yaml += "    trigger: A test of the " + std::string{t.name} + " type\n";
    yaml += "    producer: TestService\n";
    yaml += std::string{"    key: "} + (keyed_by_v ? "v" : "k") + "\n";
    yaml += "    payload:\n";
    if (!keyed_by_v)
      yaml += "      k: {type: string}\n";
    yaml += "      v: " + std::string{t.schema} + "\n";
    yaml += "      o: " + optional + "\n";
    yaml += "    consumers:\n      TestConsumer: Check values\n";
  }
  return yaml;
}

/// A valid value of `type`, for rows about the optional field.
inline payload value_sample(std::string_view type) {
  if (type == "string")
    return "text";
  if (type == "uuid")
    return "0190b6d2-3c4e-7a00-8000-000000000001";
  if (type == "email")
    return "ada@example.com";
  if (type == "int")
    return 1;
  if (type == "float")
    return 0.5;
  if (type == "bool")
    return true;
  if (type == "timestamp")
    return "2024-01-01T00:00:00Z";
  if (type == "enum")
    return "web";
  if (type == "array")
    return payload::array();
  return payload{{"id", "0190b6d2-3c4e-7a00-8000-000000000001"}};
}

/// The payload of row `c`; `tag` tells rows apart (the key `k`).
inline payload value_payload(const value_case& c, const std::string& tag) {
  auto data = payload::object();
  if (c.type != "uuid")
    data["k"] = tag;
  auto sent = payload::parse(c.sent);
  if (c.field == "v") {
    data["v"] = std::move(sent);
  } else {
    data["v"] = value_sample(c.type);
    data["o"] = std::move(sent);
  }
  return data;
}

// 65 characters before the '@'.
inline constexpr std::string_view long_local =
  R"("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com")";

inline const std::vector<value_case>& value_cases() {
  using enum verdict;
  static const std::vector<value_case> rows = {
    // string: valid UTF-8, as sent.
    {"string", "v", R"("")", same, ""},
    {"string", "v", R"("  Ada  Lovelace ")", same, ""},
    {"string", "v", R"("Zoë ✓")", same, ""},
    {"string", "v", "42", refused, "42 is not a string"},
    {"string", "v", "null", refused,
     "missing required field 'v': it is null, which herald takes as absent"},
    {"string", "o", "null", absent, ""},
    // uuid: 8-4-4-4-12 hex digits, lower case.
    {"uuid", "v", R"("0190b6d2-3c4e-7a00-8000-000000000001")", same, ""},
    {"uuid", "v", R"("0190B6D2-3C4E-7A00-8000-000000000001")", canonical,
     R"("0190b6d2-3c4e-7a00-8000-000000000001")"},
    {"uuid", "v", R"("00000000-0000-0000-0000-000000000000")", same, ""},
    {"uuid", "v", R"("{0190b6d2-3c4e-7a00-8000-000000000001}")", refused,
     "is not a UUID (8-4-4-4-12 hex digits): it has 38 characters, not 36"},
    {"uuid", "v", R"("0190b6d23c4e7a008000000000000001")", refused,
     "it has 32 characters, not 36"},
    {"uuid", "v", R"("0190b6d2x3c4e-7a00-8000-000000000001")", refused,
     "character 9 is 'x', where a '-' belongs"},
    {"uuid", "v", R"("0190b6d2-3c4e-7a00-8000-00000000000g")", refused,
     "character 36 is 'g', not a hex digit"},
    {"uuid", "v", "1", refused, "1 is not a UUID"},
    {"uuid", "v", "null", refused, "missing required field 'v'"},
    {"uuid", "o", R"("0190B6D2-3C4E-7A00-8000-00000000000A")", canonical,
     R"("0190b6d2-3c4e-7a00-8000-00000000000a")"},
    {"uuid", "o", "null", absent, ""},
    // email: RFC 5321/5322 subset, the domain in lower case.
    {"email", "v", R"("first.last+tag@mail.example.co.uk")", same, ""},
    {"email", "v", R"("o'brien!#$%&*/=?^_`{|}~-@example.com")", same, ""},
    {"email", "v", R"("Ada.Lovelace@Example.COM")", canonical,
     R"("Ada.Lovelace@example.com")"},
    {"email", "v", R"("john.doe.@example.com")", refused,
     "is not an email address: the local part 'john.doe.' ends with a dot"},
    {"email", "v", R"(".john@example.com")", refused,
     "the local part '.john' starts with a dot"},
    {"email", "v", R"("a..b@example.com")", refused,
     "the local part 'a..b' has two dots in a row"},
    {"email", "v", long_local, refused,
     "the local part has 65 characters; at most 64"},
    {"email", "v", R"("x")", refused, "it has no '@'"},
    {"email", "v", R"("a@b@example.com")", refused, "it has more than one '@'"},
    {"email", "v", R"("@example.com")", refused,
     "nothing comes before the '@'"},
    {"email", "v", R"("a b@example.com")", refused,
     "character 2 is byte 0x20 (a space or control character)"},
    {"email", "v", R"("ada@example")", refused,
     "the domain 'example' has one label"},
    {"email", "v", R"("ada@example..com")", refused,
     "the domain 'example..com' has an empty label"},
    {"email", "v", R"("ada@-example.com")", refused,
     "the domain label '-example' starts or ends with a hyphen"},
    {"email", "v", R"("ada@exa_mple.com")", refused,
     "the domain 'exa_mple.com' holds '_'"},
    {"email", "v", R"("ada@[192.0.2.1]")", refused,
     "the domain is an address literal"},
    {"email", "v", R"("zoë@example.com")", refused, "byte 3 is not ASCII"},
    {"email", "o", "null", absent, ""},
    // int: a signed 64-bit integer; 1.0 is 1.
    {"int", "v", "-12", same, ""},
    {"int", "v", "9223372036854775807", same, ""},
    {"int", "v", "-9223372036854775808", same, ""},
    {"int", "v", "1.0", canonical, "1"},
    {"int", "v", "-0.0", canonical, "0"},
    {"int", "v", "1e3", canonical, "1000"},
    {"int", "v", "1.5", refused,
     "1.5 is not an integer: it has a fractional part"},
    {"int", "v", "9223372036854775808", refused,
     "it is outside -9223372036854775808 to 9223372036854775807"},
    {"int", "v", "1e19", refused,
     "it is outside -9223372036854775808 to 9223372036854775807"},
    {"int", "v", R"("1")", refused, "\"1\" is not an integer"},
    {"int", "o", "null", absent, ""},
    // float: a finite number; an integral one is the integer (2.0 is 2),
    // as MessagePack carries it.
    {"float", "v", "-0.25", same, ""},
    {"float", "v", "1e300", same, ""},
    {"float", "v", "2", same, ""},
    {"float", "v", "9007199254740993", same, ""},
    {"float", "v", "2.0", canonical, "2"},
    {"float", "v", "-3e2", canonical, "-300"},
    {"float", "v", "1e19", canonical, "10000000000000000000"},
    {"float", "v", R"("0.5")", refused, "\"0.5\" is not a number"},
    {"float", "o", "null", absent, ""},
    // bool: true or false.
    {"bool", "v", "false", same, ""},
    {"bool", "v", R"("true")", refused, "\"true\" is not true or false"},
    {"bool", "v", "1", refused, "1 is not true or false"},
    {"bool", "o", "null", absent, ""},
    // timestamp: RFC 3339, in UTC, the fraction without trailing zeros.
    {"timestamp", "v", R"("2024-02-29T23:59:59.123456Z")", same, ""},
    {"timestamp", "v", R"("2024-01-01t00:00:00z")", canonical,
     R"("2024-01-01T00:00:00Z")"},
    {"timestamp", "v", R"("2024-01-01T01:00:00.500+01:00")", canonical,
     R"("2024-01-01T00:00:00.5Z")"},
    {"timestamp", "v", R"("2023-12-31T20:30:00-05:30")", canonical,
     R"("2024-01-01T02:00:00Z")"},
    {"timestamp", "v", R"("2024-01-01T00:00:00.000Z")", canonical,
     R"("2024-01-01T00:00:00Z")"},
    {"timestamp", "v", R"("2024-01-01T00:00:00-00:00")", canonical,
     R"("2024-01-01T00:00:00Z")"},
    {"timestamp", "v", R"("2016-12-31T23:59:60Z")", same, ""},
    {"timestamp", "v", R"("2016-12-31T15:59:60.25-08:00")", canonical,
     R"("2016-12-31T23:59:60.25Z")"},
    {"timestamp", "v", R"("2020-01-01T00:00:60Z")", refused,
     "second 60 is a leap second, valid only as 23:59:60 UTC at the end of "
     "a day that had one (RFC 3339 §5.7"},
    {"timestamp", "v", R"("2020-12-31T23:59:60Z")", refused,
     "second 60 is a leap second"},
    {"timestamp", "v", R"("2016-12-31T23:59:60+01:00")", refused,
     "in UTC this is 2016-12-31T22:59:60Z"},
    {"timestamp", "v", R"("2024-01-01")", refused,
     "is not an RFC 3339 timestamp (e.g. 2024-01-01T00:00:00Z): character "
     "11 must be 'T'"},
    {"timestamp", "v", R"("2024-01-01 00:00:00Z")", refused,
     "character 11 must be 'T' (or 't'; a space is not taken)"},
    {"timestamp", "v", R"("2024-01-01T00:00:00")", refused,
     "no offset at character 20"},
    {"timestamp", "v", R"("2024-13-01T00:00:00Z")", refused,
     "month 13 is not 01 to 12"},
    {"timestamp", "v", R"("2023-02-29T00:00:00Z")", refused,
     "day 29 is not in 2023-02, which has 28 days"},
    {"timestamp", "v", R"("2024-01-01T24:00:00Z")", refused,
     "24:00:00 is not a time of day"},
    {"timestamp", "v", R"("2024-01-01T00:00:00.Z")", refused,
     "the fraction after the '.' has no digits"},
    {"timestamp", "v", R"("2024-01-01T00:00:00+0100")", refused,
     "the offset '+0100' is not +HH:MM or -HH:MM"},
    {"timestamp", "v", R"("2024-01-01T00:00:00Zjunk")", refused,
     "'junk' follows the offset"},
    {"timestamp", "v", R"("0000-01-01T00:00:00+01:00")", refused,
     "in UTC it falls in the year -1, outside 0000-9999"},
    {"timestamp", "v", "1704067200", refused,
     "1704067200 is not an RFC 3339 timestamp"},
    {"timestamp", "o", "null", absent, ""},
    // enum: exact.
    {"enum", "v", R"("api")", same, ""},
    {"enum", "v", R"("WEB")", refused,
     "\"WEB\" is not one of web, api: enum values are exact, case included "
     "(did you mean 'web'?)"},
    {"enum", "v", "1", refused, "1 is not one of web, api"},
    {"enum", "o", "null", absent, ""},
    // array: every element canonical; no null elements.
    {"array", "v", "[]", same, ""},
    {"array", "v", R"(["0190B6D2-3C4E-7A00-8000-000000000001"])", canonical,
     R"(["0190b6d2-3c4e-7a00-8000-000000000001"])"},
    {"array", "v", R"(["0190b6d2-3c4e-7a00-8000-000000000001", null])", refused,
     "field 'v[1]': null, which herald takes as an absent value, and an "
     "array element cannot be absent"},
    {"array", "v", R"(["x"])", refused, "field 'v[0]': \"x\" is not a UUID"},
    {"array", "o", "null", absent, ""},
    // object: every field canonical; null optional fields left out.
    {"object", "v",
     R"({"id": "0190B6D2-3C4E-7A00-8000-000000000001", "note": null})",
     canonical, R"({"id":"0190b6d2-3c4e-7a00-8000-000000000001"})"},
    {"object", "v", R"({"id": null})", refused,
     "missing required field 'v.id': it is null"},
    {"object", "v", R"({"id": "0190b6d2-3c4e-7a00-8000-000000000001", "x": 1})",
     refused, "unexpected field 'v.x'"},
    {"object", "o", "null", absent, ""},
  };
  return rows;
}

/// Checks the payload `data` published for row `c` (sent as `sent`) and,
/// unless null, its entity key `key`: the value as the row says, the key
/// the canonical uuid's or `tag`. REQUIRES: `c` is not refused.
inline void check_published(const value_case& c, const payload& sent,
                            const payload& data, const std::string* key,
                            const std::string& tag) {
  std::string field{c.field};
  if (c.outcome == verdict::absent) {
    CHECK_FALSE(data.contains(field));
    return;
  }
  auto want = c.outcome == verdict::same ? sent.at(field).dump()
                                         : payload::parse(c.expect).dump();
  CHECK(data.at(field).dump() == want);
  if (key != nullptr)
    CHECK(*key == (c.type == "uuid" ? data.at("v").get<std::string>() : tag));
}

/// The row as a test names it.
inline std::string describe(const value_case& c) {
  return std::string{c.type} + " " + std::string{c.field} + " = "
         + std::string{c.sent};
}

} // namespace herald::test
