#pragma once

/// Partitions of a consumer group, and which member owns each.
///
/// An event's partition is a stable function of its entity key (the
/// envelope's `key`, the same bytes on every node and in every version):
/// FNV-1a, 64-bit (offset basis 14695981039346656037, prime
/// 1099511628211; http://www.isthe.com/chongo/tech/comp/fnv/), of the
/// key's bytes, modulo the group's `partitions`. One entity is always in
/// one partition, so a partition's owner sees every event of the entity.
///
/// Assignment is rendezvous (highest random weight) hashing (Thaler and
/// Ravishankar, "Using name-based mappings to increase hit rates", 1998):
/// partition p of group G goes to the member m with the highest
/// `rendezvous_weight(G, p, m)`, ties to the smaller name. Every member
/// that sees the same member list computes the same assignment; a member
/// that joins takes only the partitions it wins, one that leaves gives up
/// only its own.
///
/// Thread safety: pure functions.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// Most partitions a consumer group may have.
inline constexpr uint32_t max_partitions = 4096;

/// FNV-1a 64 of `bytes`.
uint64_t fnv1a64(std::string_view bytes) noexcept;

/// The partition of entity `key` among `partitions` (1..max_partitions;
/// 0 is taken as 1): `fnv1a64(key) % partitions`.
uint32_t partition_of(std::string_view key, uint32_t partitions) noexcept;

/// The weight of `member` for partition `partition` of `group`: FNV-1a 64
/// of `group '\0' partition (decimal) '\0' member`, then mixed with
/// SplitMix64's finalizer so that weights of near names spread.
uint64_t rendezvous_weight(std::string_view group, uint32_t partition,
                           std::string_view member) noexcept;

/// The member of `members` that owns `partition` of `group`: the highest
/// weight, ties to the smaller name. Empty when `members` is empty.
std::string_view assigned_member(std::string_view group, uint32_t partition,
                                 const std::vector<std::string>& members);

/// The partitions of `group` (of `partitions`) that `self` owns among
/// `members` (which should include `self`), ascending.
std::vector<uint32_t>
assigned_partitions(std::string_view group, uint32_t partitions,
                    std::string_view self,
                    const std::vector<std::string>& members);

} // namespace herald
