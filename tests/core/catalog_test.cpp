#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/catalog.hpp"
#include "herald/core/errc.hpp"
#include "value_cases.hpp"

using herald::catalog;
using herald::errc;
using herald::field_type;
using herald::payload;
using json_pointer = payload::json_pointer;

namespace {

const std::string seed_path = HERALD_SOURCE_DIR "/config/events.yaml";

/// The message of a failed `expected`, empty for a value.
template <class T> std::string message_of(const caf::expected<T>& x) {
  return x ? std::string{} : herald::message_of(x.error());
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

catalog load_seed() {
  auto cat = catalog::load_file(seed_path);
  INFO(message_of(cat));
  REQUIRE(cat);
  return std::move(*cat);
}

// One event with a field of every type.
constexpr std::string_view all_types_yaml = R"(events:
  test.all.types:
    trigger: A test needs every type
    producer: TestService
    key: id
    payload:
      id: {type: uuid}
      name: {type: string}
      email: {type: email}
      count: {type: int}
      ratio: {type: float}
      active: {type: bool}
      at: {type: timestamp}
      source: {type: enum, values: [web, api, oauth]}
      tags: {type: array, items: {type: string}}
      address:
        type: object
        fields:
          city: {type: string}
          zip: {type: string, optional: true}
      note: {type: string, optional: true, description: Free text}
    consumers:
      TestConsumer: Check types
)";

payload all_types_payload() {
  return payload{
    {"id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b"},
    {"name", "Ada"},
    {"email", "ada@example.com"},
    {"count", 3},
    {"ratio", 0.5},
    {"active", true},
    {"at", "2024-01-01T00:00:00Z"},
    {"source", "web"},
    {"tags", {"a", "b"}},
    {"address", {{"city", "London"}}},
  };
}

} // namespace

TEST_CASE("the seed's events load from config/events.yaml", "[core][catalog]") {
  auto cat = load_seed();
  CHECK(cat.source() == seed_path);
  // The seed's two, then herald's own alert event.
  REQUIRE(cat.events().size() == 3);
  CHECK_FALSE(cat.events()[0].builtin);
  const auto* alert = cat.find("herald.alert.raised");
  REQUIRE(alert != nullptr);
  CHECK(alert->builtin);
  CHECK(alert->producer == "herald");
  CHECK(alert->has_consumer("AnyService"));

  const auto* created = cat.find("user.account.created");
  REQUIRE(created != nullptr);
  CHECK(created->trigger == "New user registration completed");
  CHECK(created->producer == "UserService");
  CHECK(created->key == "user_id");
  CHECK(created->schema_version == 1);
  CHECK(created->line > 0);
  REQUIRE(created->payload.size() == 3);
  CHECK(created->payload[0].name == "user_id");
  CHECK(created->payload[0].type == field_type::uuid);
  CHECK(created->payload[1].name == "email");
  CHECK(created->payload[1].type == field_type::email);
  CHECK(created->payload[2].name == "registration_source");
  CHECK(created->payload[2].type == field_type::enumeration);
  CHECK(created->payload[2].values
        == std::vector<std::string>{"web", "api", "oauth"});
  using consumers = std::vector<std::pair<std::string, std::string>>;
  CHECK(created->consumers
        == consumers{{"EmailService", "Send welcome email"},
                     {"AnalyticsService", "Track signup"}});
  CHECK(created->has_consumer("EmailService"));
  CHECK_FALSE(created->has_consumer("BillingService"));

  const auto* deleted = cat.find("user.account.deleted");
  REQUIRE(deleted != nullptr);
  CHECK(deleted->trigger == "User account deletion");
  CHECK(deleted->producer == "UserService");
  CHECK(deleted->key == "user_id");
  REQUIRE(deleted->payload.size() == 2);
  CHECK(deleted->payload[1].name == "deletion_reason");
  CHECK(deleted->payload[1].values
        == std::vector<std::string>{"user_request", "admin", "inactivity"});
  CHECK(deleted->consumers
        == consumers{{"DataCleanupService", "Remove user data"},
                     {"BillingService", "Cancel subscriptions"}});
  CHECK(cat.find("user.account.exploded") == nullptr);
}

