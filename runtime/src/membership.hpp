#pragma once

/// Cluster membership: which nodes are members, where they are, and whether
/// they are alive. SWIM (Das, Gupta, Motivala 2002) with suspicion and
/// Lifeguard's indirect evidence, as HashiCorp memberlist runs it, reduced
/// to what a cluster of tens of nodes needs:
///
/// - **Join.** A node sends `gossip.sync` (its own record and view) to each
///   seed in turn until one answers; the answer is the seed's view. No seed
///   answering: it tries them all again after a backoff (500 ms doubling to
///   10 s), logging once per round. No seeds at all: a cluster of one, up
///   at once. A seed that is this node's own control endpoint is skipped;
///   one that reaches this node under another spelling is refused by it
///   (a sync from itself). A node whose seeds did not answer is a member
///   all the same, `up`, once another member joins through it (a sync
///   from a member it accepts).
/// - **Probing.** Every `probe_interval` the node pings every member that is
///   not down (a direct `gossip.ping`); any message from a member (ping,
///   ack, sync) counts as hearing it directly. With tens of members,
///   probing all of them bounds the detection time by `suspect_after`
///   instead of by the random choice of SWIM's one probe per period. A
///   request not answered within 2 × `probe_interval` (at least 200 ms) is
///   given up: a join tries the next seed, an indirect probe counts as not
///   heard.
/// - **Suspicion.** A member not heard directly for `suspect_after` is
///   asked about: `gossip.probe` to up to 3 other members, who answer from
///   what they heard themselves. If none heard it within `suspect_after`,
///   this node marks it `suspect` at its current incarnation and spreads
///   that. Not heard (directly or through a probe) for `down_after`: `down`.
///   A member that learns it is suspected or down at its incarnation (or
///   higher) raises its incarnation above it and spreads itself `up`.
///   A node that did not run for more than `probe_interval` between two
///   ticks (paused, starved) does not hold that time against the others:
///   their silence is counted without the gap (Lifeguard's local health
///   awareness, in its simplest form), so a resumed node does not suspect
///   the whole cluster.
/// - **Dissemination.** A ping or ack carries the sender's own record
///   first and, when the sender sees the receiver suspect, down or
///   leaving, the receiver's record (so that it refutes at once). Every
///   record that changed is piggybacked on pings and acks for `retransmit`
///   rounds (memberlist's RetransmitMult, here a fixed 4 × log2(members + 1) +
///   1); and every `sync_interval` the node does a push-pull `gossip.sync` with
///   one member chosen at random among the live ones and, one time in three, a
///   down one still within `reconnect_window`, so two sides of a healed
///   partition find each other and one view results.
/// - **Down members** are pinged every `sync_interval` (not every probe)
///   until `reconnect_window` has passed since they went down, then
///   forgotten. A down member that answers is not brought up by the answer
///   alone: it learns it was taken down and refutes, raising its
///   incarnation.
/// - **Leaving.** `leave` marks this node `leaving` at a raised incarnation
///   and sends that record to every live member at once.
/// - **Names.** A record whose name is known with another stream replaces
///   the known one only when the known one is `down` or `leaving`; else it
///   is refused (a sync from it gets an error naming both streams),
///   logged once per (name, stream) and counted.
/// - **Streams.** A stream belongs to one member at a time: a record
///   (first- or second-hand) of a member that is not down or leaving, whose
///   stream is this node's or that of another member name not down or
///   leaving, is refused (a sync from it gets an error naming both
///   members), logged once per (name, stream) and counted. Once the holder
///   is down or has left, the claim may be accepted.
/// - **First-hand fields.** A record is first-hand when it came from the
///   member itself (the `from` of its sync, the updates of its ping or ack,
///   its own record in a sync reply it sent); the others are second-hand
///   (piggybacked about other members). The endpoints (`pub`, `control`,
///   `metrics`) and the stream of a member that is not down or leaving
///   change only first-hand: a second-hand record that would change its
///   endpoints is ignored whole (logged once per such endpoints and
///   counted); the rest of a second-hand record (status, incarnation,
///   types, consumers) is taken as SWIM takes it. A record of a member
///   known down or leaving is taken from anyone, so a member restarted on
///   new ports reaches the nodes it contacts itself and the others once
///   they see its old record down. Without keys a peer can still lie about
///   itself, and a `from` names the sender unverified.
/// - **Unknown members** first heard of as suspect, down or leaving are not
///   added (as memberlist does), so a member forgotten after the reconnect
///   window does not come back from another node's older view.
///
/// Merging a record (SWIM 4.2): it replaces what is known of its member
/// when its incarnation is higher, or equal with a later status in
/// `joining` = `up` < `suspect` < `down` < `leaving`. The fields a member
/// announces (endpoints, types, consumers) come with its incarnation: a
/// member raises its incarnation before it changes them.
///
/// All times are from the monotonic clock the caller passes (`now`); the
/// class reads no clock, does no I/O and starts no thread: the node feeds
/// it what arrives and sends what it returns.
///
/// Thread safety: none; the node calls it under one mutex.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "herald/runtime/control.hpp"

