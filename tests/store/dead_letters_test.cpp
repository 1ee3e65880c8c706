#include "herald/store/event_log.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "process.hpp"
#include "store_support.hpp"

using namespace std::chrono_literals;
using namespace std::string_literals;
using herald::errc;
using herald::store::dead_letter;
using herald::store::dead_letter_attempt;
using herald::store::dead_letter_filter;
using herald::store::event_log;
using herald::store::fsync_policy;
using herald::store::log_options;
namespace fs = std::filesystem;
using herald::store::test::open_log;
using herald::store::test::options_for;
using herald::store::test::raw_db;

namespace {

constexpr auto deadline = std::chrono::milliseconds{10000};

/// A letter of `consumer` for an event of `type` about entity `key`; the
/// other fields are derived from those, so that no two letters look alike.
dead_letter letter(const std::string& consumer, const std::string& type,
                   const std::string& key) {
  dead_letter dl;
  dl.consumer = consumer;
  dl.node = "node-" + consumer;
  dl.event_type = type;
  dl.event_id = "id-" + consumer + "-" + type + "-" + key;
  dl.key = key;
  dl.stream = "stream-" + key;
  dl.seq = 7;
  dl.envelope = "env:" + dl.event_id;
  dl.attempts.push_back({1'000, "boom " + key, "exception", dl.node});
  dl.reason = "attempts exhausted";
  dl.created_us = 2'000;
  return dl;
}

/// Adds `letters` and requires it to work.
std::vector<uint64_t> add(event_log& log, std::vector<dead_letter> letters) {
  auto ids = log.add_dead_letters(letters);
  if (!ids)
    FAIL("add_dead_letters failed: " << herald::message_of(ids.error()));
  return *ids;
}

std::vector<dead_letter> list(const event_log& log,
                              const dead_letter_filter& filter = {}) {
  auto res = log.dead_letters(filter);
  if (!res)
    FAIL("dead_letters failed: " << herald::message_of(res.error()));
  return std::move(*res);
}

std::vector<uint64_t> ids_of(const std::vector<dead_letter>& letters) {
  std::vector<uint64_t> out;
  for (auto& dl : letters)
    out.push_back(dl.id);
  return out;
}

std::vector<uint64_t> iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (auto id = from; id <= to; ++id)
    out.push_back(id);
  return out;
}

/// Checks every field of `got` against `want`.
void check_same(const dead_letter& got, const dead_letter& want) {
  INFO("dead letter " << want.id);
  CHECK(got.id == want.id);
  CHECK(got.consumer == want.consumer);
  CHECK(got.node == want.node);
  CHECK(got.event_type == want.event_type);
  CHECK(got.event_id == want.event_id);
  CHECK(got.key == want.key);
  CHECK(got.stream == want.stream);
  CHECK(got.seq == want.seq);
  // Compared as a whole, not printed: envelopes can be megabytes.
  CHECK(got.envelope.size() == want.envelope.size());
  CHECK((got.envelope == want.envelope));
  CHECK(got.reason == want.reason);
  CHECK(got.parked == want.parked);
  CHECK(got.created_us == want.created_us);
  REQUIRE(got.attempts.size() == want.attempts.size());
  for (size_t i = 0; i < want.attempts.size(); ++i) {
    INFO("attempt " << i);
    CHECK(got.attempts[i].time_us == want.attempts[i].time_us);
    CHECK(got.attempts[i].error == want.attempts[i].error);
    CHECK(got.attempts[i].error_class == want.attempts[i].error_class);
    CHECK(got.attempts[i].node == want.attempts[i].node);
  }
  REQUIRE(got.redrives.size() == want.redrives.size());
  for (size_t i = 0; i < want.redrives.size(); ++i) {
    INFO("redrive " << i);
    CHECK(got.redrives[i].time_us == want.redrives[i].time_us);
    CHECK(got.redrives[i].by == want.redrives[i].by);
  }
}

std::set<std::string> column_families(const fs::path& dir) {
  std::vector<std::string> names;
  auto s =
    rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions{}, dir.string(), &names);
  REQUIRE(s.ok());
  return {names.begin(), names.end()};
}

std::string be64(uint64_t x) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(x & 0xff);
    x >>= 8;
  }
  return out;
}

} // namespace

