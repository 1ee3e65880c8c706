#pragma once

/// Consumer groups: what a member asks of a stream's owner, and what it
/// gets back (docs/architecture.md, "Consumer groups").
///
/// The instances of one consumer name on several nodes form a group named
/// by that consumer name. Each event belongs to a partition
/// (`partition_of(key, partitions)`, core/partition.hpp). Partition p of
/// stream S is handled by one member at a time: the one holding the lease
/// on (S, group, p), granted by S's owner (the producer node; the stream
/// owner is the broker of its own stream) with an epoch that grows with
/// every grant. The owner also keeps the group's committed offset per
/// (S, p). A single consumer is a group of one.
///
/// One message carries all of a member's business with one stream's owner
/// for one group (`lease_request`): acquiring partitions, committing
/// offsets (which renews the lease), releasing. The control protocol
/// carries it as the `group.lease` op (runtime/control.hpp); a node's own
/// stream is served in-process.
///
/// Thread safety: plain values.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "herald/store/dead_letter.hpp"

namespace herald {

/// What a member asks for one partition.
enum class lease_op : uint8_t {
  /// Grant me this partition: it is assigned to me (rendezvous over the
  /// group's live members as I see them). Granted unless another member
  /// holds an unexpired lease on it; the refusal marks the partition
  /// `wanted` for its holder.
  acquire,
  /// Grant me this partition, which is not assigned to me, only if nobody
  /// has held it for at least the owner's `lease_ttl` (its assigned member
  /// cannot reach the owner, or is gone): a partition never stalls for
  /// longer than that. Never marks it wanted.
  standby,
  /// I hold it under `epoch`: commit `offset` (when higher than the
  /// committed one) and renew the lease for another `ttl`.
  renew,
  /// I hold it under `epoch` and give it up: commit `offset` (when higher)
  /// and end the lease now.
  release,
};

/// The wire name of `op`: `acquire`, `standby`, `renew`, `release`.
const char* to_string(lease_op op) noexcept;

/// One partition of a `lease_request`.
struct lease_entry {
  uint32_t partition = 0;
  lease_op op = lease_op::acquire;
  /// The lease's epoch (`renew`, `release`); 0 for `acquire`, `standby`.
  uint64_t epoch = 0;
  /// Every event of the partition with seq <= offset was handled (`renew`,
  /// `release`); 0 commits nothing.
  uint64_t offset = 0;

  bool operator==(const lease_entry&) const = default;
};

/// A dead letter a member stores at the stream's owner: the group's dead
/// letters of a stream live with the stream (docs/architecture.md, "A
/// group's dead letters").
struct group_letter {
  /// The partition of the letter's event (`partition_of(letter.key,
  /// partitions)`).
  uint32_t partition = 0;
  /// The epoch of the lease the event was handled under: the letter is
  /// stored only while it is the partition's current, unexpired lease of
  /// this member (else `stale`, nothing stored).
  uint64_t epoch = 0;
  /// The letter. `id` 0: a new one; else a redriven letter that failed
  /// again, stored under its id again with its new attempts.
  store::dead_letter letter;

  bool operator==(const group_letter& o) const {
    return partition == o.partition && epoch == o.epoch
           && letter.id == o.letter.id && letter.event_id == o.letter.event_id
           && letter.seq == o.letter.seq;
  }
};

/// A redriven group dead letter that its member handled: the owner
/// removes it.
struct group_letter_done {
  uint32_t partition = 0;
  uint64_t epoch = 0;
  /// The dead letter's id at the owner.
  uint64_t id = 0;

  bool operator==(const group_letter_done&) const = default;
};

/// A member's request to the owner of `stream` for group `group`.
struct lease_request {
  /// The owner's stream.
  std::string stream;
  /// The group: the consumer name.
  std::string group;
  /// The member: the node's name (one member per node and group).
  std::string member;
  /// The member's `partitions`: refused (every entry, `refused`) when the
  /// group's leases at the owner use another number.
  uint32_t partitions = 0;
  /// The member's own offset in `stream` from before groups (kept in its
  /// data dir by an older version), 0 for none: the owner takes it as the
  /// committed offset of every partition it has none for. This is how a
  /// node upgraded in place keeps its position.
  uint64_t initial = 0;
  std::vector<lease_entry> entries;
  /// Dead letters to store, before any commit of this request (their
  /// events are not covered by its offsets). At most `max_group_letters`.
  std::vector<group_letter> letters;
  /// Redriven dead letters handled: removed. At most `max_group_letters`.
  std::vector<group_letter_done> redriven;

