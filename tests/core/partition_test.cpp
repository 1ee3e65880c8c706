#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "herald/core/partition.hpp"

using namespace herald;

TEST_CASE("an entity's partition is FNV-1a 64 of its key, stable across "
          "versions",
          "[partition]") {
  // The published FNV-1a 64 test vectors.
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ull);
  CHECK(partition_of("foobar", 64) == 0x85944171f73967e8ull % 64);
  CHECK(partition_of("anything", 1) == 0);
  CHECK(partition_of("anything", 0) == 0);
}

TEST_CASE("keys spread over the partitions", "[partition]") {
  std::vector<int> counts(64, 0);
  for (int i = 0; i < 64000; ++i)
    ++counts[partition_of("user-" + std::to_string(i), 64)];
  for (auto c : counts) {
    CHECK(c > 700);
    CHECK(c < 1300);
  }
}

TEST_CASE("rendezvous assignment: every member computes the same, and a "
          "change moves only what it must",
          "[partition]") {
  std::vector<std::string> three{"email-1", "email-2", "email-3"};
  std::vector<std::string> reordered{"email-3", "email-1", "email-2"};
  std::map<std::string, int> share;
  for (uint32_t p = 0; p < 64; ++p) {
    auto owner = std::string{assigned_member("EmailService", p, three)};
    CHECK(owner == assigned_member("EmailService", p, reordered));
    ++share[owner];
  }
  REQUIRE(share.size() == 3); // each member gets some
  for (auto& [m, n] : share)
    CHECK(n >= 10);

  // A fourth member takes only partitions it wins; nothing else moves.
  auto four = three;
  four.push_back("email-4");
  int moved = 0;
  for (uint32_t p = 0; p < 64; ++p) {
    auto before = assigned_member("EmailService", p, three);
    auto after = assigned_member("EmailService", p, four);
    if (before != after) {
      CHECK(after == "email-4");
      ++moved;
    }
  }
  CHECK(moved > 0);
  CHECK(moved < 32);

  // One leaving gives up only its own.
  std::vector<std::string> two{"email-1", "email-3"};
  for (uint32_t p = 0; p < 64; ++p) {
    auto before = assigned_member("EmailService", p, three);
    if (before != "email-2")
      CHECK(assigned_member("EmailService", p, two) == before);
  }

  // The partitions of each member cover all, once.
  std::set<uint32_t> all;
  for (auto& m : three)
    for (auto p : assigned_partitions("EmailService", 64, m, three))
      CHECK(all.insert(p).second);
  CHECK(all.size() == 64);
  CHECK(assigned_member("EmailService", 3, {}).empty());
}
