#pragma once

/// The network and disks of a run in `--mode netns`: one Linux network
/// namespace per host, each with a veth pair whose other end is on a
/// bridge made for the run, and a private IPv4 /24 chosen per run
/// (10.A.B.0/24, A in 160..223; the bridge is .1, the harness' own
/// address, and host i is .(i+2)); partitions as nftables rules inside
/// the cut hosts' namespaces; and small tmpfs mounts for disk-full faults
/// (in either mode).
///
/// Names are short and unique per run (Linux interface names are at most
/// 15 characters, IFNAMSIZ - 1): bridge `hzb<ID>`, host ends of the veths
/// `hzv<ID>-<i>`, namespaces `herald-<ID>-<i>`, with ID six hex digits.
///
/// Everything is written to a record *before* it is made, in the run's
/// folder (`netns.record`) and in the well-known folder
/// `/run/herald-harness/` (`ID.record`), so that `cleanup` removes it at
/// the end of the run whatever its outcome, and `clean_records` (behind
/// `herald harness clean`) after a harness that was killed (SIGKILL).
///
/// Only addresses of the run's own /24 are ever put in a rule or a route.
/// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and the `ip` (iproute2) and
/// `nft` (nftables) commands.
///
/// Thread safety: a `testbed` is used from one thread.

#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace herald::harness {

/// The well-known folder of the records of runs that made namespaces,
/// bridges or mounts.
inline constexpr std::string_view record_dir = "/run/herald-harness";

class testbed {
public:
  /// A testbed that made nothing yet; `record` is the run's record file.
  explicit testbed(std::string record);
  testbed(const testbed&) = delete;
  testbed& operator=(const testbed&) = delete;
  /// Removes everything it made (`cleanup`).
  ~testbed();

  /// Makes the bridge and one namespace per host in `hosts` (labels, in
  /// order), each with its address. Fails with `errc::io_error` naming the
  /// command that failed and its output; what was made is still removed
  /// by `cleanup`.
  caf::error make_network(const std::vector<std::string>& hosts);

  /// The address of `host` (a label given to `make_network`), or of the
  /// harness itself for "" (the bridge's).
  std::string address(const std::string& host) const;

  /// The namespace's path (`/run/netns/NAME`) of `host`, for `setns(2)`.
  std::string netns_path(const std::string& host) const;

  /// Drops the traffic between the hosts of `cut` and every other host:
  /// both ways, or with `one_way` only what the others send to `cut` (the
  /// cut hosts still send). The harness' own address is never dropped: it
  /// keeps publishing and asking. Replaces a partition in place.
  caf::error partition(const std::vector<std::string>& cut, bool one_way);

  /// Removes every partition rule.
  caf::error heal_partitions();

  /// Mounts a tmpfs of `bytes` on `dir` (made if missing).
  caf::error mount_tmpfs(const std::string& dir, uint64_t bytes);

  /// Removes everything it made, in reverse order; idempotent. Returns
  /// false when something could not be removed (said on stderr).
  bool cleanup();

  /// The run's id (six hex digits).
  const std::string& id() const noexcept {
    return id_;
  }

private:
  caf::error note(std::string_view kind, const std::string& name);
  std::string record_, id_, prefix_;
  std::string bridge_;
  std::map<std::string, int> hosts_;
  std::vector<std::string> netns_, mounts_;
  bool partitioned_ = false;
};

/// Removes what the records of killed runs name: every record in each
/// folder of `dirs` (`netns.record` of a run folder) and in `record_dir`
/// whose owner (the harness' pid) is gone. Says what it removed on
/// stdout; returns false when something could not be removed.
bool clean_records(const std::vector<std::string>& run_dirs);

/// Runs `argv` (argv[0] looked up in PATH), waits at most 10 s; fails
/// with `errc::io_error` naming the command and its output.
caf::error run_tool(const std::vector<std::string>& argv,
                    std::string* output = nullptr);

} // namespace herald::harness