TEST_CASE("the seed's payloads validate", "[core][catalog]") {
  auto cat = load_seed();
  CHECK_FALSE(
    cat.validate("user.account.created",
                 payload{{"user_id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b"},
                         {"email", "user@example.com"},
                         {"registration_source", "oauth"}}));
  CHECK_FALSE(
    cat.validate("user.account.deleted",
                 payload{{"user_id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b"},
                         {"deletion_reason", "inactivity"}}));
}

TEST_CASE("a bad payload names the event, the field and the rule",
          "[core][catalog]") {
  auto cat = load_seed();
  payload good{{"user_id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b"},
               {"email", "user@example.com"},
               {"registration_source", "web"}};
  auto check = [&](payload data, std::string_view message) {
    auto err = cat.validate("user.account.created", data);
    CHECK(herald::is(err, errc::invalid_payload));
    CHECK(herald::message_of(err) == message);
  };
  auto bad_email = good;
  bad_email["email"] = "x";
  check(bad_email, "event 'user.account.created': field 'email': \"x\" is not "
                   "an email address: it has no '@'");
  auto bad_source = good;
  bad_source["registration_source"] = "fax";
  check(bad_source, "event 'user.account.created': field "
                    "'registration_source': \"fax\" is not one of web, api, "
                    "oauth");
  auto no_email = good;
  no_email.erase("email");
  check(no_email, "event 'user.account.created': missing required field "
                  "'email'");
  auto extra = good;
  extra["foo"] = 1;
  check(extra, "event 'user.account.created': unexpected field 'foo' (the "
               "catalog's schema has no such field; add it to "
               "config/events.yaml or remove it)");
}

TEST_CASE("an unknown event type names the catalog", "[core][catalog]") {
  auto cat = load_seed();
  auto err = cat.validate("user.account.exploded", payload::object());
  CHECK(herald::is(err, errc::unknown_event));
  CHECK(herald::message_of(err)
        == "unknown event type 'user.account.exploded': not in the catalog "
             + seed_path + "; add it there first");
}

