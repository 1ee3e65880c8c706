// A dead letter's record only grows: every attempt, every redrive, under
// one id until its event is handled; redrives go by (stream, seq); letters
// stored by an older version still list, show and redrive.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "deadline.hpp"
#include "herald/core/codec.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "store_support.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::wait_until;

namespace {

// The successful handler calls, as "type key".
struct handled_log {
  std::mutex mtx;
  std::vector<std::string> calls;

  void add(const event& ev) {
    std::lock_guard<std::mutex> guard{mtx};
    calls.push_back(std::string{ev.type()} + " " + std::string{ev.key()});
  }

  std::vector<std::string> snapshot() {
    std::lock_guard<std::mutex> guard{mtx};
    return calls;
  }
};

node_config user_events_config(const std::string& name) {
  auto cfg = make_config(name, "UserService");
  auto consumer = make_consumer("EmailService", {"user.account.*"});
  consumer.retry.attempts = 3;
  consumer.retry.initial = 5ms;
  cfg.consumers.push_back(consumer);
  return cfg;
}

payload deleted(int i) {
  return {{"user_id", user_id(i)}, {"deletion_reason", "admin"}};
}

// Waits until the letters `filter` selects are `n` and not being redriven
// any more: each has `attempts` attempts.
std::vector<store::dead_letter> letters_with(node& n, size_t count,
                                             size_t attempts) {
  std::vector<store::dead_letter> letters;
  (void)wait_until(
    [&] {
      auto got = n.dead_letters();
      if (!got)
        return false;
      letters = std::move(*got);
      if (letters.size() != count)
        return false;
      for (auto& l : letters)
        if (l.attempts.size() != attempts)
          return false;
      return true;
    },
    10s);
  REQUIRE(letters.size() == count);
  return letters;
}

// Redrives the `count` letters `filter` selects, as `by`, once none of
// them is being redriven any more (a letter that failed again is released
// just after it is stored); returns the ids.
std::vector<uint64_t> redrive(node& n, const store::dead_letter_filter& filter,
                              size_t count, const std::string& by = {}) {
  (void)wait_until(
    [&] {
      auto dry = n.redrive(filter, true);
      return dry && dry->size() == count;
    },
    10s);
  auto r = n.redrive(filter, false, by);
  REQUIRE(r);
  return *r;
}

} // namespace

TEST_CASE("an event redriven twice keeps all 9 attempts and both redrives "
          "in one record",
          "[runtime][dead_letters]") {
  auto n = start(user_events_config("history"));
  std::atomic<bool> broken{true};
  handled_log ok;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.*",
    [&](const event& ev) {
      if (broken)
        throw std::runtime_error("smtp down");
      ok.add(ev);
    },
    "EmailService"));
  REQUIRE(n->bus().publish("user.account.created", created(1)));
  auto first = letters_with(*n, 1, 3);
  auto id = first[0].id;
  for (size_t round = 1; round <= 2; ++round) {
    CHECK(redrive(*n, {}, 1, "ops-" + std::to_string(round))
          == std::vector<uint64_t>{id});
    auto grown = letters_with(*n, 1, 3 + 3 * round);
    CHECK(grown[0].id == id);
    REQUIRE(grown[0].redrives.size() == round);
    CHECK(grown[0].redrives.back().by == "ops-" + std::to_string(round));
    CHECK(grown[0].created_us == first[0].created_us);
  }
  auto letter = n->dead_letters();
  REQUIRE(letter);
  auto& dl = letter->at(0);
  // The first failure first, then every attempt in time order, each with
  // its node; the redrives between them.
  CHECK(dl.attempts.front().time_us == first[0].attempts.front().time_us);
  for (size_t i = 1; i < dl.attempts.size(); ++i)
    CHECK(dl.attempts[i].time_us >= dl.attempts[i - 1].time_us);
  for (auto& a : dl.attempts) {
    CHECK(a.node == "history");
    CHECK(a.error == "smtp down");
  }
  CHECK(dl.redrives[0].time_us > dl.attempts[2].time_us);
  CHECK(dl.redrives[0].time_us < dl.attempts[3].time_us);
  CHECK(dl.redrives[1].time_us > dl.attempts[5].time_us);
  // As `herald dlq show` gets it.
  auto shown = control::to_record(dl, true);
  CHECK(shown.attempts.size() == 9);
  CHECK(shown.redrives.size() == 2);
  CHECK(shown.attempts[8].node == "history");
  // Handled at last: only then is the letter gone.
  broken = false;
  CHECK(redrive(*n, {}, 1, "ops-3") == std::vector<uint64_t>{id});
  REQUIRE(wait_until(
    [&] {
      return n->dead_letters()->empty();
    },
    10s));
  CHECK(ok.snapshot()
        == std::vector<std::string>{"user.account.created " + user_id(1)});
}

