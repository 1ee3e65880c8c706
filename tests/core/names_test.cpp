#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"

using herald::errc;
using herald::pattern;

TEST_CASE("valid event names are accepted", "[core][names]") {
  for (std::string_view name :
       {"user.account.created", "order.payment.completed",
        "inventory.stock.low", "herald.alert.raised", "a.b.c",
        "user2.account_v2.created_at"}) {
    INFO(name);
    CHECK_FALSE(herald::validate_event_name(name));
  }
}

TEST_CASE("invalid event names are rejected with the reason", "[core][names]") {
  struct row {
    std::string_view name;
    std::string message;
  };
  const std::string rule = "must match [a-z][a-z0-9_]* (lower case letters, "
                           "digits, underscores, starting with a letter)";
  const std::vector<row> rows = {
    {"User.account.created",
     "event name 'User.account.created': part 1 'User' " + rule},
    {"user.Account.created",
     "event name 'user.Account.created': part 2 'Account' " + rule},
    {"user.account.created!",
     "event name 'user.account.created!': part 3 'created!' " + rule},
    {"user.account.2fa", "event name 'user.account.2fa': part 3 '2fa' " + rule},
    {"user.account-x.created",
     "event name 'user.account-x.created': part 2 'account-x' " + rule},
    {"user._account.created",
     "event name 'user._account.created': part 2 '_account' " + rule},
    {"user.account", "event name 'user.account': has 2 parts, needs exactly 3: "
                     "domain.entity.action (e.g. user.account.created)"},
    {"user", "event name 'user': has 1 part, needs exactly 3: "
             "domain.entity.action (e.g. user.account.created)"},
    {"user.account.created.v2",
     "event name 'user.account.created.v2': has 4 parts, needs exactly 3: "
     "domain.entity.action (e.g. user.account.created)"},
    {"user..created", "event name 'user..created': part 2 is empty; parts "
                      "are separated by single dots"},
    {"user.account.", "event name 'user.account.': part 3 is empty; parts "
                      "are separated by single dots"},
    {"", "event name '': is empty; event names are domain.entity.action, e.g. "
         "user.account.created"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto err = herald::validate_event_name(r.name);
    CHECK(herald::is(err, errc::invalid_name));
    CHECK(herald::message_of(err) == r.message);
  }
}

TEST_CASE("service names: letters, digits, '_', '.', '-', no '/'",
          "[core][names]") {
  for (std::string_view name : {"EmailService", "email_service", "billing-v2",
                                "a", "9lives", "svc.eu-west"}) {
    INFO(name);
    CHECK_FALSE(herald::validate_service_name(name, "consumer"));
  }
  struct row {
    std::string name;
    std::string problem;
  };
  const std::vector<row> rows = {
    {"", "consumer name '' is empty"},
    {"Email/Service", "consumer name 'Email/Service' holds '/' at byte 6"},
    {"Email Service", "holds ' ' at byte 6"},
    {"-x", "starts with '-'"},
    {".x", "starts with '.'"},
    {std::string(129, 'a'), "is 129 bytes long, more than 128"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto err = herald::validate_service_name(r.name, "consumer");
    REQUIRE(err);
    CHECK(herald::is(err, errc::invalid_name));
    CHECK_THAT(herald::message_of(err), Catch::Contains(r.problem));
  }
  CHECK_FALSE(herald::validate_service_name(std::string(128, 'a')));
}

TEST_CASE("patterns select the names they describe", "[core][names]") {
  const std::vector<std::string_view> names = {
    "user.account.created",    "user.account.deleted",  "user.profile.updated",
    "order.payment.completed", "order.account.created",
  };
  struct row {
    std::string_view pattern;
    std::string_view prefix;
    std::vector<bool> matches; // one per name above
  };
  const std::vector<row> rows = {
    {"user.account.created",
     "user.account.created",
     {true, false, false, false, false}},
    {"user.", "user.", {true, true, true, false, false}},
    {"user.account.", "user.account.", {true, true, false, false, false}},
    {"user.*.deleted", "user.", {false, true, false, false, false}},
    {"*.account.created", "", {true, false, false, false, true}},
    {"*.*.*", "", {true, true, true, true, true}},
    {"user.*.*", "user.", {true, true, true, false, false}},
    {"user.account.*", "user.account.", {true, true, false, false, false}},
    {"order.>", "order.", {false, false, false, true, true}},
    {"user.account.>", "user.account.", {true, true, false, false, false}},
    {"*.account.>", "", {true, true, false, false, true}},
    {">", "", {true, true, true, true, true}},
  };
  for (const auto& r : rows) {
    INFO(r.pattern);
    auto p = pattern::parse(r.pattern);
    REQUIRE(p);
    CHECK(p->text() == r.pattern);
    CHECK(p->zmq_prefix() == r.prefix);
    for (size_t i = 0; i < names.size(); ++i) {
      INFO(names[i]);
      CHECK(p->matches(names[i]) == r.matches[i]);
    }
  }
}

TEST_CASE("only an event name is an exact pattern", "[core][names]") {
  auto exact = [](std::string_view text) {
    auto p = pattern::parse(text);
    REQUIRE(p);
    return p->is_exact();
  };
  CHECK(exact("user.account.created"));
  CHECK_FALSE(exact("user."));
  CHECK_FALSE(exact("user.*.created"));
}

TEST_CASE("an exact pattern does not match longer names that share its bytes",
          "[core][names]") {
  // ZeroMQ filters by byte prefix, so `user.account.created_v2` arrives at a
  // subscriber of `user.account.created`; `matches` must drop it.
  auto p = pattern::parse("user.account.created");
  REQUIRE(p);
  CHECK_FALSE(p->matches("user.account.created_v2"));
}

TEST_CASE("wildcards match whole parts only", "[core][names]") {
  auto star = pattern::parse("user.*.created");
  REQUIRE(star);
  CHECK_FALSE(star->matches("user.account.created.more"));
  CHECK_FALSE(star->matches("user.created"));
  CHECK_FALSE(star->matches("users.account.created"));
  auto rest = pattern::parse("user.>");
  REQUIRE(rest);
  CHECK_FALSE(rest->matches("user"));
  CHECK_FALSE(rest->matches("user."));
  CHECK_FALSE(rest->matches(""));
  auto all = pattern::parse(">");
  REQUIRE(all);
  CHECK_FALSE(all->matches(""));
}

TEST_CASE("malformed patterns are rejected with the rule broken",
          "[core][names]") {
  struct row {
    std::string_view pattern;
    std::string_view problem;
  };
  const std::vector<row> rows = {
    {"", "is empty"},
    {"User.", "part 1 'User' must match [a-z][a-z0-9_]*"},
    {"user.account.created.", "a prefix has 1 or 2 parts"},
    {"user.*.", "a prefix (ending in a dot) takes no wildcards"},
    {"user..", "part 2 is empty"},
    {".", "part 1 is empty"},
    {"user.account", "has 2 parts, but event names have exactly 3 "
                     "(domain.entity.action); to select all events starting "
                     "with it, end it with a dot: 'user.account.'"},
    {"user.Account.created", "part 2 'Account' must match"},
    {"a.b.c.d", "has 4 parts, but event names have exactly 3"},
    {"a.b.c.*", "has 4 parts, but event names have exactly 3"},
    {"a.b.c.>", "has 4 parts, but event names have exactly 3"},
    {"user.*", "has 2 parts and never matches a 3-part event name"},
    {"*", "has 1 part and never matches a 3-part event name"},
    {">.created", "'>' stands for all remaining parts and must be the last "
                  "part, not part 1"},
    {"user.>.created", "must be the last part, not part 2"},
    {"user.acc*.created", "part 2 'acc*': a wildcard ('*' or '>') must be a "
                          "whole part"},
    {"user.*.Created", "part 3 'Created' must match"},
  };
  for (const auto& r : rows) {
    INFO(r.pattern);
    auto p = pattern::parse(r.pattern);
    REQUIRE_FALSE(p);
    CHECK(herald::is(p.error(), errc::invalid_pattern));
    auto message = herald::message_of(p.error());
    CHECK_THAT(message, Catch::StartsWith("subscription pattern '"
                                          + std::string{r.pattern} + "': "));
    CHECK_THAT(message, Catch::Contains(std::string{r.problem}));
  }
}

TEST_CASE("herald errors carry their code and message", "[core][errc]") {
  auto err = herald::make_error(errc::io_error, "cannot read 'x'");
  CHECK(herald::is(err, errc::io_error));
  CHECK_FALSE(herald::is(err, errc::timeout));
  CHECK(herald::message_of(err) == "cannot read 'x'");
  CHECK(herald::message_of(caf::error{}).empty());
  CHECK(std::string{herald::to_string(errc::invalid_payload)}
        == "invalid_payload");
  // CAF's errors by name (see errc_test.cpp); others by code and category.
  auto foreign = caf::error{3, caf::atom("system")};
  CHECK(herald::message_of(foreign)
        == "request_receiver_down (category system)");
  auto other = caf::error{7, caf::atom("mylib")};
  CHECK(herald::message_of(other) == "error 7 (category mylib)");
}