TEST_CASE("every field type accepts its values and rejects others",
          "[core][catalog]") {
  auto cat = catalog::parse(all_types_yaml, "types.yaml");
  INFO(message_of(cat));
  REQUIRE(cat);
  REQUIRE_FALSE(cat->validate("test.all.types", all_types_payload()));

  struct row {
    std::string_view pointer; // the value to change; "" for the payload
    payload value;            // discarded erases the field
    std::string message;      // empty when the payload stays valid
  };
  const auto erase = payload(payload::value_t::discarded);
  const std::string ev = "event 'test.all.types': ";
  const std::string unexpected = " (the catalog's schema has no such field; "
                                 "add it to config/events.yaml or remove it)";
  const std::vector<row> rows = {
    // string
    {"/name", "", ""},
    {"/name", 42, "field 'name': 42 is not a string"},
    {"/name", nullptr,
     "missing required field 'name': it is null, which herald takes as "
     "absent"},
    // uuid
    {"/id", "0190A5B2-7C3E-7D4F-8A1B-2C3D4E5F6A7B", ""},
    {"/id", "not-a-uuid",
     "field 'id': \"not-a-uuid\" is not a UUID (8-4-4-4-12 hex digits)"},
    {"/id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7",
     "field 'id': \"0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7\" is not a UUID"},
    {"/id", "0190a5b2x7c3e-7d4f-8a1b-2c3d4e5f6a7b", "field 'id': "},
    {"/id", "0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7g", "field 'id': "},
    {"/id", 1, "field 'id': 1 is not a UUID"},
    // email
    {"/email", "first.last+tag@mail.example.co.uk", ""},
    {"/email", "x", "field 'email': \"x\" is not an email address"},
    {"/email", "@example.com", "is not an email address"},
    {"/email", "a@b@example.com", "is not an email address"},
    {"/email", "a b@example.com", "is not an email address"},
    {"/email", "a@example", "is not an email address"},
    {"/email", "a@example.", "is not an email address"},
    {"/email", "a@.example.com", "is not an email address"},
    {"/email", "a@example..com", "is not an email address"},
    {"/email", 7, "field 'email': 7 is not an email address"},
    // int
    {"/count", -12, ""},
    {"/count", 1.5, "field 'count': 1.5 is not an integer"},
    {"/count", "1", "field 'count': \"1\" is not an integer"},
    // float
    {"/ratio", 2, ""},
    {"/ratio", -0.25, ""},
    {"/ratio", "0.5", "field 'ratio': \"0.5\" is not a number"},
    // bool
    {"/active", false, ""},
    {"/active", "true", "field 'active': \"true\" is not true or false"},
    {"/active", 1, "field 'active': 1 is not true or false"},
    // timestamp
    {"/at", "2024-02-29T23:59:59.123456+01:00", ""},
    {"/at", "2024-01-01t00:00:00z", ""},
    {"/at", "2024-01-01T00:00:00-05:30", ""},
    {"/at", "2024-01-01",
     "field 'at': \"2024-01-01\" is not an RFC 3339 timestamp (e.g. "
     "2024-01-01T00:00:00Z)"},
    {"/at", "2024-01-01T00:00:00", "is not an RFC 3339 timestamp"},
    {"/at", "2024-01-01 00:00:00Z", "is not an RFC 3339 timestamp"},
    {"/at", "2024-13-01T00:00:00Z", "is not an RFC 3339 timestamp"},
    {"/at", "2023-02-29T00:00:00Z", "is not an RFC 3339 timestamp"},
    {"/at", "2024-01-01T24:00:00Z", "is not an RFC 3339 timestamp"},
    {"/at", "2024-01-01T00:00:00.Z", "is not an RFC 3339 timestamp"},
    {"/at", "2024-01-01T00:00:00+0100", "is not an RFC 3339 timestamp"},
    {"/at", "2024-01-01T00:00:00Zjunk", "is not an RFC 3339 timestamp"},
    {"/at", 1704067200, "field 'at': 1704067200 is not an RFC 3339"},
    // enum
    {"/source", "oauth", ""},
    {"/source", "fax", "field 'source': \"fax\" is not one of web, api, oauth"},
    {"/source", "WEB", "field 'source': \"WEB\" is not one of web, api, oauth"},
    {"/source", 1, "field 'source': 1 is not one of web, api, oauth"},
    // array
    {"/tags", payload::array(), ""},
    {"/tags", "a", "field 'tags': \"a\" is not an array"},
    {"/tags", {"a", "b", 3}, "field 'tags[2]': 3 is not a string"},
    // object
    {"/address/zip", "NW1", ""},
    {"/address", "London", "field 'address': \"London\" is not an object"},
    {"/address/city", 1, "field 'address.city': 1 is not a string"},
    {"/address/city", erase, "missing required field 'address.city'"},
    {"/address/country", "UK",
     "unexpected field 'address.country'" + unexpected},
    // required and optional fields
    {"/note", "hello", ""},
    {"/note", nullptr, ""},
    {"/note", 5, "field 'note': 5 is not a string"},
    {"/email", erase, "missing required field 'email'"},
    {"/foo", 1, "unexpected field 'foo'" + unexpected},
    // the payload itself
    {"", payload::array({1}), "the payload must be a JSON object, not [1]"},
  };
  for (const auto& r : rows) {
    auto data = all_types_payload();
    if (r.value.is_discarded())
      data[json_pointer{std::string{r.pointer}}.parent_pointer()].erase(
        json_pointer{std::string{r.pointer}}.back());
    else
      data[json_pointer{std::string{r.pointer}}] = r.value;
    INFO(data.dump());
    auto err = cat->validate("test.all.types", data);
    if (r.message.empty()) {
      CHECK_FALSE(err);
      CHECK(herald::message_of(err).empty());
      continue;
    }
    CHECK(herald::is(err, errc::invalid_payload));
    CHECK_THAT(herald::message_of(err), Catch::StartsWith(ev));
    CHECK_THAT(herald::message_of(err),
               Catch::Contains(std::string{r.message}));
  }
}

TEST_CASE("long values are shortened in messages", "[core][catalog]") {
  auto cat = catalog::parse(all_types_yaml, "types.yaml");
  REQUIRE(cat);
  auto data = all_types_payload();
  data["name"] = payload::array();
  for (int i = 0; i < 100; ++i)
    data["name"].push_back(i);
  auto message = herald::message_of(cat->validate("test.all.types", data));
  CHECK_THAT(message, Catch::Contains("...")
                        && Catch::EndsWith(" is not a "
                                           "string"));
  CHECK(message.size() < 150);
}

