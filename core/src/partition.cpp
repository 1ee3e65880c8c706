#include "herald/core/partition.hpp"

#include <algorithm>
#include <string>

namespace herald {

namespace {

constexpr uint64_t fnv_basis = 14695981039346656037ull;
constexpr uint64_t fnv_prime = 1099511628211ull;

uint64_t fnv_more(uint64_t h, std::string_view bytes) noexcept {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= fnv_prime;
  }
  return h;
}

uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

} // namespace

uint64_t fnv1a64(std::string_view bytes) noexcept {
  return fnv_more(fnv_basis, bytes);
}

uint32_t partition_of(std::string_view key, uint32_t partitions) noexcept {
  if (partitions <= 1)
    return 0;
  return static_cast<uint32_t>(fnv1a64(key) % partitions);
}

uint64_t rendezvous_weight(std::string_view group, uint32_t partition,
                           std::string_view member) noexcept {
  auto h = fnv_more(fnv_basis, group);
  h = fnv_more(h, std::string_view{"\0", 1});
  h = fnv_more(h, std::to_string(partition));
  h = fnv_more(h, std::string_view{"\0", 1});
  h = fnv_more(h, member);
  return mix(h);
}

std::string_view assigned_member(std::string_view group, uint32_t partition,
                                 const std::vector<std::string>& members) {
  std::string_view best;
  uint64_t best_weight = 0;
  bool any = false;
  for (auto& m : members) {
    auto w = rendezvous_weight(group, partition, m);
    if (!any || w > best_weight || (w == best_weight && m < best)) {
      best = m;
      best_weight = w;
      any = true;
    }
  }
  return best;
}

std::vector<uint32_t>
assigned_partitions(std::string_view group, uint32_t partitions,
                    std::string_view self,
                    const std::vector<std::string>& members) {
  std::vector<uint32_t> out;
  for (uint32_t p = 0; p < std::max<uint32_t>(partitions, 1); ++p)
    if (assigned_member(group, p, members) == self)
      out.push_back(p);
  return out;
}

} // namespace herald
