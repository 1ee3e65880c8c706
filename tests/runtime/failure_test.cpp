// Failed handlers, as the seed asks: retries with backoff, dead letters with
// full context, parked entities and their redrive, alerts; per-entity order
// and isolation throughout.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <httplib.h>

#include "deadline.hpp"
#include "health.hpp"
#include "herald/actors/messages.hpp"
#include "herald/core/codec.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::sample_of;
using herald::test::wait_until;
using steady = std::chrono::steady_clock;

namespace {

payload created_for(int entity, const std::string& email) {
  return {{"user_id", user_id(entity)},
          {"email", email},
          {"registration_source", "web"}};
}

// Every handler call: which event, of which entity, when.
struct call_log {
  struct call {
    std::string id;
    std::string key;
    uint64_t seq;
    steady::time_point at;
    bool ok;
  };
  std::mutex mtx;
  std::vector<call> calls;

  void add(const event& ev, bool ok) {
    std::lock_guard<std::mutex> guard{mtx};
    calls.push_back({std::string{ev.id()}, std::string{ev.key()}, ev.seq(),
                     steady::now(), ok});
  }

  std::vector<call> snapshot() {
    std::lock_guard<std::mutex> guard{mtx};
    return calls;
  }
};

// Per entity, handler calls never go back in seq: a retry is never
// overtaken by a later event of its entity.
void check_entity_order(const std::vector<call_log::call>& calls) {
  std::map<std::string, uint64_t> last;
  size_t broken = 0;
  for (auto& c : calls) {
    auto& l = last[c.key];
    if (c.seq < l)
      ++broken;
    l = c.seq;
  }
  CHECK(broken == 0);
}

// Subscribes EmailService with a handler that always fails.
void fail_always(node& n) {
  REQUIRE_FALSE(n.bus().subscribe(
    "user.account.created",
    [](const event&) {
      throw std::runtime_error("down");
    },
    "EmailService"));
}

// Publishes user.account.created for `entity` and waits until it is
// durable (and so handed to the node's consumers: `drain` then waits for
// it).
// (Events become durable in publish order: `wait` false leaves the wait to
// a later call.)
void publish(node& n, int entity, const std::string& email, bool wait = true) {
  auto r = n.bus().publish("user.account.created", created_for(entity, email));
  REQUIRE(r);
  if (wait)
    REQUIRE_FALSE(herald::test::get_within(*r->durable, 10s));
}

// promtool, from Debian's `prometheus` package, accepts the /metrics
// `text` without a word.
void promtool_accepts(const std::string& text) {
  auto dir = temp_data_dir("promtool");
  std::filesystem::create_directories(dir);
  auto file = dir + "/metrics.txt";
  {
    std::ofstream out{file};
    out << text;
  }
  auto out_file = dir + "/promtool.out";
  int rc = std::system(
    ("promtool check metrics < " + file + " > " + out_file + " 2>&1").c_str());
  std::ifstream in{out_file};
  std::string output{std::istreambuf_iterator<char>{in}, {}};
  INFO("promtool: " << output);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
    FAIL("promtool not found: install the Debian package 'prometheus'");
  CHECK(rc == 0);
  CHECK(output.empty());
}

} // namespace