TEST_CASE("the catalog version is every event's schema_version",
          "[core][catalog]") {
  auto cat =
    catalog::parse("version: 3\n" + std::string{all_types_yaml}, "types.yaml");
  REQUIRE(cat);
  CHECK(cat->find("test.all.types")->schema_version == 3);
}

TEST_CASE("a catalog with several problems reports all of them with file and "
          "line",
          "[core][catalog]") {
  constexpr std::string_view yaml = R"(version: 1
events:
  User.account.created:
    trigger: Sign-up
    producer: UserService
    key: id
    payload:
      id: {type: uuid}
    consumers: {EmailService: Send welcome email}
    colour: blue
  user.account.deleted:
    producer: UserService
    key: kind
    payload:
      id: {type: uuid}
      email: {type: emial}
      kind: {type: enum}
      tags: {type: array}
      note: {type: string, optional: maybe}
      address: {type: object}
      city: {type: string, values: [a]}
      id: {type: string}
    consumers:
      BillingService:
  user.account.deleted:
    trigger: Again
owner: me
)";
  auto cat = catalog::parse(yaml, "bad.yaml");
  REQUIRE_FALSE(cat);
  CHECK(herald::is(cat.error(), errc::invalid_catalog));
  const std::string deleted = "event 'user.account.deleted': ";
  const std::vector<std::string> expected = {
    "bad.yaml:3: event name 'User.account.created': part 1 'User' must match "
    "[a-z][a-z0-9_]* (lower case letters, digits, underscores, starting with "
    "a letter)",
    "bad.yaml:10: event 'User.account.created': unknown key 'colour' "
    "(allowed: trigger, producer, key, payload, consumers)",
    "bad.yaml:11: " + deleted + "missing 'trigger' (when the event fires)",
    "bad.yaml:13: " + deleted
      + "key 'kind' must name a required payload "
        "field of type string or uuid; 'kind' has type enum",
    "bad.yaml:16: " + deleted
      + "field 'email': unknown type 'emial' (use one "
        "of string, uuid, email, int, float, bool, timestamp, enum, array, "
        "object)",
    "bad.yaml:17: " + deleted
      + "field 'kind': enum without 'values' (add "
        "values: [a, b])",
    "bad.yaml:18: " + deleted
      + "field 'tags': array without 'items' (add "
        "items: {type: string})",
    "bad.yaml:19: " + deleted
      + "field 'note': 'optional' must be true or "
        "false",
    "bad.yaml:20: " + deleted
      + "field 'address': object without 'fields' "
        "(add fields: {name: {type: string}})",
    "bad.yaml:21: " + deleted
      + "field 'city': 'values' is only for enum "
        "fields",
    "bad.yaml:22: " + deleted + "duplicate field 'id' (first at line 15)",
    "bad.yaml:24: " + deleted
      + "consumer 'BillingService': the action must "
        "be a text, e.g. BillingService: Send welcome email",
    "bad.yaml:25: duplicate event 'user.account.deleted' (first at line 11)",
    "bad.yaml:27: unknown key 'owner' (allowed: version, events)",
  };
  CHECK(lines_of(herald::message_of(cat.error())) == expected);
}

