// A stream owner's groups' dead letters (runtime/src/group_letters.hpp),
// rule by rule, over an in-memory letter store; and the group.lease
// message's letters on the wire.

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "group_letters.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
#include "herald/runtime/control.hpp"

using namespace herald;

namespace {

constexpr uint32_t parts = 8;
const std::string stream = "S";
const std::string group = "EmailService";

struct memory_letters {
  std::map<uint64_t, store::dead_letter> stored;
  uint64_t next = 0;
  int adds = 0;
  bool fail = false;

  letter_store view() {
    letter_store s;
    s.load = [this](const std::string& g)
      -> caf::expected<std::vector<store::dead_letter>> {
      std::vector<store::dead_letter> out;
      for (auto& [id, l] : stored)
        if (l.consumer == g)
          out.push_back(l);
      return out;
    };
    s.add = [this](std::vector<store::dead_letter>& ls)
      -> caf::expected<std::vector<uint64_t>> {
      if (fail)
        return make_error(errc::io_error, "disk full");
      ++adds;
      std::vector<uint64_t> ids;
      for (auto& l : ls) {
        if (l.id == 0)
          l.id = ++next;
        stored[l.id] = l;
        ids.push_back(l.id);
      }
      return ids;
    };
    s.remove =
      [this](const std::vector<uint64_t>& ids) -> caf::expected<size_t> {
      size_t n = 0;
      for (auto id : ids)
        n += stored.erase(id);
      return n;
    };
    s.find =
      [this](uint64_t id) -> caf::expected<std::optional<store::dead_letter>> {
      auto it = stored.find(id);
      if (it == stored.end())
        return std::optional<store::dead_letter>{};
      return std::optional<store::dead_letter>{it->second};
    };
    return s;
  }
};

store::dead_letter letter(const std::string& key, uint64_t seq,
                          size_t envelope = 10) {
  store::dead_letter l;
  l.consumer = group;
  l.node = "email-1";
  l.event_type = "user.account.created";
  l.event_id = "id-" + std::to_string(seq);
  l.key = key;
  l.stream = stream;
  l.seq = seq;
  l.envelope = std::string(envelope, 'x');
  l.attempts.push_back({1, "boom", "exception", "email-1"});
  l.reason = "3 attempts failed";
  return l;
}

lease_request request(std::vector<group_letter> letters = {}) {
  lease_request r;
  r.stream = stream;
  r.group = group;
  r.member = "email-1";
  r.partitions = parts;
  r.letters = std::move(letters);
  return r;
}

group_letter of(const store::dead_letter& l, uint64_t epoch) {
  return {partition_of(l.key, parts), epoch, l};
}

lease_reply answered(uint32_t p, lease_result result, uint64_t epoch) {
  lease_reply reply;
  reply.stream = stream;
  reply.group = group;
  lease_entry_reply e;
  e.partition = p;
  e.result = result;
  e.epoch = epoch;
  reply.entries.push_back(e);
  return reply;
}

const auto always = [](uint32_t, uint64_t) {
  return true;
};

} // namespace

TEST_CASE("a group's dead letter is stored only under its member's current "
          "lease",
          "[groups][letters]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  auto a = letter("a", 5);
  auto b = letter("b", 6);
  auto results =
    gl.take(request({of(a, 7), of(b, 3)}), [](uint32_t, uint64_t epoch) {
      return epoch == 7;
    });
  REQUIRE(results.size() == 2);
  CHECK(results[0].result == letter_result::stored);
  CHECK(results[0].id == 1);
  CHECK(results[1].result == letter_result::stale);
  CHECK_THAT(results[1].reason, Catch::Contains("epoch 3"));
  REQUIRE(mem.stored.size() == 1);
  CHECK(mem.stored.at(1).key == "a");
  CHECK(mem.adds == 1);
}