TEST_CASE("1 % poison events are retried on schedule, then dead-lettered "
          "with full context; order per entity holds; one alert",
          "[runtime][failure]") {
  constexpr int events = 10'000;
  constexpr int entities = 100;
  constexpr int poison = events / 100;
  auto cfg = make_config("poison", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.initial = 300ms;
  email.retry.max = 10s;
  email.alert.dead_letters = 10;
  email.alert.window = std::chrono::minutes{5};
  cfg.consumers.push_back(email);
  cfg.consumers.push_back(make_consumer("OpsService", {"herald.alert.raised"}));
  auto n = start(cfg);

  call_log log;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      bool bad = ev.data()["email"].get<std::string>().starts_with("poison");
      log.add(ev, !bad);
      if (bad)
        throw std::runtime_error("cannot send to " + std::string{ev.key()});
    },
    "EmailService"));
  std::atomic<int> alerts{0};
  payload alert;
  std::mutex alert_mtx;
  REQUIRE_FALSE(n->bus().subscribe(
    "herald.alert.raised",
    [&](const event& ev) {
      std::lock_guard<std::mutex> guard{alert_mtx};
      alert = ev.data();
      ++alerts;
    },
    "OpsService"));

  // 100 poison events spread at random (fixed seed) over the stream.
  std::vector<int> order(events);
  for (int i = 0; i < events; ++i)
    order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937{42});
  std::set<int> poisoned(order.begin(), order.begin() + poison);
  std::set<std::string> poison_ids;
  std::optional<publish_receipt> last;
  for (int i = 0; i < events; ++i) {
    bool bad = poisoned.count(i) > 0;
    auto r = n->bus().publish(
      "user.account.created",
      created_for(i % entities, (bad ? "poison" : "user") + std::to_string(i)
                                  + "@example.com"));
    REQUIRE(r);
    if (bad)
      poison_ids.insert(r->id);
    last = *r;
  }
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  REQUIRE(n->drain(60s));
  auto stats = n->stats("EmailService");
  CHECK(stats->handled == events - poison);
  CHECK(stats->dead_lettered == poison);
  CHECK(stats->failed == poison * 3);
  CHECK(stats->retried == poison * 2);

  // Every poison event: exactly 3 attempts, 300 ms then 600 ms apart,
  // within ±25 %.
  auto calls = log.snapshot();
  std::map<std::string, std::vector<steady::time_point>> attempts;
  for (auto& c : calls)
    if (poison_ids.count(c.id) > 0)
      attempts[c.id].push_back(c.at);
  REQUIRE(attempts.size() == poison_ids.size());
  int off_schedule = 0;
  for (auto& [id, times] : attempts) {
    REQUIRE(times.size() == 3);
    for (size_t a = 1; a < times.size(); ++a) {
      double want = 300.0 * static_cast<double>(1 << (a - 1));
      double got =
        std::chrono::duration<double, std::milli>(times[a] - times[a - 1])
          .count();
      if (got < want * 0.75 || got > want * 1.25) {
        ++off_schedule;
        WARN("event " << id << ": retry " << a << " after " << got
                      << " ms, scheduled " << want << " ms ±25 %");
      }
    }
  }
  CHECK(off_schedule == 0);
  // Healthy events: one call each.
  CHECK(calls.size() == static_cast<size_t>(events - poison + poison * 3));
  check_entity_order(calls);

  // The dead letters: the poison events and nothing else, with context.
  auto letters = n->dead_letters();
  REQUIRE(letters);
  REQUIRE(letters->size() == poison_ids.size());
  std::set<std::string> lettered;
  for (auto& l : *letters) {
    lettered.insert(l.event_id);
    CHECK(l.consumer == "EmailService");
    CHECK(l.node == "poison");
    CHECK(l.event_type == "user.account.created");
    CHECK(l.stream == n->stream());
    CHECK(l.reason == "3 attempts failed");
    CHECK_FALSE(l.parked);
    REQUIRE(l.attempts.size() == 3);
    for (auto& a : l.attempts) {
      CHECK(a.error == "cannot send to " + l.key);
      CHECK(a.error_class == "exception");
      CHECK(a.time_us > 0);
    }
    auto ev = decode(l.envelope);
    REQUIRE(ev);
    CHECK(ev->id() == l.event_id);
    CHECK(ev->seq() == l.seq);
    CHECK(ev->key() == l.key);
    CHECK(ev->data()["email"].get<std::string>().starts_with("poison"));
  }
  CHECK(lettered == poison_ids);

  // The alert: raised once, when the 10th dead letter came.
  REQUIRE(wait_until(
    [&] {
      return alerts.load() >= 1;
    },
    10s));
  REQUIRE(n->drain(10s));
  CHECK(alerts == 1);
  CHECK(stats->alerts == 1);
  std::lock_guard<std::mutex> guard{alert_mtx};
  CHECK(alert["consumer"] == "EmailService");
  CHECK(alert["node"] == "poison");
  CHECK(alert["threshold"] == 10);
  CHECK(alert["dead_letters"] == 10);
  CHECK(alert["rule"] == "dead_letters >= 10 within 5m");
}