TEST_CASE("catalog structure problems are reported", "[core][catalog]") {
  struct row {
    std::string_view yaml;
    std::string_view message;
  };
  const std::vector<row> rows = {
    {"", "c.yaml: a catalog must be a map with 'events'"},
    {"- a\n- b\n", "c.yaml:1: a catalog must be a map with 'events'"},
    {"version: 1\n", "c.yaml:1: missing 'events' (a map from event name to "
                     "its definition)"},
    {"events: [a]\n", "c.yaml:1: 'events' must be a map from event name to "
                      "its definition"},
    {"version: 0\nevents: {}\n", "c.yaml:1: 'version' must be a positive "
                                 "integer"},
    {"version: x\nevents: {}\n", "c.yaml:1: 'version' must be a positive "
                                 "integer"},
    {"events:\n  herald.alert.raised: {}\n",
     "c.yaml:2: event 'herald.alert.raised': the domain 'herald' is reserved "
     "for herald's own events; pick another domain"},
    {"events:\n  a.b.c: 3\n", "c.yaml:2: event 'a.b.c': must be a map with "
                              "trigger, producer, key, payload and "
                              "consumers"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: [id]\n    consumers: {}\n",
     "c.yaml:6: event 'a.b.c': 'payload' must be a map from field name to its "
     "schema"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: uuid}\n    consumers: {}\n",
     "c.yaml:6: event 'a.b.c': field 'id': must be a map like {type: "
     "string}"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: user\n"
     "    payload: {id: {type: uuid}}\n    consumers: {}\n",
     "c.yaml:5: event 'a.b.c': key 'user' must name a required payload field "
     "of type string or uuid; the payload has no such field"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid, optional: true}}\n    consumers: {}\n",
     "c.yaml:5: event 'a.b.c': key 'id' must name a required payload field "
     "of type string or uuid; 'id' is optional"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}}\n    consumers: [x]\n",
     "c.yaml:7: event 'a.b.c': 'consumers' must be a map from consumer to "
     "its action"},
    {"events:\n  a.b.c:\n    trigger: [t]\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}}\n    consumers: {}\n",
     "c.yaml:3: event 'a.b.c': 'trigger' must be a text"},
    {"events:\n  a.b.c: {}\n", "c.yaml:2: event 'a.b.c': missing 'payload'"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}, l: {type: enum, values: [a, [b]]}}\n"
     "    consumers: {}\n",
     "c.yaml:6: event 'a.b.c': field 'l': each of 'values' must be a plain "
     "text"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}, l: {type: array, items: {type: x}}}\n"
     "    consumers: {}\n",
     "c.yaml:6: event 'a.b.c': field 'l[]': unknown type 'x'"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}, o: {type: object, fields: {n: {}}}}\n"
     "    consumers: {}\n",
     "c.yaml:6: event 'a.b.c': field 'o.n': missing 'type' (one of string,"},
    {"events:\n  a.b.c:\n    trigger: t\n   producer: p\n",
     "c.yaml:4: YAML syntax error: end of map not found"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: a/b\n    key: id\n"
     "    payload: {id: {type: uuid}}\n    consumers: {}\n",
     "c.yaml:4: event 'a.b.c': producer name 'a/b' holds '/' at byte 2"},
    {"events:\n  a.b.c:\n    trigger: t\n    producer: p\n    key: id\n"
     "    payload: {id: {type: uuid}}\n    consumers: {Email/Service: x}\n",
     "c.yaml:7: event 'a.b.c': consumer name 'Email/Service' holds '/' at "
     "byte 6: a consumer name is 1 to 128 letters, digits"},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    auto cat = catalog::parse(r.yaml, "c.yaml");
    REQUIRE_FALSE(cat);
    CHECK(herald::is(cat.error(), errc::invalid_catalog));
    CHECK_THAT(herald::message_of(cat.error()),
               Catch::Contains(std::string{r.message}));
  }
}

TEST_CASE("a missing catalog file is an io_error naming the path",
          "[core][catalog]") {
  auto cat = catalog::load_file("/nonexistent/events.yaml");
  REQUIRE_FALSE(cat);
  CHECK(herald::is(cat.error(), errc::io_error));
  CHECK(herald::message_of(cat.error())
        == "cannot read catalog '/nonexistent/events.yaml': no such file");
}

TEST_CASE("field types have their catalog spelling", "[core][catalog]") {
  CHECK(std::string{herald::to_string(field_type::integer)} == "int");
  CHECK(std::string{herald::to_string(field_type::floating)} == "float");
  CHECK(std::string{herald::to_string(field_type::boolean)} == "bool");
  CHECK(std::string{herald::to_string(field_type::enumeration)} == "enum");
  CHECK(std::string{herald::to_string(field_type::object)} == "object");
}

namespace {

catalog value_catalog() {
  auto cat = catalog::parse(herald::test::value_catalog_yaml(), "values.yaml");
  INFO(message_of(cat));
  REQUIRE(cat);
  return std::move(*cat);
}

/// The canonical form of `data` as `test.value.TYPE`: the payload as it is
/// published, or the error.
caf::expected<payload> published_as(const catalog& cat, std::string_view type,
                                    const payload& data) {
  const auto* spec = cat.find("test.value." + std::string{type});
  REQUIRE(spec != nullptr);
  auto canonical = catalog::canonical_form(*spec, data);
  if (!canonical)
    return std::move(canonical.error());
  return *canonical ? **canonical : data;
}

} // namespace

