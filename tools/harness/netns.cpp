#include "netns.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"

namespace herald::harness {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view nft_table = "herald_partition";

// Whether a record's owner (a harness) still runs: then its objects are
// in use, and not leftovers.
bool owner_alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0)
    return false;
  std::ifstream cmd{fmt::format("/proc/{}/cmdline", pid)};
  std::string all{std::istreambuf_iterator<char>{cmd}, {}};
  return all.find("harness") != std::string::npos;
}

bool link_exists(const std::string& name) {
  return fs::exists(fs::path{"/sys/class/net"} / name);
}

bool netns_exists(const std::string& name) {
  return fs::exists(fs::path{"/run/netns"} / name);
}

// SIGKILLs every process in namespace `ns` (the nodes of a killed run die
// with it already: PR_SET_PDEATHSIG; this is for anything else).
void kill_members(const std::string& ns) {
  std::string pids;
  if (run_tool({"ip", "netns", "pids", ns}, &pids))
    return;
  std::istringstream in{pids};
  for (pid_t pid = 0; in >> pid;)
    if (pid > 1)
      ::kill(pid, SIGKILL);
}

// Removes what one record names; false when something stays.
bool remove_recorded(
  const std::vector<std::pair<std::string, std::string>>& items, bool quiet) {
  bool ok = true;
  auto say = [&](const std::string& what) {
    if (!quiet)
      fmt::print("removed {}\n", what);
  };
  // Reverse order: mounts and namespaces before the bridge they hang on.
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    auto& [kind, name] = *it;
    if (kind == "mount") {
      if (::umount2(name.c_str(), MNT_DETACH) == 0)
        say("mount " + name);
      else if (errno != EINVAL && errno != ENOENT) {
        fmt::print(stderr, "cannot unmount {}: {}\n", name,
                   std::strerror(errno));
        ok = false;
      }
    } else if (kind == "netns" && name.starts_with("herald-")) {
      if (!netns_exists(name))
        continue;
      kill_members(name);
      if (auto err = run_tool({"ip", "netns", "delete", name})) {
        fmt::print(stderr, "{}\n", message_of(err));
        ok = false;
      } else {
        say("network namespace " + name);
      }
    } else if (kind == "link" && name.starts_with("hz")) {
      if (!link_exists(name))
        continue;
      if (auto err = run_tool({"ip", "link", "delete", name})) {
        fmt::print(stderr, "{}\n", message_of(err));
        ok = false;
      } else {
        say("link " + name);
      }
    }
  }
  return ok;
}

using record_items = std::vector<std::pair<std::string, std::string>>;

// Reads a record: `owner PID`, `id ID`, then `KIND NAME` lines.
record_items read_record(const fs::path& path, pid_t& owner, std::string& id) {
  record_items items;
  std::ifstream in{path};
  for (std::string line; std::getline(in, line);) {
    auto space = line.find(' ');
    if (space == std::string::npos)
      continue;
    auto kind = line.substr(0, space), name = line.substr(space + 1);
    if (kind == "owner")
      owner = static_cast<pid_t>(std::atol(name.c_str()));
    else if (kind == "id")
      id = name;
    else
      items.emplace_back(kind, name);
  }
  return items;
}

} // namespace

caf::error run_tool(const std::vector<std::string>& argv, std::string* output) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return make_error(errc::io_error,
                      fmt::format("cannot run '{}': {}", fmt::join(argv, " "),
                                  std::strerror(errno)));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return make_error(errc::io_error,
                      fmt::format("cannot run '{}': {}", fmt::join(argv, " "),
                                  std::strerror(errno)));
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    pollfd p{fds[0], POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    auto n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0)
      break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (output != nullptr)
    *output = out;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return {};
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return make_error(
    errc::io_error,
    fmt::format("'{}' failed ({}): {}{}", fmt::join(argv, " "),
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
                out.empty() ? "no output" : out,
                WIFEXITED(st) && WEXITSTATUS(st) == 127
                  ? "; is it installed (iproute2, nftables)?"
                  : ""));
}

testbed::testbed(std::string record) : record_(std::move(record)) {
  std::random_device rd;
  id_ = fmt::format("{:06x}", rd() & 0xffffffu);
}

testbed::~testbed() {
  cleanup();
}

caf::error testbed::note(std::string_view kind, const std::string& name) {
  std::error_code ec;
  fs::create_directories(record_dir, ec);
  auto shared = fs::path{record_dir} / (id_ + ".record");
  bool first = !fs::exists(record_);
  for (auto& path : {fs::path{record_}, shared}) {
    std::ofstream out{path, std::ios::app};
    if (first)
      out << "owner " << ::getpid() << "\nid " << id_ << '\n';
    out << kind << ' ' << name << '\n';
    out.flush();
    if (!out)
      return make_error(errc::io_error,
                        fmt::format("cannot write the record {}; nothing "
                                    "is made that could not be removed",
                                    path.string()));
  }
  return {};
}