TEST_CASE("a redrive hands one entity's letters back by (stream, seq), "
          "whatever their ids",
          "[runtime][dead_letters]") {
  auto n = start(user_events_config("redrive-order"));
  std::atomic<bool> created_broken{true}, deleted_broken{true};
  handled_log ok;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.*",
    [&](const event& ev) {
      bool created = ev.type() == "user.account.created";
      if (created ? created_broken.load() : deleted_broken.load())
        throw std::runtime_error("down");
      ok.add(ev);
    },
    "EmailService"));
  // created (seq 1) and deleted (seq 2) of one user both fail.
  REQUIRE(n->bus().publish("user.account.created", created(1)));
  REQUIRE(n->bus().publish("user.account.deleted", deleted(1)));
  auto letters = letters_with(*n, 2, 3);
  CHECK(letters[0].event_type == "user.account.created");
  // The created one alone is redriven and fails again: it was stored
  // after the deleted one's letter once more.
  store::dead_letter_filter only_created;
  only_created.event_type = "user.account.created";
  REQUIRE(n->redrive(only_created));
  auto stats = n->stats("EmailService");
  REQUIRE(wait_until(
    [&] {
      return stats->redriven == 1;
    },
    10s));
  REQUIRE(n->dead_letters()->size() == 2);
  // Fixed: both are redriven; the created is handled first.
  created_broken = false;
  deleted_broken = false;
  CHECK(redrive(*n, {}, 2).size() == 2);
  REQUIRE(wait_until(
    [&] {
      return ok.snapshot().size() == 2;
    },
    10s));
  CHECK(ok.snapshot()
        == std::vector<std::string>{"user.account.created " + user_id(1),
                                    "user.account.deleted " + user_id(1)});
}

TEST_CASE("dead letters stored by an older version list, show and redrive",
          "[runtime][dead_letters]") {
  auto cfg = user_events_config("old-letters");
  {
    auto n = start(cfg);
    REQUIRE_FALSE(n->bus().subscribe(
      "user.account.*",
      [](const event&) {
        throw std::runtime_error("down");
      },
      "EmailService"));
    REQUIRE(n->bus().publish("user.account.created", created(1)));
    (void)letters_with(*n, 1, 3);
  }
  // Rewrite the letter as an older version stored it: no node per attempt,
  // no redrives.
  std::string old_value;
  {
    auto log = store::test::open_log(cfg.data_dir);
    auto l = log->find_dead_letter(1);
    REQUIRE(l);
    REQUIRE(*l);
    auto doc = payload{{"consumer", (*l)->consumer},
                       {"node", (*l)->node},
                       {"event_type", (*l)->event_type},
                       {"event_id", (*l)->event_id},
                       {"key", (*l)->key},
                       {"stream", (*l)->stream},
                       {"seq", (*l)->seq},
                       {"reason", (*l)->reason},
                       {"parked", (*l)->parked},
                       {"created_us", (*l)->created_us}};
    doc["envelope"] = payload::binary(
      std::vector<uint8_t>((*l)->envelope.begin(), (*l)->envelope.end()));
    doc["attempts"] = payload::array();
    for (auto& a : (*l)->attempts)
      doc["attempts"].push_back({{"time_us", a.time_us},
                                 {"error", a.error},
                                 {"error_class", a.error_class}});
    old_value = encode_payload(doc);
  }
  {
    store::test::raw_db db{cfg.data_dir,
                           {rocksdb::kDefaultColumnFamilyName, "events", "meta",
                            "offsets", "dead_letters"}};
    std::string key(8, '\0');
    key[7] = 1;
    db.put(4, key, old_value);
  }
  auto n = start(cfg);
  handled_log ok;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.*",
    [&](const event& ev) {
      ok.add(ev);
    },
    "EmailService"));
  auto listed = n->dead_letters();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  auto shown = control::to_record(listed->at(0), true);
  CHECK(shown.attempts.size() == 3);
  CHECK(shown.attempts[0].node == "old-letters");
  CHECK(shown.redrives.empty());
  CHECK(shown.event);
  auto redriven = n->redrive({});
  REQUIRE(redriven);
  CHECK(*redriven == std::vector<uint64_t>{1});
  REQUIRE(wait_until(
    [&] {
      return n->dead_letters()->empty();
    },
    10s));
  CHECK(ok.snapshot()
        == std::vector<std::string>{"user.account.created " + user_id(1)});
}