TEST_CASE("a failing entity delays no other entity", "[runtime][failure]") {
  // One entity fails every attempt (backoff from 200 ms); 99 healthy ones,
  // each on some shard, several on the failing one's.
  auto cfg = make_config("isolation", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.initial = 200ms;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  constexpr int failing = 0;
  constexpr int per_entity = 50;
  std::mutex mtx;
  std::vector<std::string> completions; // "healthy" or "final failure"
  std::atomic<int> failing_attempts{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      std::lock_guard<std::mutex> guard{mtx};
      if (ev.key() == user_id(failing)) {
        // The third attempt fails for good: the event is dead-lettered.
        if (++failing_attempts % 3 == 0)
          completions.push_back("final failure");
        throw std::runtime_error("always fails");
      }
      completions.push_back("healthy");
    },
    "EmailService"));
  // The failing entity's events go first.
  for (int i = 0; i < 3; ++i)
    publish(*n, failing, "f@example.com", false);
  for (int round = 0; round < per_entity; ++round)
    for (int e = 1; e < 100; ++e)
      publish(*n, e, "h@example.com", e == 99 && round == per_entity - 1);
  REQUIRE(n->drain(30s));
  std::lock_guard<std::mutex> guard{mtx};
  auto first_failure =
    std::find(completions.begin(), completions.end(), "final failure");
  REQUIRE(first_failure != completions.end());
  auto healthy_before =
    std::count(completions.begin(), first_failure, std::string{"healthy"});
  CHECK(healthy_before == 99 * per_entity);
  CHECK(n->stats("EmailService")->dead_lettered == 3);
}

TEST_CASE("a parked entity's later events wait as dead letters; a redrive "
          "hands them all back in order",
          "[runtime][failure]") {
  auto cfg = make_config("park", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.initial = 20ms;
  email.on_dead_letter = dead_letter_policy::park;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  constexpr int parked = 7;
  std::atomic<bool> broken{true};
  call_log log;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      bool fail = broken && ev.key() == user_id(parked);
      log.add(ev, !fail);
      if (fail)
        throw std::runtime_error("mail server rejects it");
    },
    "EmailService"));
  for (int i = 0; i < 5; ++i) {
    publish(*n, parked, "p" + std::to_string(i) + "@example.com");
    publish(*n, 1, "h@example.com");
  }
  REQUIRE(n->drain(10s));
  auto letters = n->dead_letters();
  REQUIRE(letters);
  REQUIRE(letters->size() == 5);
  // The first failed 3 times; the 4 after it were parked, unhandled.
  CHECK((*letters)[0].attempts.size() == 3);
  CHECK_FALSE((*letters)[0].parked);
  for (size_t i = 1; i < 5; ++i) {
    CHECK((*letters)[i].parked);
    CHECK((*letters)[i].attempts.empty());
    CHECK((*letters)[i].seq > (*letters)[i - 1].seq);
  }
  // Nothing of the parked entity succeeded; the other entity went on.
  for (auto& c : log.snapshot())
    CHECK((c.key != user_id(parked) || !c.ok));
  CHECK(n->stats("EmailService")->handled == 5);

  // An event published while parked is dead-lettered too.
  publish(*n, parked, "p5@example.com");
  REQUIRE(n->drain(10s));
  REQUIRE(n->dead_letters()->size() == 6);

  // Fixed: the redrive hands all six back, in order, and they succeed.
  broken = false;
  store::dead_letter_filter f;
  f.key = user_id(parked);
  auto dry = n->redrive(f, true);
  REQUIRE(dry);
  CHECK(dry->size() == 6);
  CHECK(n->dead_letters()->size() == 6);
  auto redriven = n->redrive(f);
  REQUIRE(redriven);
  CHECK(redriven->size() == 6);
  REQUIRE(wait_until(
    [&] {
      return n->dead_letters()->empty();
    },
    10s));
  std::vector<std::string> handled;
  for (auto& c : log.snapshot())
    if (c.key == user_id(parked) && c.ok)
      handled.push_back(c.id);
  std::vector<std::string> expected;
  for (auto& l : *letters)
    expected.push_back(l.event_id);
  REQUIRE(handled.size() == 6);
  expected.push_back(handled.back()); // the one published while parked
  CHECK(handled == expected);
  // No longer parked: its next event is handled as usual.
  publish(*n, parked, "p6@example.com");
  REQUIRE(n->drain(10s));
  CHECK(n->dead_letters()->empty());
  CHECK(n->stats("EmailService")->handled == 12);
}