TEST_CASE("a store that fails answers failed for each letter, storing none",
          "[groups][letters]") {
  memory_letters mem;
  mem.fail = true;
  group_letters gl{stream, 0, mem.view(), {}};
  auto results = gl.take(request({of(letter("a", 1), 1)}), always);
  REQUIRE(results.size() == 1);
  CHECK(results[0].result == letter_result::failed);
  CHECK_THAT(results[0].reason, Catch::Contains("disk full"));
  CHECK(mem.stored.empty());
}

TEST_CASE("a group's quota refuses the letter that would pass it and "
          "alerts once",
          "[groups][letters][quota]") {
  memory_letters mem;
  std::vector<quota_reached> alerts;
  auto size = store::encode_dead_letter(letter("a", 1)).size();
  // Room for two letters, not three.
  group_letters gl{stream, 2 * size + size / 2, mem.view(),
                   [&](const quota_reached& q) {
                     alerts.push_back(q);
                   }};
  auto results = gl.take(request({of(letter("a", 1), 1), of(letter("b", 2), 1),
                                  of(letter("c", 3), 1)}),
                         always);
  REQUIRE(results.size() == 3);
  CHECK(results[0].result == letter_result::stored);
  CHECK(results[1].result == letter_result::stored);
  CHECK(results[2].result == letter_result::quota);
  CHECK_THAT(results[2].reason, Catch::Contains("dead_letter_quota"));
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].group == group);
  CHECK(alerts[0].letters == 2);
  CHECK(gl.usages().at(group).full);

  // Asked again while full: refused, no second alert.
  results = gl.take(request({of(letter("c", 3), 1)}), always);
  CHECK(results[0].result == letter_result::quota);
  CHECK(alerts.size() == 1);

  // A purge makes room: stored, and the next time it fills it alerts again.
  gl.purged({mem.stored.at(1)});
  mem.stored.erase(1);
  results = gl.take(request({of(letter("c", 3), 1)}), always);
  CHECK(results[0].result == letter_result::stored);
  CHECK_FALSE(gl.usages().at(group).full);
  results = gl.take(request({of(letter("d", 4), 1)}), always);
  CHECK(results[0].result == letter_result::quota);
  CHECK(alerts.size() == 2);
}

TEST_CASE("a grant carries the partition's parked entities from the store",
          "[groups][letters]") {
  memory_letters mem;
  // Letters made before this start (by a member since gone).
  auto a = letter("a", 5);
  a.id = 4;
  mem.stored[4] = a;
  auto a2 = letter("a", 9);
  a2.id = 6;
  mem.stored[6] = a2;
  mem.next = 6;
  group_letters gl{stream, 0, mem.view(), {}};
  auto p = partition_of("a", parts);
  auto req = request();
  auto reply = answered(p, lease_result::granted, 11);
  gl.annotate(req, reply);
  REQUIRE(reply.entries[0].parked.size() == 1);
  CHECK(reply.entries[0].parked[0].key == "a");
  CHECK(reply.entries[0].parked[0].dead_letter == 4);

  // Another partition's grant parks nothing of it.
  auto other = answered((p + 1) % parts, lease_result::granted, 12);
  gl.annotate(req, other);
  CHECK(other.entries[0].parked.empty());
}