  bool operator==(const lease_request&) const = default;
};

/// How the owner answered one entry.
enum class lease_result : uint8_t {
  /// `acquire` or `standby`: the lease is the member's, under `epoch`,
  /// for `ttl_ms` counted from when the member sent the request;
  /// `offset` is the group's committed offset of the partition.
  granted,
  /// `renew`: the lease is renewed for `ttl_ms`; `offset` is the committed
  /// offset now.
  renewed,
  /// `release`: the lease ended; `offset` is the committed offset now.
  released,
  /// `acquire`, `standby`: not granted; `holder` holds it (empty: nobody,
  /// the owner waits, see `reason`).
  refused,
  /// `renew`, `release`: `epoch` is not the partition's current lease (it
  /// expired and may be another member's now): nothing was committed. The
  /// member must stop handling the partition at once.
  stale,
};

/// The wire name of `r`: `granted`, `renewed`, `released`, `refused`,
/// `stale`.
const char* to_string(lease_result r) noexcept;

/// Most letters (`letters`, `redriven`, `redrive`, `unparked`) one lease
/// request or reply carries.
inline constexpr size_t max_group_letters = 1024;

/// An entity parked behind a group's dead letter at the stream's owner.
struct parked_entity {
  /// The entity's key.
  std::string key;
  /// Its first dead letter (lowest id) at the owner.
  uint64_t dead_letter = 0;

  bool operator==(const parked_entity&) const = default;
};

/// How the owner answered one `group_letter`.
enum class letter_result : uint8_t {
  /// Stored under `id`.
  stored,
  /// Its epoch is not the partition's current lease of this member:
  /// nothing stored; the partition's next holder handles the event.
  stale,
  /// The group's dead letters at this owner would pass
  /// `groups.dead_letter_quota`: nothing stored; the member pauses the
  /// partition and asks again.
  quota,
  /// The owner could not store it (`reason`); asked again.
  failed,
};

/// The owner's answer to one `group_letter`, in the request's order.
struct group_letter_reply {
  letter_result result = letter_result::failed;
  /// The letter's id at the owner (`stored`).
  uint64_t id = 0;
  /// Why not stored, one sentence; empty when stored.
  std::string reason;

  bool operator==(const group_letter_reply&) const = default;
};

/// The owner's answer for one partition.
struct lease_entry_reply {
  uint32_t partition = 0;
  lease_result result = lease_result::refused;
  /// The lease's epoch (granted, renewed); the current one otherwise, 0
  /// for none.
  uint64_t epoch = 0;
  /// The group's committed offset of the partition.
  uint64_t offset = 0;
  /// Who holds the partition's lease now; empty for nobody.
  std::string holder;
  /// Another member asked for this partition (`acquire`) and was refused
  /// because this member holds it: if it is not assigned to this member,
  /// it should hand it over.
  bool wanted = false;
  /// Why it was refused or stale, one sentence; empty otherwise.
  std::string reason;
  /// `granted`: the partition's entities with dead letters of the group at
  /// the owner, which the new holder keeps parked (policy `park`).
  std::vector<parked_entity> parked;

  bool operator==(const lease_entry_reply&) const = default;
};

/// The owner's answer to a `lease_request`.
struct lease_reply {
  /// The request's id (set by whoever sent it).
  uint64_t id = 0;
  std::string stream;
  std::string group;
  /// How long a granted or renewed lease lasts, in milliseconds, counted
  /// from when the member sent the request.
  uint64_t ttl_ms = 0;
  /// One per entry of the request, in its order.
  std::vector<lease_entry_reply> entries;
  /// Partitions of the group nobody has held for at least the owner's
  /// `lease_ttl`: any member may ask for them (`standby`).
  std::vector<uint32_t> orphans;
  /// Why the whole request was refused (unknown stream, a failing store,
  /// an unreachable owner); empty when it was answered.
  std::string error;
  /// One per `letters` of the request, in its order.
  std::vector<group_letter_reply> letters;
  /// Dead letters redriven (`herald dlq redrive`) of partitions this
  /// member holds (granted or renewed in this reply): it hands them to its
  /// handlers, in (stream, seq) order per entity, under `epoch`. Handed
  /// again to the partition's next lease holder until handled (removed) or
  /// dead-lettered again.
  std::vector<group_letter> redrive;
  /// Entities (keys) of partitions granted or renewed in this reply whose
  /// redrive goes on in a later reply (their letters took more than one
  /// reply, or one could not be read): the member holds their `redrive`
  /// letters, of this reply and earlier ones under the same lease, and
  /// hands them to its handlers only with a reply that renews the partition
  /// and does not name them. An entity is unparked by its first redriven
  /// letter: a part handed alone would let its later events pass the next
  /// part. At most `max_group_letters`.
  std::vector<std::string> redrive_more;
  /// Entities whose dead letters were purged at the owner, of partitions
  /// this member holds: they go on.
  std::vector<parked_entity> unparked;
  /// How many dead letters of the group the owner keeps (of its stream) as
  /// of this answer; 0 when none or not read yet this start.
  uint64_t dead_letters = 0;

  bool operator==(const lease_reply&) const = default;
};

/// Carries a `lease_reply` to the consumer actor that asked.
using group_atom = caf::atom_constant<caf::atom("hgroup")>;

/// Tells a consumer actor the live members of its group, itself included
/// (`std::vector<std::string>` of node names): what it assigns partitions
/// over.
using group_members_atom = caf::atom_constant<caf::atom("hgmembers")>;

} // namespace herald

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::lease_reply)