namespace herald::cluster {

using clock = std::chrono::steady_clock;

/// What membership needs of the config (`cluster:` in a node's YAML).
struct membership_config {
  /// The cluster's name; a node of another name is refused. Default
  /// `herald`.
  std::string name = "herald";
  /// Control endpoints of members to join through. Default: none (a
  /// cluster of one until others join it).
  std::vector<std::string> seeds;
  /// How often every live member is pinged. Default 500 ms.
  std::chrono::milliseconds probe_interval{500};
  /// Not heard for this long: suspect. Default 1.5 s.
  std::chrono::milliseconds suspect_after{1500};
  /// Not heard for this long: down. More than `suspect_after`. Default 3 s.
  std::chrono::milliseconds down_after{3000};
  /// How often a push-pull sync is done with one member. Default 2 s.
  std::chrono::milliseconds sync_interval{2000};
  /// How long a down member is kept and probed. Default 1 h.
  std::chrono::milliseconds reconnect_window{std::chrono::hours{1}};
};

/// A request to send: the encoded control request and the control endpoint
/// to send it to. Its id has `control::gossip_id_bit` set.
struct outgoing {
  std::string endpoint;
  std::string body;
};

/// A member's status changed as this node sees it (or its record did, at
/// the same status): what the node rewires and logs.
struct member_change {
  /// The record before; nothing for a member first heard of.
  std::optional<control::cluster_member> before;
  /// The record now.
  control::cluster_member now;
  /// Why, for the log, e.g. `not heard for 3.0 s`, `said it is leaving`,
  /// `joined`, `refuted a suspicion (incarnation 7)`.
  std::string why;
};

/// A member as this node knows it.
struct known_member {
  control::cluster_member record;
  /// When this node last heard it directly; nothing if it never did.
  std::optional<clock::time_point> last_heard;
  /// When it went down or left; for the reconnect window.
  std::optional<clock::time_point> down_since;
};

/// Membership of one node. See the file comment.
class membership {
public:
  /// `self` is this node's record (`incarnation` as persisted and raised at
  /// start, `status` ignored: `joining` with seeds, else `up`). Every time
  /// membership raises its incarnation it calls `persist` with the new one
  /// first (the node writes it to its data dir; an error is logged by the
  /// node, and membership goes on). `log` receives one line per event worth
  /// an operator's eye (level as spdlog numbers it: 1 debug, 2 info, 3
  /// warn; text); may be empty. Seeds equal to `self.control` are skipped.
  membership(membership_config cfg, control::cluster_member self,
             std::function<void(uint64_t)> persist,
             std::function<void(int level, std::string_view text)> log = {});

  /// Does what is due at `now`: joins through the seeds, pings, asks
  /// about and suspects silent members, takes them down, syncs, forgets
  /// members past the reconnect window. Appends the requests to send to
  /// `out`. Call it every 100 ms or so.
  void tick(clock::time_point now, std::vector<outgoing>& out);

  /// Serves a gossip request from another member; returns the encoded
  /// reply (a gossip reply, or a `control::error_reply`). `req` is a
  /// `gossip_sync_request`, `gossip_ping` or `gossip_probe`; a
  /// `members_request` is answered with `view(now)`, any other request
  /// with an error reply naming its op. Refusals (another cluster, a name
  /// taken by another stream, a ping meant for another name) are error
  /// replies that name both sides.
  std::string serve(const control::request& req, clock::time_point now);

  /// Takes the reply (or error reply) to a request this node sent to
  /// `endpoint`: `body` is the reply frame as it arrived (its id has
  /// `control::gossip_id_bit`). A malformed one is logged and dropped.
  void on_reply(std::string_view endpoint, std::string_view body,
                clock::time_point now);

  /// Marks this node `leaving` (raising its incarnation) and appends one
  /// request per live member telling it so.
  void leave(clock::time_point now, std::vector<outgoing>& out);

  /// Changes this node's announced record (e.g. a consumer added at run
  /// time): raises the incarnation and spreads it. `name` and `stream`
  /// cannot change.
  void update_self(control::cluster_member self);

  /// The changes since the last call, oldest first (status changes and
  /// record changes of other members; this node's own are not reported).
  std::vector<member_change> take_changes();

  /// This node's record as now announced.
  const control::cluster_member& self() const noexcept;

  /// Every member known, this node included, by name.
  const std::map<std::string, known_member, std::less<>>&
  members() const noexcept;

  /// The view as `herald members` shows it.
  control::members_reply view(clock::time_point now) const;

  /// Members per status, and how many changes were seen (for
  /// `herald_cluster_members{status}`, `herald_membership_changes_total`).
  std::map<control::member_status, size_t> counts() const;
  uint64_t changes_total() const noexcept;

  /// Records of other members refused since start (a name or stream held
  /// by another member that is not down or leaving), and second-hand
  /// records not taken because they would change a live member's
  /// endpoints (for `herald_member_claims_refused_total`). Every refused
  /// record counts, a repeated one each time it arrives.
  uint64_t claims_refused_total() const noexcept;

  /// Whether a seed answered (always true without seeds).
  bool joined() const noexcept;

  const membership_config& config() const noexcept;

private:
  struct state;
  std::unique_ptr<state> st_;

public:
  ~membership();
  membership(membership&&) noexcept;
  membership& operator=(membership&&) noexcept;
};

/// Whether record `incoming` overrides `known` of the same member (see the
/// file comment).
bool overrides(const control::cluster_member& incoming,
               const control::cluster_member& known) noexcept;

} // namespace herald::cluster