TEST_CASE("a redriven letter goes to its partition's holder once per "
          "epoch until handled",
          "[groups][letters][redrive]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  auto early = letter("a", 3);
  auto late = letter("a", 8);
  gl.take(request({of(late, 1), of(early, 1)}), always); // ids 1, 2
  auto p = partition_of("a", parts);
  auto marked = gl.redrive({mem.stored.at(1), mem.stored.at(2)});
  REQUIRE(marked);
  CHECK(marked->size() == 2);
  // A second redrive marks nothing again.
  CHECK(gl.redrive({mem.stored.at(1)})->empty());

  auto req = request();
  auto reply = answered(p, lease_result::renewed, 5);
  gl.annotate(req, reply);
  REQUIRE(reply.redrive.size() == 2);
  // In seq order, under the holder's epoch.
  CHECK(reply.redrive[0].letter.seq == 3);
  CHECK(reply.redrive[1].letter.seq == 8);
  CHECK(reply.redrive[0].epoch == 5);
  CHECK(reply.redrive[0].letter.id == 2);

  // The same lease's next reply hands nothing again.
  auto again = answered(p, lease_result::renewed, 5);
  gl.annotate(req, again);
  CHECK(again.redrive.empty());

  // The member died with them: the next holder gets them.
  auto next = answered(p, lease_result::granted, 9);
  gl.annotate(req, next);
  CHECK(next.redrive.size() == 2);

  // Handled (removed), one failed again (stored under its id: redrivable
  // again, not handed).
  auto done = request({of(mem.stored.at(1), 9)});
  done.letters[0].letter.id = 1;
  done.redriven.push_back({p, 9, 2});
  auto results = gl.take(done, always);
  CHECK(results[0].result == letter_result::stored);
  CHECK(results[0].id == 1);
  CHECK(mem.stored.count(2) == 0);
  CHECK_FALSE(gl.redriving(1));
  auto later = answered(p, lease_result::granted, 10);
  gl.annotate(req, later);
  CHECK(later.redrive.empty());
  CHECK(later.entries[0].parked.size() == 1);
}

TEST_CASE("a purge unparks the entity at its partition's holder",
          "[groups][letters]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  gl.take(request({of(letter("a", 3), 1)}), always);
  auto p = partition_of("a", parts);
  gl.purged({mem.stored.at(1)});
  mem.stored.erase(1);
  auto req = request();
  // Not told to a member that does not hold the partition.
  auto elsewhere = answered((p + 1) % parts, lease_result::renewed, 2);
  gl.annotate(req, elsewhere);
  CHECK(elsewhere.unparked.empty());
  auto reply = answered(p, lease_result::renewed, 2);
  gl.annotate(req, reply);
  REQUIRE(reply.unparked.size() == 1);
  CHECK(reply.unparked[0].key == "a");
  auto again = answered(p, lease_result::renewed, 2);
  gl.annotate(req, again);
  CHECK(again.unparked.empty());
}

TEST_CASE("group.lease carries letters, redrives and parked entities "
          "exactly",
          "[groups][letters][control]") {
  decode_limits limits;
  control::group_lease_request m;
  m.id = control::group_id_bit | 5;
  m.body = request({of(letter("a", 3, 300), 4)});
  m.body.letters[0].letter.id = 12;
  m.body.redriven.push_back({1, 4, 9});
  auto back = control::decode_request(control::encode(m), limits);
  REQUIRE(back);
  auto* req = std::get_if<control::group_lease_request>(&*back);
  REQUIRE(req != nullptr);
  REQUIRE(req->body.letters.size() == 1);
  auto& l = req->body.letters[0];
  CHECK(l.epoch == 4);
  CHECK(l.letter.id == 12);
  CHECK(l.letter.envelope == std::string(300, 'x'));
  CHECK(l.letter.attempts.size() == 1);
  CHECK(l.letter.key == "a");
  CHECK(req->body.redriven == m.body.redriven);

  control::group_lease_reply r;
  r.id = m.id;
  r.body = answered(2, lease_result::granted, 4);
  r.body.ttl_ms = 6000;
  r.body.entries[0].parked.push_back({"a", 12});
  r.body.letters.push_back({letter_result::quota, 0, "full"});
  r.body.redrive.push_back(of(letter("b", 8), 4));
  r.body.redrive_more.push_back("b");
  r.body.unparked.push_back({"c", 0});
  auto answer = control::decode_reply<control::group_lease_reply>(
    control::encode(r), limits);
  REQUIRE(answer);
  auto* got = std::get_if<control::group_lease_reply>(&*answer);
  REQUIRE(got != nullptr);
  CHECK(got->body.entries[0].parked == r.body.entries[0].parked);
  CHECK(got->body.letters == r.body.letters);
  REQUIRE(got->body.redrive.size() == 1);
  CHECK(got->body.redrive[0].letter.seq == 8);
  CHECK(got->body.redrive_more == r.body.redrive_more);
  CHECK(got->body.unparked == r.body.unparked);
}