TEST_CASE("dead letters read back in id order with every field intact",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  CHECK(log->dead_letter_count() == 0);
  CHECK(list(*log).empty());

  std::vector<dead_letter> letters(4);
  // Every field set, an envelope of arbitrary bytes (NULs included) and
  // several attempts.
  auto& full = letters[0];
  full.consumer = "billing";
  full.node = "node-b";
  full.event_type = "user.account.created";
  full.event_id = "0190f3a2-7c4e-7b1a-9a3e-5d2c1b0a9f8e";
  full.key = "user-42";
  full.stream = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
  full.seq = std::numeric_limits<uint64_t>::max();
  full.envelope = "\x8b\x00\xa3key\x00\xff\xc1\x00"s;
  full.attempts = {
    {1'700'000'000'000'000, "connection refused", "error", "node-b"},
    {-5, "", "timeout", ""},
    {std::numeric_limits<int64_t>::max(), "bad\0bytes"s, "exception",
     "node-c"}};
  full.redrives = {{1'700'000'000'000'001, "ops@host"}, {-1, ""}};
  full.reason = "attempts exhausted";
  full.parked = false;
  full.created_us = std::numeric_limits<int64_t>::min();
  // Parked, no attempts, empty envelope.
  auto& parked = letters[1];
  parked.consumer = "billing";
  parked.key = "user-42";
  parked.reason = "parked behind dead letter 1";
  parked.parked = true;
  parked.created_us = 1;
  // An envelope bigger than a frame: its letter must still read back.
  letters[2] = letter("email", "user.account.created", "user-7");
  letters[2].envelope.assign(size_t{3} << 20, '\0');
  for (size_t i = 0; i < letters[2].envelope.size(); i += 4099)
    letters[2].envelope[i] = static_cast<char>(i % 251);
  // Everything empty or zero.
  letters[3] = dead_letter{};

  auto ids = log->add_dead_letters(letters);
  REQUIRE(ids);
  CHECK(*ids == iota(1, 4));
  CHECK(ids_of(letters) == iota(1, 4));
  CHECK(log->dead_letter_count() == 4);

  auto got = list(*log);
  REQUIRE(got.size() == letters.size());
  for (size_t i = 0; i < letters.size(); ++i)
    check_same(got[i], letters[i]);

  // Read back from a reopened log too: the letters are on disk.
  log.reset();
  log = open_log(dir.path());
  got = list(*log);
  REQUIRE(got.size() == letters.size());
  for (size_t i = 0; i < letters.size(); ++i)
    check_same(got[i], letters[i]);
}

TEST_CASE("dead letters are selected by consumer, type, key, id and limit",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  add(*log, {
              letter("billing", "user.account.created", "u1"), // 1
              letter("billing", "billing.invoice.paid", "u1"), // 2
              letter("email", "user.account.created", "u2"),   // 3
              letter("billing", "user.account.created", "u2"), // 4
              letter("email", "billing.invoice.paid", "u1"),   // 5
              letter("billing", "user.account.created", "u1"), // 6
            });
  auto filter = [](std::string consumer, std::string type, std::string key,
                   uint64_t after_id = 0, size_t limit = 0) {
    dead_letter_filter f;
    f.consumer = std::move(consumer);
    f.event_type = std::move(type);
    f.key = std::move(key);
    f.after_id = after_id;
    f.limit = limit;
    return f;
  };
  struct row {
    const char* what;
    dead_letter_filter filter;
    std::vector<uint64_t> ids;
  };
  std::vector<row> rows{
    {"all", filter("", "", ""), {1, 2, 3, 4, 5, 6}},
    {"consumer", filter("billing", "", ""), {1, 2, 4, 6}},
    {"type", filter("", "billing.invoice.paid", ""), {2, 5}},
    {"key", filter("", "", "u2"), {3, 4}},
    {"consumer and type",
     filter("billing", "user.account.created", ""),
     {1, 4, 6}},
    {"consumer, type and key",
     filter("billing", "user.account.created", "u1"),
     {1, 6}},
    {"after an id", filter("", "", "", 3), {4, 5, 6}},
    {"after an id, with a consumer", filter("email", "", "", 3), {5}},
    {"after the last id", filter("", "", "", 6), {}},
    {"after the largest id", filter("", "", "", UINT64_MAX), {}},
    {"limit", filter("", "", "", 0, 2), {1, 2}},
    {"limit counts selected letters only", filter("email", "", "", 0, 1), {3}},
    {"limit past the end", filter("", "", "", 4, 10), {5, 6}},
    {"paging", filter("billing", "", "", 2, 2), {4, 6}},
    {"no match", filter("analytics", "", ""), {}},
    {"no partial match", filter("bill", "", ""), {}},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto got = list(*log, r.filter);
    CHECK(ids_of(got) == r.ids);
    for (auto& dl : got) {
      if (!r.filter.consumer.empty())
        CHECK(dl.consumer == r.filter.consumer);
      if (!r.filter.event_type.empty())
        CHECK(dl.event_type == r.filter.event_type);
      if (!r.filter.key.empty())
        CHECK(dl.key == r.filter.key);
    }
  }
}

TEST_CASE("find_dead_letter returns the letter or nothing",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  std::vector<dead_letter> letters{letter("billing", "a.b.c", "k1"),
                                   letter("email", "a.b.d", "k2")};
  REQUIRE(log->add_dead_letters(letters));

  auto hit = log->find_dead_letter(2);
  REQUIRE(hit);
  REQUIRE(hit->has_value());
  check_same(**hit, letters[1]);

  for (uint64_t id : {uint64_t{0}, uint64_t{3}, UINT64_MAX}) {
    INFO("id " << id);
    auto miss = log->find_dead_letter(id);
    REQUIRE(miss);
    CHECK(!miss->has_value());
  }
}

TEST_CASE("removing dead letters counts only those that existed",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  add(*log, {letter("c", "a.b.c", "1"), letter("c", "a.b.c", "2"),
             letter("c", "a.b.c", "3"), letter("c", "a.b.c", "4")});
  REQUIRE(log->dead_letter_count() == 4);

  // 99 never existed and 2 is named twice: two letters go.
  auto removed = log->remove_dead_letters({2, 99, 4, 2});
  REQUIRE(removed);
  CHECK(*removed == 2);
  CHECK(log->dead_letter_count() == 2);
  CHECK(ids_of(list(*log)) == std::vector<uint64_t>{1, 3});
  auto gone = log->find_dead_letter(2);
  REQUIRE(gone);
  CHECK(!gone->has_value());

  // Already removed, or nothing named: nothing changes.
  auto again = log->remove_dead_letters({2, 4});
  REQUIRE(again);
  CHECK(*again == 0);
  auto none = log->remove_dead_letters({});
  REQUIRE(none);
  CHECK(*none == 0);
  CHECK(log->dead_letter_count() == 2);
  CHECK(ids_of(list(*log)) == std::vector<uint64_t>{1, 3});

  auto rest = log->remove_dead_letters({1, 3});
  REQUIRE(rest);
  CHECK(*rest == 2);
  CHECK(log->dead_letter_count() == 0);
  CHECK(list(*log).empty());
}

TEST_CASE("dead-letter ids are never reused and the count survives a reopen",
          "[store][dead_letters]") {
  auto fsync =
    GENERATE(fsync_policy::always, fsync_policy::batch, fsync_policy::os);
  INFO("fsync policy " << static_cast<int>(fsync));
  herald::test::temp_dir dir;
  {
    auto log = open_log(dir.path(), fsync);
    CHECK(add(*log, {letter("c", "a.b.c", "1"), letter("c", "a.b.c", "2"),
                     letter("c", "a.b.c", "3")})
          == iota(1, 3));
    CHECK(add(*log, {letter("c", "a.b.c", "4")}) == std::vector<uint64_t>{4});
    // The newest letter goes too: its id must not come back.
    auto removed = log->remove_dead_letters({1, 4});
    REQUIRE(removed);
    CHECK(*removed == 2);
  }
  {
    auto log = open_log(dir.path(), fsync);
    CHECK(log->dead_letter_count() == 2);
    CHECK(ids_of(list(*log)) == std::vector<uint64_t>{2, 3});
    CHECK(add(*log, {letter("c", "a.b.c", "5"), letter("c", "a.b.c", "6")})
          == std::vector<uint64_t>{5, 6});
    CHECK(log->dead_letter_count() == 4);
    // Every letter goes: the ids still go on from the last one.
    auto removed = log->remove_dead_letters({2, 3, 5, 6});
    REQUIRE(removed);
    CHECK(*removed == 4);
  }
  auto log = open_log(dir.path(), fsync);
  CHECK(log->dead_letter_count() == 0);
  CHECK(list(*log).empty());
  CHECK(add(*log, {letter("c", "a.b.c", "7")}) == std::vector<uint64_t>{7});
  CHECK(log->dead_letter_count() == 1);
}

TEST_CASE("concurrent writers of dead letters get distinct, ordered ids",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  // Synced writes: slow enough for writers to overlap.
  auto log = open_log(dir.path(), fsync_policy::always);
  constexpr int writers = 4;
  constexpr int rounds = 50;
  // Each writer adds 1 or 2 letters per round, and removes every third
  // batch it added: ids and the count must stay consistent.
  std::atomic<int> ready{0};
  auto work = [&log, &ready](int w) {
    // All start at once.
    ready.fetch_add(1);
    while (ready.load() < writers)
      std::this_thread::yield();
    std::vector<uint64_t> mine;
    size_t kept = 0;
    for (int i = 0; i < rounds; ++i) {
      std::vector<dead_letter> batch(1 + (i % 2),
                                     letter(std::to_string(w), "a.b.c", "k"));
      auto ids = log->add_dead_letters(batch);
      if (!ids)
        throw std::runtime_error(herald::message_of(ids.error()));
      if (!std::is_sorted(ids->begin(), ids->end()))
        throw std::runtime_error("ids of one batch out of order");
      if (!mine.empty() && ids->front() <= mine.back())
        throw std::runtime_error("ids of one writer out of order");
      mine.insert(mine.end(), ids->begin(), ids->end());
      if (i % 3 == 0) {
        auto removed = log->remove_dead_letters(*ids);
        if (!removed || *removed != ids->size())
          throw std::runtime_error("remove did not remove what was added");
      } else {
        kept += ids->size();
      }
    }
    return std::make_pair(mine, kept);
  };
  std::vector<std::future<std::pair<std::vector<uint64_t>, size_t>>> futures;
  for (int w = 0; w < writers; ++w)
    futures.push_back(std::async(std::launch::async, work, w));
  std::vector<uint64_t> all;
  size_t kept = 0;
  for (auto& f : futures) {
    auto [mine, n] = herald::test::get_within(f, deadline);
    all.insert(all.end(), mine.begin(), mine.end());
    kept += n;
  }
  std::sort(all.begin(), all.end());
  // 4 writers x (25 rounds of 1 + 25 rounds of 2) letters, ids 1..300.
  CHECK(all == iota(1, writers * (rounds / 2) * 3));
  CHECK(log->dead_letter_count() == kept);
  CHECK(list(*log).size() == kept);
  log.reset();
  log = open_log(dir.path(), fsync_policy::always);
  CHECK(log->dead_letter_count() == kept);
}

TEST_CASE("a data directory made before dead letters opens and takes them",
          "[store][dead_letters]") {
  // What an older version leaves behind: the column families it knew,
  // a stream id and an offset.
  herald::test::temp_dir dir;
  auto data = dir / "data";
  {
    raw_db old{
      data, {rocksdb::kDefaultColumnFamilyName, "events", "meta", "offsets"}};
    old.put(2, "stream_id", "old-stream");
    old.put(3, "billing\0old-stream"s, be64(42));
  }
  REQUIRE(column_families(data)
          == std::set<std::string>{rocksdb::kDefaultColumnFamilyName, "events",
                                   "meta", "offsets"});
  {
    auto log = open_log(data);
    CHECK(log->stream_id() == "old-stream");
    CHECK(log->offset("billing", "old-stream") == 42);
    CHECK(log->dead_letter_count() == 0);
    CHECK(list(*log).empty());
    CHECK(add(*log, {letter("billing", "a.b.c", "k")})
          == std::vector<uint64_t>{1});
  }
  CHECK(column_families(data).count("dead_letters") == 1);
  auto log = open_log(data);
  CHECK(log->stream_id() == "old-stream");
  CHECK(log->dead_letter_count() == 1);
  CHECK(ids_of(list(*log)) == std::vector<uint64_t>{1});
}

TEST_CASE("retention deletes events but never dead letters",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto now = std::make_shared<std::atomic<int64_t>>(1'000'000);
  auto opts = options_for(dir.path());
  opts.retention = std::chrono::microseconds{10'000};
  opts.clock = [now] {
    return now->load();
  };
  std::vector<dead_letter> letters;
  {
    auto log = open_log(opts);
    std::shared_ptr<const herald::store::commit_ticket> ticket;
    for (uint64_t seq = 1; seq <= 20; ++seq) {
      herald::store::record r;
      r.seq = seq;
      r.type = "user.account.created";
      r.type_seq = seq;
      r.timestamp_us = 1'000'000;
      r.envelope = "env-" + std::to_string(seq);
      ticket = log->append(std::move(r));
    }
    auto err = ticket->wait_for(deadline);
    REQUIRE(err.has_value());
    REQUIRE(herald::message_of(*err) == "");
    // Letters of those very events, created as old as they are.
    for (uint64_t seq = 1; seq <= 3; ++seq) {
      auto dl = letter("billing", "user.account.created", "k");
      dl.seq = seq;
      dl.created_us = 1'000'000;
      dl.attempts = {{1'000'000, "boom", "exception", dl.node}};
      letters.push_back(std::move(dl));
    }
    REQUIRE(log->add_dead_letters(letters));

    // Far in the future: every event has expired.
    now->store(int64_t{1} << 60);
    auto deleted = log->enforce_retention();
    REQUIRE(deleted);
    CHECK(*deleted == 20);
    auto res = log->read(1, 1000, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(res->events.empty());

    CHECK(log->dead_letter_count() == 3);
    auto got = list(*log);
    REQUIRE(got.size() == 3);
    for (size_t i = 0; i < got.size(); ++i)
      check_same(got[i], letters[i]);
  }
  auto log = open_log(opts);
  auto again = log->enforce_retention();
  REQUIRE(again);
  CHECK(log->dead_letter_count() == 3);
  auto got = list(*log);
  REQUIRE(got.size() == 3);
  for (size_t i = 0; i < got.size(); ++i)
    check_same(got[i], letters[i]);
}

TEST_CASE("a corrupt dead letter is an error naming its id and the directory",
          "[store][dead_letters]") {
  struct row {
    const char* what;
    std::string value;
  };
  auto valid = herald::payload::parse(R"({"consumer":"c","node":"n",
    "event_type":"a.b.c","event_id":"e","key":"k","stream":"s","seq":1,
    "attempts":[],"reason":"r","parked":false,"created_us":0})");
  valid["envelope"] = herald::payload::binary(std::vector<uint8_t>{1, 0, 2});
  auto without = [&](const char* field) {
    auto doc = valid;
    doc.erase(field);
    return herald::encode_payload(doc);
  };
  auto with = [&](const char* field, herald::payload v) {
    auto doc = valid;
    doc[field] = std::move(v);
    return herald::encode_payload(doc);
  };
  std::vector<row> rows{
    {"not MessagePack", "\xc1\xc1garbage"s},
    {"truncated", herald::encode_payload(valid).substr(0, 20)},
    {"not a map", herald::encode_payload(herald::payload::array({1, 2}))},
    {"a field missing", without("consumer")},
    {"the envelope missing", without("envelope")},
    {"a string field of another type", with("event_type", 5)},
    {"a negative seq", with("seq", -1)},
    {"a text envelope", with("envelope", "text")},
    {"attempts not an array", with("attempts", "none")},
    {"an attempt not a map", with("attempts", herald::payload::array({1}))},
    {"an attempt without its error",
     with("attempts", herald::payload::parse(
                        R"([{"time_us":1,"error_class":"timeout"}])"))},
    {"created_us out of range", with("created_us", UINT64_MAX)},
    {"an attempt's node of another type",
     with("attempts", herald::payload::parse(
                        R"([{"time_us":1,"error":"e","error_class":"x",
                             "node":7}])"))},
    {"redrives not an array", with("redrives", "none")},
    {"a redrive not a map", with("redrives", herald::payload::array({1}))},
    {"a redrive without who asked",
     with("redrives", herald::payload::parse(R"([{"time_us":1}])"))},
  };
  herald::test::temp_dir dir;
  auto data = dir / "data";
  {
    auto log = open_log(data);
    add(*log, {letter("c", "a.b.c", "1"), letter("c", "a.b.c", "2"),
               letter("c", "a.b.c", "3")});
  }
  // Each row damages letter 2 and, checking, removes it again.
  for (auto& r : rows) {
    INFO(r.what);
    {
      raw_db db{data,
                {rocksdb::kDefaultColumnFamilyName, "events", "meta", "offsets",
                 "dead_letters"}};
      db.put(4, be64(2), r.value);
    }
    auto log = open_log(data);
    CHECK(log->dead_letter_count() == 3);
    auto check_error = [&](const caf::error& err) {
      INFO(herald::message_of(err));
      CHECK(herald::is(err, errc::corrupt_log));
      CHECK_THAT(herald::message_of(err), Catch::Contains("dead letter 2 ")
                                            && Catch::Contains(data.string()));
    };
    auto all = log->dead_letters({});
    REQUIRE(!all);
    check_error(all.error());
    auto two = log->find_dead_letter(2);
    REQUIRE(!two);
    check_error(two.error());
    // The others still read, and the bad one can be removed.
    auto one = log->find_dead_letter(1);
    REQUIRE(one);
    CHECK(one->has_value());
    dead_letter_filter after;
    after.after_id = 2;
    CHECK(ids_of(list(*log, after)) == std::vector<uint64_t>{3});
    auto removed = log->remove_dead_letters({2});
    REQUIRE(removed);
    CHECK(*removed == 1);
    CHECK(ids_of(list(*log)) == std::vector<uint64_t>{1, 3});
  }
}

TEST_CASE("a redriven letter that fails again grows under its id",
          "[store][dead_letters]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  auto first = letter("email", "user.account.created", "u-1");
  first.attempts = {{10, "smtp down", "error", "node-a"},
                    {20, "smtp down", "error", "node-a"}};
  add(*log, {first, letter("email", "user.account.created", "u-2")});
  REQUIRE(log->record_redrive({1, 99}, 30, "ada@ops") == size_t{1});
  // The redrive fails again on another node: the same id, a longer record.
  auto again = letter("email", "user.account.created", "u-1");
  again.id = 1;
  again.attempts = {{40, "smtp refused", "exception", "node-b"}};
  again.reason = "1 attempts failed";
  again.created_us = 999; // kept as first stored
  std::vector<dead_letter> batch{
    again, letter("email", "user.account.created", "u-3")};
  auto ids = log->add_dead_letters(batch);
  REQUIRE(ids);
  CHECK(*ids == std::vector<uint64_t>{1, 3}); // a new letter gets the next id
  CHECK(log->dead_letter_count() == 3);
  REQUIRE(log->record_redrive({1}, 50, "grace@ops") == size_t{1});
  auto got = log->find_dead_letter(1);
  REQUIRE(got);
  REQUIRE(*got);
  auto& dl = **got;
  REQUIRE(dl.attempts.size() == 3);
  CHECK(dl.attempts[0].time_us == 10); // the first failure
  CHECK(dl.attempts[2].error == "smtp refused");
  CHECK(dl.attempts[2].node == "node-b");
  REQUIRE(dl.redrives.size() == 2);
  CHECK(dl.redrives[0].time_us == 30);
  CHECK(dl.redrives[0].by == "ada@ops");
  CHECK(dl.redrives[1].by == "grace@ops");
  CHECK(dl.reason == "1 attempts failed");
  CHECK(dl.created_us == first.created_us);

  // A letter purged while it was redriven is stored again under its id.
  REQUIRE(log->remove_dead_letters({2}) == size_t{1});
  auto purged = letter("email", "user.account.created", "u-2");
  purged.id = 2;
  std::vector<dead_letter> back{purged};
  REQUIRE(log->add_dead_letters(back) == std::vector<uint64_t>{2});
  CHECK(log->dead_letter_count() == 3);
  CHECK(ids_of(list(*log)) == std::vector<uint64_t>{1, 2, 3});
}

TEST_CASE("a dead letter stored before attempts named their node and "
          "redrives were kept still lists, shows and grows",
          "[store][dead_letters]") {
  // The value an older version wrote: no `node` per attempt, no
  // `redrives`.
  auto old = herald::payload::parse(R"({"consumer":"email","node":"old-node",
    "event_type":"user.account.created","event_id":"e-1","key":"u-1",
    "stream":"s","seq":4,"attempts":[
      {"time_us":10,"error":"smtp down","error_class":"error"},
      {"time_us":20,"error":"smtp down","error_class":"error"}],
    "reason":"2 attempts failed","parked":false,"created_us":21})");
  old["envelope"] = herald::payload::binary(std::vector<uint8_t>{1, 2, 3});
  herald::test::temp_dir dir;
  auto data = dir / "data";
  {
    auto log = open_log(data);
    add(*log, {letter("email", "a.b.c", "first")});
  }
  {
    raw_db db{data,
              {rocksdb::kDefaultColumnFamilyName, "events", "meta", "offsets",
               "dead_letters"}};
    db.put(4, be64(1), herald::encode_payload(old));
  }
  auto log = open_log(data);
  auto listed = list(*log);
  REQUIRE(listed.size() == 1);
  auto& dl = listed[0];
  CHECK(dl.consumer == "email");
  CHECK(dl.seq == 4);
  REQUIRE(dl.attempts.size() == 2);
  CHECK(dl.attempts[0].node == "old-node"); // the letter's node
  CHECK(dl.redrives.empty());
  CHECK(dl.envelope == "\x01\x02\x03");
  // Redriven and failed again, it grows in the new format.
  REQUIRE(log->record_redrive({1}, 30, "ada@ops") == size_t{1});
  auto again = dl;
  again.attempts = {{40, "smtp down", "error", "new-node"}};
  std::vector<dead_letter> batch{again};
  REQUIRE(log->add_dead_letters(batch) == std::vector<uint64_t>{1});
  auto got = log->find_dead_letter(1);
  REQUIRE(got);
  REQUIRE(*got);
  REQUIRE((*got)->attempts.size() == 3);
  CHECK((*got)->attempts[0].node == "old-node");
  CHECK((*got)->attempts[2].node == "new-node");
  REQUIRE((*got)->redrives.size() == 1);
  CHECK((*got)->redrives[0].by == "ada@ops");
}