TEST_CASE("a non-retryable failure is dead-lettered at once",
          "[runtime][failure]") {
  auto cfg = make_config("permanent", "UserService");
  cfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  auto n = start(cfg);
  std::atomic<int> calls{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) -> caf::error {
      ++calls;
      if (ev.data()["email"] == "thrown@example.com")
        throw non_retryable_error("address is blocked");
      return non_retryable("address does not exist");
    },
    "EmailService"));
  publish(*n, 1, "thrown@example.com");
  publish(*n, 2, "returned@example.com");
  REQUIRE(n->drain(10s));
  CHECK(calls == 2);
  auto letters = n->dead_letters();
  REQUIRE(letters);
  REQUIRE(letters->size() == 2);
  for (auto& l : *letters) {
    CHECK(l.reason == "non-retryable error");
    REQUIRE(l.attempts.size() == 1);
    CHECK(l.attempts[0].error_class == "non_retryable");
  }
  CHECK(n->stats("EmailService")->retried == 0);
}

TEST_CASE("dead letters survive a restart, and a parked entity stays parked",
          "[runtime][failure]") {
  auto cfg = make_config("restart", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.attempts = 1;
  email.on_dead_letter = dead_letter_policy::park;
  cfg.consumers.push_back(email);
  std::atomic<bool> broken{true};
  std::atomic<int> handled{0};
  auto subscribe = [&](node& n) {
    REQUIRE_FALSE(n.bus().subscribe(
      "user.account.created",
      [&](const event&) {
        if (broken)
          throw std::runtime_error("down");
        ++handled;
      },
      "EmailService"));
  };
  {
    auto n = start(cfg);
    subscribe(*n);
    publish(*n, 3, "a@example.com");
    REQUIRE(n->drain(10s));
    REQUIRE(n->dead_letters()->size() == 1);
  }
  broken = false;
  auto n = start(cfg);
  subscribe(*n);
  REQUIRE(n->dead_letters()->size() == 1);
  // Still parked: the entity's next event joins its dead letter.
  publish(*n, 3, "b@example.com");
  REQUIRE(n->drain(10s));
  auto letters = n->dead_letters();
  REQUIRE(letters->size() == 2);
  CHECK((*letters)[1].parked);
  CHECK((*letters)[1].reason
        == "parked behind dead letter " + std::to_string((*letters)[0].id));
  CHECK(handled == 0);
  // Purging its dead letters lets it go on.
  auto purged = n->purge(store::dead_letter_filter{});
  REQUIRE(purged);
  CHECK(purged->size() == 2);
  publish(*n, 3, "c@example.com");
  REQUIRE(n->drain(10s));
  CHECK(handled == 1);
  CHECK(n->dead_letters()->empty());
}

TEST_CASE("dead letters redriven before a handler exists wait for it",
          "[runtime][failure]") {
  auto cfg = make_config("early", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.attempts = 1;
  cfg.consumers.push_back(email);
  {
    auto n = start(cfg);
    fail_always(*n);
    publish(*n, 1, "a@example.com");
    REQUIRE(n->drain(10s));
    REQUIRE(n->dead_letters()->size() == 1);
  }
  auto n = start(cfg);
  auto redriven = n->redrive({});
  REQUIRE(redriven);
  CHECK(redriven->size() == 1);
  std::this_thread::sleep_for(100ms); // nobody could take it meanwhile
  CHECK(n->dead_letters()->size() == 1);
  std::atomic<int> handled{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      CHECK(ev.redelivered());
      ++handled;
    },
    "EmailService"));
  REQUIRE(wait_until(
    [&] {
      return n->dead_letters()->empty();
    },
    10s));
  CHECK(handled == 1);
}