TEST_CASE("every value type has one canonical form: the conformance table",
          "[core][catalog][values]") {
  using herald::test::verdict;
  auto cat = value_catalog();
  size_t n = 0;
  for (const auto& c : herald::test::value_cases()) {
    INFO(herald::test::describe(c));
    auto data = herald::test::value_payload(c, "row-" + std::to_string(n++));
    auto got = published_as(cat, c.type, data);
    if (c.outcome == verdict::refused) {
      REQUIRE_FALSE(got);
      CHECK(herald::is(got.error(), errc::invalid_payload));
      CHECK_THAT(
        herald::message_of(got.error()),
        Catch::StartsWith("event 'test.value." + std::string{c.type} + "': ")
          && Catch::Contains(std::string{c.expect}));
      // validate gives the same verdict.
      CHECK(herald::message_of(
              cat.validate("test.value." + std::string{c.type}, data))
            == herald::message_of(got.error()));
      continue;
    }
    INFO(message_of(got));
    REQUIRE(got);
    CHECK_FALSE(cat.validate("test.value." + std::string{c.type}, data));
    herald::test::check_published(c, data, *got, nullptr, "");
    if (c.outcome == verdict::same)
      CHECK(*got == data);
    // The canonical form is a fixed point: published again, it stays.
    CHECK_FALSE(*catalog::canonical_form(
      *cat.find("test.value." + std::string{c.type}), *got));
  }
}

TEST_CASE("a canonical payload is used as given, without a copy",
          "[core][catalog][values]") {
  auto cat = load_seed();
  auto canonical = catalog::canonical_form(
    *cat.find("user.account.created"),
    payload{{"user_id", "0190b6d2-3c4e-7a00-8000-000000000001"},
            {"email", "Ada@example.com"},
            {"registration_source", "web"}});
  REQUIRE(canonical);
  CHECK_FALSE(*canonical);
}

TEST_CASE("a user_id in upper case is published in lower case, the entity "
          "key's spelling",
          "[core][catalog][values]") {
  auto cat = load_seed();
  auto canonical = catalog::canonical_form(
    *cat.find("user.account.created"),
    payload{{"user_id", "0190B6D2-3C4E-7A00-8000-000000000001"},
            {"email", "ada@example.com"},
            {"registration_source", "web"}});
  REQUIRE(canonical);
  REQUIRE(*canonical);
  CHECK((**canonical)["user_id"] == "0190b6d2-3c4e-7a00-8000-000000000001");
}

TEST_CASE("emails with a dot at the start or end of the local part, or two "
          "in a row, are refused naming the local part",
          "[core][catalog][values]") {
  auto cat = load_seed();
  const std::pair<std::string_view, std::string_view> rows[] = {
    {"john.doe.@example.com", "the local part 'john.doe.' ends with a dot"},
    {".john@example.com", "the local part '.john' starts with a dot"},
    {"a..b@example.com", "the local part 'a..b' has two dots in a row"},
  };
  for (auto [email, why] : rows) {
    INFO(email);
    auto err =
      cat.validate("user.account.created",
                   payload{{"user_id", "0190b6d2-3c4e-7a00-8000-000000000001"},
                           {"email", email},
                           {"registration_source", "web"}});
    CHECK(herald::is(err, errc::invalid_payload));
    CHECK_THAT(
      herald::message_of(err),
      Catch::Contains("field 'email': \"" + std::string{email}
                      + "\" is not an email address: " + std::string{why}));
  }
}

TEST_CASE("email length limits: local part 64, domain 255, whole 254",
          "[core][catalog][values]") {
  auto cat = value_catalog();
  // `local` characters, '@', a domain of `domain` (at least 10)
  // characters: labels of 50, then one of the rest, then "com".
  auto email_of = [](size_t local, size_t domain) {
    std::string d;
    while (domain - d.size() > 60)
      d += std::string(50, 'd') + ".";
    d += std::string(domain - d.size() - 4, 'e') + ".com";
    return std::string(local, 'l') + "@" + d;
  };
  auto verdict_of = [&](const std::string& email) {
    return herald::message_of(
      cat.validate("test.value.email", payload{{"k", "x"}, {"v", email}}));
  };
  CHECK(verdict_of(email_of(64, 20)).empty());
  CHECK_THAT(verdict_of(email_of(65, 20)),
             Catch::Contains("the local part has 65 characters; at most 64"));
  auto longest = email_of(64, 189); // 64 + 1 + 189 = 254
  REQUIRE(longest.size() == 254);
  CHECK(verdict_of(longest).empty());
  CHECK_THAT(verdict_of(email_of(64, 190)),
             Catch::Contains("it has 255 characters; at most 254"));
  CHECK_THAT(verdict_of(email_of(1, 256)),
             Catch::Contains("the domain has 256 characters; at most 255"));
}

