#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald::harness {

namespace {

bool is_executable(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec)
         && ::access(p.c_str(), X_OK) == 0;
}

int decode_status(int st) {
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return 255;
}

} // namespace

std::optional<std::string>
find_executable(const std::string& name, const std::vector<std::string>& dirs) {
  if (name.find('/') != std::string::npos)
    return is_executable(name) ? std::optional<std::string>{name}
                               : std::nullopt;
  for (auto& d : dirs)
    if (auto p = std::filesystem::path{d} / name; is_executable(p))
      return p.lexically_normal().string();
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest{path};
    while (!rest.empty()) {
      auto colon = rest.find(':');
      auto dir = rest.substr(0, colon);
      if (auto p = std::filesystem::path{std::string{dir}} / name;
          !dir.empty() && is_executable(p))
        return p.string();
      if (colon == std::string_view::npos)
        break;
      rest.remove_prefix(colon + 1);
    }
  }
  return std::nullopt;
}

caf::expected<uint16_t> free_port(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return make_error(errc::io_error, fmt::format("cannot make a socket: {}",
                                                  std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return make_error(errc::invalid_config,
                      fmt::format("host '{}' is no IPv4 address; use e.g. "
                                  "127.0.0.1",
                                  host));
  }
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto why = std::strerror(errno);
    ::close(fd);
    return make_error(
      errc::io_error,
      fmt::format("cannot find a free port on {}: {}", host, why));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

child::child(child&& other) noexcept
    : pid_(other.pid_), status_(other.status_) {
  other.pid_ = -1;
}

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    kill();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

child::~child() {
  kill();
}

caf::expected<child> child::start(const std::vector<std::string>& argv,
                                  const std::string& out,
                                  const std::string& err,
                                  const std::vector<std::string>& env,
                                  const std::string& netns) {
  // Everything the child needs is made before the fork: after it, only
  // async-signal-safe calls.
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view var{*e};
    auto name = var.substr(0, var.find('=') + 1);
    bool replaced = false;
    for (auto& extra : env)
      replaced = replaced || std::string_view{extra}.starts_with(name);
    if (!replaced)
      envp.push_back(*e);
  }
  for (auto& extra : env)
    envp.push_back(const_cast<char*>(extra.c_str()));
  envp.push_back(nullptr);
  int ns_fd = -1;
  if (!netns.empty()) {
    ns_fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0)
      return make_error(errc::io_error,
                        fmt::format("cannot open the network namespace {} "
                                    "for '{}': {}",
                                    netns, argv.front(), std::strerror(errno)));
  }
  int out_fd =
    ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int err_fd =
    ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0 || err_fd < 0) {
    auto why = std::strerror(errno);
    if (out_fd >= 0)
      ::close(out_fd);
    if (err_fd >= 0)
      ::close(err_fd);
    if (ns_fd >= 0)
      ::close(ns_fd);
    return make_error(errc::io_error,
                      fmt::format("cannot open the output files of '{}': {}",
                                  argv.front(), why));
  }
  auto parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out_fd);
    ::close(err_fd);
    if (ns_fd >= 0)
      ::close(ns_fd);
    return make_error(
      errc::io_error,
      fmt::format("cannot start '{}': {}", argv.front(), std::strerror(errno)));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127); // the harness died before the prctl
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      ::dup2(devnull, STDIN_FILENO);
    // A fresh signal state: the harness blocks or catches some.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0)
      ::_exit(126);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  if (ns_fd >= 0)
    ::close(ns_fd);
  return child{pid};
}

bool child::running() {
  if (pid_ < 0)
    return false;
  int st = 0;
  auto r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(st);
    pid_ = -1;
    return false;
  }
  return r == 0;
}

void child::signal(int sig) {
  if (running())
    ::kill(pid_, sig);
}

bool child::wait_for(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return true;
}

int child::stop(std::chrono::milliseconds grace) {
  signal(SIGCONT);
  signal(SIGTERM);
  if (!wait_for(grace))
    kill();
  return status_.value_or(255);
}

void child::kill() {
  if (pid_ < 0)
    return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  if (::waitpid(pid_, &st, 0) == pid_)
    status_ = decode_status(st);
  pid_ = -1;
}

} // namespace herald::harness