TEST_CASE("an entity's full queue pauses its stream; nothing is lost and "
          "order holds",
          "[runtime][failure][flow]") {
  auto cfg = make_config("paused", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.entity_buffer = 8;
  email.retry.initial = 300ms;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  constexpr int slow = 0;
  std::atomic<int> failures{0};
  call_log log;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      // The slow entity's first event fails twice, then succeeds.
      bool fail = ev.key() == user_id(slow) && failures < 2;
      if (fail)
        ++failures;
      log.add(ev, !fail);
      if (fail)
        throw std::runtime_error("not yet");
    },
    "EmailService"));
  constexpr int rounds = 100;
  for (int r = 0; r < rounds; ++r)
    for (int e = 0; e <= 10; ++e)
      publish(*n, e, "x@example.com", r == rounds - 1 && e == 10);
  REQUIRE(n->drain(30s));
  auto stats = n->stats("EmailService");
  CHECK(stats->pauses >= 1);
  CHECK(stats->dead_lettered == 0);
  CHECK(stats->handled == rounds * 11);
  auto calls = log.snapshot();
  check_entity_order(calls);
  std::set<uint64_t> handled;
  for (auto& c : calls)
    if (c.ok)
      CHECK(handled.insert(c.seq).second); // each once
  CHECK(handled.size() == rounds * 11);
}

TEST_CASE("retries can be set per event type", "[runtime][failure]") {
  auto cfg = make_config("per-type", "UserService");
  auto audit = make_consumer("AuditService", {"user.>"});
  audit.retry.initial = 10ms;
  retry_policy once = audit.retry;
  once.attempts = 1;
  audit.retry_by_type.emplace_back("user.account.deleted", once);
  cfg.consumers.push_back(audit);
  auto n = start(cfg);
  std::mutex mtx;
  std::map<std::string, int> calls;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.>",
    [&](const event& ev) {
      std::lock_guard<std::mutex> guard{mtx};
      ++calls[std::string{ev.type()}];
      throw std::runtime_error("down");
    },
    "AuditService"));
  REQUIRE(n->bus().publish("user.account.created", created(1)));
  auto r =
    n->bus().publish("user.account.deleted",
                     {{"user_id", user_id(2)}, {"deletion_reason", "admin"}});
  REQUIRE(r);
  REQUIRE_FALSE(herald::test::get_within(*r->durable, 10s));
  REQUIRE(n->drain(10s));
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(calls["user.account.created"] == 3);
  CHECK(calls["user.account.deleted"] == 1);
  CHECK(n->stats("AuditService")->dead_lettered == 2);
}