caf::error testbed::make_network(const std::vector<std::string>& hosts) {
  // A /24 no interface of this machine uses yet.
  std::string used;
  (void)run_tool({"ip", "-4", "-o", "addr", "show"}, &used);
  std::string routes;
  (void)run_tool({"ip", "-4", "route", "show", "table", "all"}, &routes);
  used += routes;
  std::random_device rd;
  for (int tries = 0;; ++tries) {
    auto r = rd();
    prefix_ = fmt::format("10.{}.{}.", 160 + r % 64, (r >> 8) % 256);
    if (used.find(prefix_) == std::string::npos)
      break;
    if (tries > 50)
      return make_error(errc::io_error,
                        "cannot find a free private /24 in 10.160.0.0/10 "
                        "for the run's network");
  }
  bridge_ = "hzb" + id_;
  if (auto err = note("link", bridge_))
    return err;
  for (auto& cmd : std::vector<std::vector<std::string>>{
         {"ip", "link", "add", bridge_, "type", "bridge"},
         {"ip", "addr", "add", prefix_ + "1/24", "dev", bridge_},
         {"ip", "link", "set", bridge_, "up"}})
    if (auto err = run_tool(cmd))
      return err;
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto ns = fmt::format("herald-{}-{}", id_, i);
    auto veth = fmt::format("hzv{}-{}", id_, i);
    auto peer = fmt::format("hzp{}-{}", id_, i);
    if (auto err = note("netns", ns))
      return err;
    netns_.push_back(ns);
    if (auto err = run_tool({"ip", "netns", "add", ns}))
      return err;
    hosts_[hosts[i]] = static_cast<int>(i);
    if (auto err = note("link", veth))
      return err;
    auto addr = fmt::format("{}{}/24", prefix_, i + 2);
    for (auto& cmd : std::vector<std::vector<std::string>>{
           {"ip", "link", "add", veth, "type", "veth", "peer", "name", peer,
            "netns", ns},
           {"ip", "link", "set", veth, "master", bridge_, "up"},
           {"ip", "-n", ns, "link", "set", peer, "name", "eth0"},
           {"ip", "-n", ns, "addr", "add", addr, "dev", "eth0"},
           {"ip", "-n", ns, "link", "set", "eth0", "up"},
           {"ip", "-n", ns, "link", "set", "lo", "up"}})
      if (auto err = run_tool(cmd))
        return err;
  }
  return {};
}

std::string testbed::address(const std::string& host) const {
  if (host.empty())
    return prefix_ + "1";
  return fmt::format("{}{}", prefix_, hosts_.at(host) + 2);
}

std::string testbed::netns_path(const std::string& host) const {
  return "/run/netns/" + netns_.at(static_cast<size_t>(hosts_.at(host)));
}

caf::error testbed::partition(const std::vector<std::string>& cut,
                              bool one_way) {
  if (auto err = heal_partitions())
    return err;
  std::vector<std::string> others;
  for (auto& [host, i] : hosts_)
    if (std::find(cut.begin(), cut.end(), host) == cut.end())
      others.push_back(address(host));
  if (others.empty())
    return {};
  auto set = fmt::format("{{ {} }}", fmt::join(others, ", "));
  auto script =
    fmt::format("add table inet {0}; add chain inet {0} in {{ type filter "
                "hook input priority 0; policy accept; }}; add rule inet {0} "
                "in ip saddr {1} drop",
                nft_table, set);
  if (!one_way)
    script += fmt::format("; add chain inet {0} out {{ type filter hook "
                          "output priority 0; policy accept; }}; add rule "
                          "inet {0} out ip daddr {1} drop",
                          nft_table, set);
  partitioned_ = true;
  for (auto& host : cut)
    if (auto err = run_tool({"ip", "netns", "exec",
                             netns_.at(static_cast<size_t>(hosts_.at(host))),
                             "nft", script}))
      return err;
  return {};
}

caf::error testbed::heal_partitions() {
  if (!partitioned_)
    return {};
  for (auto& ns : netns_) {
    std::string out;
    if (run_tool({"ip", "netns", "exec", ns, "nft", "list", "tables"}, &out))
      continue;
    if (out.find(nft_table) == std::string::npos)
      continue;
    if (auto err = run_tool({"ip", "netns", "exec", ns, "nft", "delete",
                             "table", "inet", std::string{nft_table}}))
      return err;
  }
  partitioned_ = false;
  return {};
}

caf::error testbed::mount_tmpfs(const std::string& dir, uint64_t bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto path = fs::absolute(dir).lexically_normal().string();
  if (auto err = note("mount", path))
    return err;
  auto opts = fmt::format("size={},mode=0755", bytes);
  if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              opts.c_str())
      != 0)
    return make_error(errc::io_error,
                      fmt::format("cannot mount a tmpfs of {} bytes on {}: "
                                  "{}; disk_full needs root",
                                  bytes, path, std::strerror(errno)));
  mounts_.push_back(path);
  return {};
}

bool testbed::cleanup() {
  if (!fs::exists(record_))
    return true;
  pid_t owner = 0;
  std::string id;
  auto items = read_record(record_, owner, id);
  bool ok = remove_recorded(items, true);
  mounts_.clear();
  netns_.clear();
  hosts_.clear();
  if (ok) {
    std::error_code ec;
    fs::remove(record_, ec);
    fs::remove(fs::path{record_dir} / (id_ + ".record"), ec);
  }
  return ok;
}

bool clean_records(const std::vector<std::string>& run_dirs) {
  std::vector<fs::path> records;
  std::error_code ec;
  for (auto& d : run_dirs)
    if (fs::exists(fs::path{d} / "netns.record"))
      records.push_back(fs::path{d} / "netns.record");
  for (auto& e : fs::directory_iterator{record_dir, ec})
    if (e.path().extension() == ".record")
      records.push_back(e.path());
  bool ok = true;
  for (auto& r : records) {
    if (!fs::exists(r))
      continue;
    pid_t owner = 0;
    std::string id;
    auto items = read_record(r, owner, id);
    if (owner_alive(owner)) {
      fmt::print("kept {}: its harness (pid {}) still runs\n", r.string(),
                 owner);
      continue;
    }
    if (!remove_recorded(items, false)) {
      ok = false;
      continue;
    }
    fs::remove(r, ec);
    if (!id.empty())
      fs::remove(fs::path{record_dir} / (id + ".record"), ec);
  }
  return ok;
}

} // namespace herald::harness