TEST_CASE("an optional field sent as null is left out, a required one is "
          "missing",
          "[core][catalog][values]") {
  auto cat = catalog::parse(all_types_yaml, "types.yaml");
  REQUIRE(cat);
  auto data = all_types_payload();
  data["note"] = nullptr;
  data["address"]["zip"] = nullptr;
  auto canonical = catalog::canonical_form(*cat->find("test.all.types"), data);
  REQUIRE(canonical);
  REQUIRE(*canonical);
  CHECK_FALSE((*canonical)->contains("note"));
  CHECK_FALSE((**canonical)["address"].contains("zip"));
  // What a handler then reads: the default, not a null that throws.
  CHECK((*canonical)->value("note", "") == "");
  data["email"] = nullptr;
  CHECK_THAT(herald::message_of(cat->validate("test.all.types", data)),
             Catch::Contains("missing required field 'email': it is null, "
                             "which herald takes as absent; send a value"));
}

TEST_CASE("a second of 60 is a leap second, taken only at 23:59:60 UTC on a "
          "day that had one",
          "[core][catalog][values]") {
  auto cat = value_catalog();
  auto message = [&](std::string_view at) {
    return herald::message_of(
      cat.validate("test.value.timestamp", payload{{"k", "x"}, {"v", at}}));
  };
  CHECK_THAT(message("2020-01-01T00:00:60Z"),
             Catch::Contains("second 60 is a leap second, valid only as "
                             "23:59:60 UTC at the end of a day that had one "
                             "(RFC 3339 §5.7"));
  CHECK_THAT(message("2020-06-30T23:59:60Z"), Catch::Contains("leap second"));
  CHECK(message("1972-06-30T23:59:60Z").empty());
  CHECK(message("2016-12-31T23:59:60Z").empty());
  CHECK(message("2017-01-01T08:59:60+09:00").empty());
  // herald tail --since reads times by the same rule.
  CHECK_FALSE(herald::parse_timestamp("2020-01-01T00:00:60Z"));
  CHECK(herald::parse_timestamp("2016-12-31T23:59:60Z")
        == herald::parse_timestamp("2017-01-01T00:00:00Z"));
}

TEST_CASE("int takes 1.0 as the integer 1 and refuses 1.5",
          "[core][catalog][values]") {
  auto cat = value_catalog();
  const auto* spec = cat.find("test.value.int");
  auto one = catalog::canonical_form(*spec, payload{{"k", "x"}, {"v", 1.0}});
  REQUIRE(one);
  REQUIRE(*one);
  CHECK((**one)["v"].is_number_integer());
  CHECK((**one)["v"].dump() == "1");
  CHECK_THAT(herald::message_of(
               cat.validate("test.value.int", payload{{"k", "x"}, {"v", 1.5}})),
             Catch::Contains("1.5 is not an integer: it has a fractional "
                             "part"));
}

TEST_CASE("values the C++ API can hold and JSON cannot are refused",
          "[core][catalog][values]") {
  auto cat = value_catalog();
  auto message = [&](std::string_view type, payload v) {
    return herald::message_of(cat.validate("test.value." + std::string{type},
                                           payload{{"k", "x"}, {"v", v}}));
  };
  CHECK_THAT(message("float", std::numeric_limits<double>::quiet_NaN()),
             Catch::Contains("it is not a finite number"));
  CHECK_THAT(message("float", std::numeric_limits<double>::infinity()),
             Catch::Contains("it is not a finite number"));
  CHECK_THAT(message("int", std::numeric_limits<double>::infinity()),
             Catch::Contains("it is not a finite number"));
  CHECK_THAT(message("string", "bad \xff byte"),
             Catch::Contains("byte 5 (0xff) does not begin a valid UTF-8 "
                             "sequence (RFC 3629)"));
  CHECK_THAT(message("string", "\xed\xa0\x80"), // a surrogate
             Catch::Contains("byte 1 (0xed)"));
  CHECK(message("string", "\xf0\x9f\x98\x80").empty()); // U+1F600
}