TEST_CASE("an alert re-arms only once the window fell below the threshold",
          "[runtime][failure]") {
  auto cfg = make_config("rearm", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.attempts = 1;
  email.alert.dead_letters = 2;
  email.alert.window = 500ms;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  fail_always(*n);
  auto stats = n->stats("EmailService");
  auto fail_events = [&](int count) {
    for (int i = 0; i < count; ++i)
      publish(*n, i, "x@example.com");
    REQUIRE(n->drain(10s));
  };
  fail_events(5); // crosses once, stays above: one alert
  REQUIRE(wait_until(
    [&] {
      return stats->alerts >= 1;
    },
    5s));
  std::this_thread::sleep_for(100ms);
  CHECK(stats->alerts == 1);
  std::this_thread::sleep_for(600ms); // the window empties
  fail_events(2);                     // crosses again
  REQUIRE(wait_until(
    [&] {
      return stats->alerts >= 2;
    },
    5s));
  CHECK(stats->alerts == 2);
}

TEST_CASE("an alert runs its command with the alert in the environment",
          "[runtime][failure]") {
  auto dir = temp_data_dir("hook");
  std::filesystem::create_directories(dir);
  auto out = dir + "/alert.txt";
  auto cfg = make_config("hooked", "UserService");
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.attempts = 1;
  email.alert.dead_letters = 2;
  email.alert.window = std::chrono::minutes{1};
  email.alert.command =
    "echo \"$HERALD_ALERT_CONSUMER $HERALD_ALERT_DEAD_LETTERS "
    "$HERALD_ALERT_RULE\" > '"
    + out + ".tmp' && mv '" + out + ".tmp' '" + out + "'";
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  fail_always(*n);
  publish(*n, 1, "a@example.com");
  REQUIRE(n->drain(10s));
  CHECK_FALSE(std::filesystem::exists(out)); // one is below the threshold
  publish(*n, 2, "b@example.com");
  REQUIRE(n->drain(10s));
  REQUIRE(wait_until(
    [&] {
      return std::filesystem::exists(out);
    },
    10s));
  std::ifstream in{out};
  std::string line;
  std::getline(in, line);
  CHECK(line == "EmailService 2 dead_letters >= 2 within 1m");
}

TEST_CASE("/metrics passes promtool and counts what the test counted",
          "[runtime][failure][metrics]") {
  auto cfg = make_config("metered", "UserService");
  cfg.metrics_listen = "127.0.0.1:0";
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.retry.attempts = 2;
  email.retry.initial = 10ms;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  REQUIRE(n->metrics_port() != 0);
  std::atomic<int> handled{0}, failures{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      if (ev.data()["email"] == "bad@example.com") {
        ++failures;
        throw std::runtime_error("bad address");
      }
      ++handled;
    },
    "EmailService"));
  constexpr int events = 200, bad = 5;
  for (int i = 0; i < events; ++i)
    publish(*n, i % 20, i < bad ? "bad@example.com" : "good@example.com",
            i == events - 1);
  REQUIRE(n->drain(10s));

  httplib::Client http{"127.0.0.1", n->metrics_port()};
  auto health = http.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto res = http.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  auto& text = res->body;
  const std::string who =
    R"({consumer="EmailService",type="user.account.created"})";
  CHECK(sample_of(text, "herald_events_handled_total" + who) == handled);
  CHECK(sample_of(text, "herald_events_failed_total" + who) == failures);
  CHECK(sample_of(text, "herald_events_retried_total" + who) == bad);
  CHECK(sample_of(text, "herald_events_dead_lettered_total" + who) == bad);
  CHECK(sample_of(
          text, R"(herald_events_published_total{type="user.account.created"})")
        == events);
  CHECK(
    sample_of(text, R"(herald_events_delivered_total{consumer="EmailService"})")
    == events);
  CHECK(sample_of(text, "herald_dead_letters") == bad);
  CHECK(
    sample_of(
      text, R"(herald_handler_duration_seconds_count{consumer="EmailService"})")
    == handled + failures);
  CHECK(sample_of(
          text,
          R"(herald_end_to_end_latency_seconds_count{consumer="EmailService"})")
        == handled);
  CHECK(handled == events - bad);
  CHECK(failures == bad * 2);
  // Lag: none once the offsets are committed and a heartbeat came.
  auto lag_series =
    R"(herald_consumer_lag_events{consumer="EmailService",stream=")"
    + n->stream() + "\"}";
  CHECK(wait_until(
    [&] {
      auto r = http.Get("/metrics");
      return r && sample_of(r->body, lag_series) == 0;
    },
    5s));

  promtool_accepts(text);
}

TEST_CASE("/metrics shows a consumer group of one: every partition owned, "
          "each gained once, no lag once handled, nothing discarded",
          "[runtime][failure][metrics][groups]") {
  auto cfg = make_config("grouped-metrics", "UserService");
  cfg.metrics_listen = "127.0.0.1:0";
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.partitions = 16;
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  REQUIRE(n->metrics_port() != 0);
  std::atomic<int> handled{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event&) {
      ++handled;
    },
    "EmailService"));
  constexpr int events = 50;
  for (int i = 0; i < events; ++i)
    publish(*n, i % 20, "good@example.com", i == events - 1);
  REQUIRE(n->drain(10s));

  httplib::Client http{"127.0.0.1", n->metrics_port()};
  const std::string group = R"({group="EmailService"})";
  std::string text;
  auto settled = wait_until(
    [&] {
      auto r = http.Get("/metrics");
      if (!r || r->status != 200)
        return false;
      text = r->body;
      return sample_of(text, "herald_group_partitions_owned" + group) == 16
             && sample_of(text, "herald_group_lag" + group) == 0;
    },
    10s);
  INFO("metrics:\n" << text);
  REQUIRE(settled);
  CHECK(handled == events);
  // Each partition gained once, none lost: nothing else moved.
  CHECK(sample_of(text, "herald_group_rebalances_total" + group) == 16);
  CHECK(sample_of(text, "herald_group_results_discarded_total" + group) == 0);
  CHECK(sample_of(text, "herald_group_events_abandoned_total" + group) == 0);

  promtool_accepts(text);
}