TEST_CASE("a new letter of an entity being redriven goes with that redrive",
          "[groups][letters][redrive]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  gl.take(request({of(letter("a", 3), 1), of(letter("b", 4), 1)}), always);
  auto p = partition_of("a", parts);
  REQUIRE(gl.redrive({mem.stored.at(1)})->size() == 1);
  auto req = request();
  auto reply = answered(p, lease_result::renewed, 5);
  gl.annotate(req, reply);
  REQUIRE(reply.redrive.size() == 1);
  // Parked while the redrive was on its way: stored, and handed after it.
  auto results = gl.take(request({of(letter("a", 9), 5)}), always);
  REQUIRE(results[0].result == letter_result::stored);
  CHECK(gl.redriving(results[0].id));
  auto next = answered(p, lease_result::renewed, 5);
  gl.annotate(req, next);
  REQUIRE(next.redrive.size() == 1);
  CHECK(next.redrive[0].letter.seq == 9);
  // Another entity's new letter is not redriven.
  results = gl.take(request({of(letter("b", 10), 5)}), always);
  CHECK_FALSE(gl.redriving(results[0].id));
  // Nor is one that comes after the redrive is over; but one that comes
  // with the request that ends it goes with it.
  auto ending = request({of(letter("a", 12), 5)});
  ending.redriven.push_back({p, 5, 1});
  ending.redriven.push_back({p, 5, next.redrive[0].letter.id});
  results = gl.take(ending, always);
  REQUIRE(results[0].result == letter_result::stored);
  CHECK(gl.redriving(results[0].id));
}

TEST_CASE("a redriven letter stored again ends its entity's redrive: no "
          "letter of it is handed alone",
          "[groups][letters][redrive]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  gl.take(request({of(letter("a", 3), 1), of(letter("a", 5), 1)}), always);
  auto p = partition_of("a", parts);
  REQUIRE(gl.redrive({mem.stored.at(1), mem.stored.at(2)})->size() == 2);
  auto req = request();
  auto reply = answered(p, lease_result::renewed, 5);
  gl.annotate(req, reply);
  REQUIRE(reply.redrive.size() == 2);
  // The entity stayed parked: the first redriven letter comes back, and
  // in the same request the entity's next events, parked behind it (the
  // second redriven letter has not come back yet).
  auto back = request({of(mem.stored.at(1), 5), of(letter("a", 9), 5)});
  back.letters[0].letter.id = 1;
  auto results = gl.take(back, always);
  REQUIRE(results[0].result == letter_result::stored);
  REQUIRE(results[1].result == letter_result::stored);
  // All its letters are plain dead letters again: handing seq 5 or 9
  // alone would have them handled before seq 3.
  CHECK_FALSE(gl.redriving(1));
  CHECK_FALSE(gl.redriving(2));
  CHECK_FALSE(gl.redriving(results[1].id));
  auto next = answered(p, lease_result::granted, 6);
  gl.annotate(req, next);
  CHECK(next.redrive.empty());
  // The next redrive hands them all, in seq order.
  std::vector<store::dead_letter> all;
  for (auto& [id, l] : mem.stored)
    all.push_back(l);
  REQUIRE(gl.redrive(all)->size() == 3);
  auto last = answered(p, lease_result::renewed, 6);
  gl.annotate(req, last);
  REQUIRE(last.redrive.size() == 3);
  CHECK(last.redrive[0].letter.seq == 3);
  CHECK(last.redrive[1].letter.seq == 5);
  CHECK(last.redrive[2].letter.seq == 9);
}

TEST_CASE("an entity whose redrive takes more than one reply is named in "
          "each but its last, comes first in the next, and a letter that "
          "cannot be read holds back its entity's later ones",
          "[groups][letters][redrive]") {
  memory_letters mem;
  group_letters gl{stream, 0, mem.view(), {}};
  auto p = partition_of("a", parts);
  // Another entity of the same partition.
  std::string other;
  for (int i = 0; other.empty(); ++i)
    if (auto k = "b" + std::to_string(i); partition_of(k, parts) == p)
      other = k;
  // a: seqs 3, 5 and 7; the other entity: seq 4. 100 bytes each.
  gl.take(request({of(letter("a", 3, 100), 1), of(letter(other, 4, 100), 1),
                   of(letter("a", 5, 100), 1), of(letter("a", 7, 100), 1)}),
          always);
  std::vector<store::dead_letter> all;
  for (auto& [id, l] : mem.stored)
    all.push_back(l);
  REQUIRE(gl.redrive(all)->size() == 4);
  auto req = request();
  auto seqs_of = [](const lease_reply& r) {
    std::vector<uint64_t> out;
    for (auto& l : r.redrive)
      out.push_back(l.letter.seq);
    return out;
  };
  // One letter a reply (a budget of 100 bytes).
  auto first = answered(p, lease_result::renewed, 5);
  gl.annotate(req, first, 100);
  CHECK(seqs_of(first) == std::vector<uint64_t>{3});
  CHECK(first.redrive_more == std::vector<std::string>{"a"});
  // The entity under way goes first, though the other's seq 4 is lower.
  auto second = answered(p, lease_result::renewed, 5);
  gl.annotate(req, second, 100);
  CHECK(seqs_of(second) == std::vector<uint64_t>{5});
  CHECK(second.redrive_more == std::vector<std::string>{"a"});
  auto third = answered(p, lease_result::renewed, 5);
  gl.annotate(req, third, 100);
  CHECK(seqs_of(third) == std::vector<uint64_t>{7});
  CHECK(third.redrive_more.empty());
  auto fourth = answered(p, lease_result::renewed, 5);
  gl.annotate(req, fourth, 100);
  CHECK(seqs_of(fourth) == std::vector<uint64_t>{4});
  CHECK(fourth.redrive_more.empty());

  // The next holder, with room for all: a letter of "a" cannot be read
  // (seq 5): seq 7 waits for it, and "a" is named; the other goes on.
  uint64_t unreadable = 0;
  for (auto& [id, l] : mem.stored)
    if (l.seq == 5)
      unreadable = id;
  auto kept = mem.stored.at(unreadable);
  mem.stored.erase(unreadable);
  auto granted = answered(p, lease_result::granted, 6);
  gl.annotate(req, granted);
  CHECK(seqs_of(granted) == std::vector<uint64_t>{3, 4});
  CHECK(granted.redrive_more == std::vector<std::string>{"a"});
  // Readable again: the rest of "a" comes, and the redrive is whole.
  mem.stored[unreadable] = kept;
  auto rest = answered(p, lease_result::renewed, 6);
  gl.annotate(req, rest);
  CHECK(seqs_of(rest) == std::vector<uint64_t>{5, 7});
  CHECK(rest.redrive_more.empty());
}

TEST_CASE("a letter after one refused at the quota is refused too, even one "
          "that would fit",
          "[groups][letters][quota]") {
  memory_letters mem;
  auto small = letter("a", 4, 0);
  group_letters gl{
    stream, store::encode_dead_letter(small).size() + 10, mem.view(), {}};
  auto results =
    gl.take(request({of(letter("a", 3, 4000), 1), of(small, 1)}), always);
  CHECK(results[0].result == letter_result::quota);
  CHECK(results[1].result == letter_result::quota);
  // Alone, it fits.
  results = gl.take(request({of(small, 1)}), always);
  CHECK(results[0].result == letter_result::stored);
}
