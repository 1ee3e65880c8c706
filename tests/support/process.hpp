#pragma once

/// Process helpers for the integration tests: run a command with a deadline
/// and capture its output, start one in the background, find a free port,
/// make a temporary folder. POSIX only, header-only.
///
/// Every wait here is bounded (deadline.hpp): a command that outlives its
/// deadline is killed and reported as `timed_out`.
///
/// Thread safety: none of these share state; use each object from one
/// thread.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "deadline.hpp"

extern char** environ;

namespace herald::test {

/// Quotes `text` for /bin/sh: `'...'` with embedded quotes escaped.
inline std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += "'";
  return out;
}

/// The whole content of `path`, or "" when it cannot be read.
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Writes `text` to `path`, replacing it.
inline void write_text(const std::filesystem::path& path,
                       const std::string& text) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << text;
}

/// A fresh folder under the system's temp folder, removed on destruction.
class temp_dir {
public:
  temp_dir() {
    auto tmpl =
      (std::filesystem::temp_directory_path() / "herald-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// The folder.
  const std::filesystem::path& path() const noexcept {
    return path_;
  }
  /// `name` inside the folder.
  std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }

private:
  std::filesystem::path path_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0,
/// then released).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a socket to 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// What a finished command left.
struct run_result {
  /// The exit status, 128 + signal when killed by one, -1 if unknown.
  int exit_code = -1;
  /// Whether the deadline passed and the command was killed.
  bool timed_out = false;
  std::string out;
  std::string err;
};

/// A shell command running in the background with stdout and stderr going
/// to files. Killed (SIGTERM, then SIGKILL) and reaped on destruction.
class child {
public:
  /// Starts `/bin/sh -c command` in its own process group.
  child(const std::string& command, std::filesystem::path out_file,
        std::filesystem::path err_file)
      : out_(std::move(out_file)), err_(std::move(err_file)) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own group: `kill` reaches the command's children too.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
    char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
    int rc = posix_spawn(&pid_, "/bin/sh", &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0)
      throw std::runtime_error("posix_spawn failed for: " + command);
  }

  ~child() {
    kill();
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  /// Waits at most `timeout` for the command to exit. Returns its exit
  /// status (128 + signal when killed by one), or nothing if it still runs.
  std::optional<int> wait_for(std::chrono::milliseconds timeout) {
    if (status_)
      return status_;
    auto exited = wait_until(
      [&] {
        int st = 0;
        if (::waitpid(pid_, &st, WNOHANG) != pid_)
          return false;
        status_ = WIFEXITED(st)     ? WEXITSTATUS(st)
                  : WIFSIGNALED(st) ? 128 + WTERMSIG(st)
                                    : -1;
        return true;
      },
      timeout, std::chrono::milliseconds{10});
    return exited ? status_ : std::nullopt;
  }

  /// Ends the command's process group if it still runs and reaps it.
  void kill() {
    if (status_ || pid_ <= 0)
      return;
    ::kill(-pid_, SIGTERM);
    if (!wait_for(std::chrono::seconds{5})) {
      ::kill(-pid_, SIGKILL);
      wait_for(std::chrono::seconds{5});
    }
  }

  /// Sends `sig` to the command's process group (e.g. SIGKILL for a
  /// crash, SIGSTOP for a pause); returns whether it was sent.
  bool signal(int sig) {
    return !status_ && pid_ > 0 && ::kill(-pid_, sig) == 0;
  }

  /// What the command wrote to stdout so far.
  std::string out() const {
    return read_text(out_);
  }
  /// What the command wrote to stderr so far.
  std::string err() const {
    return read_text(err_);
  }

private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path out_;
  std::filesystem::path err_;
};

/// Runs the shell command `command`, waiting at most `deadline`; captures
/// stdout and stderr separately.
inline run_result run(const std::string& command,
                      std::chrono::milliseconds deadline) {
  temp_dir dir;
  run_result result;
  child c{command, dir / "out", dir / "err"};
  auto status = c.wait_for(deadline);
  if (!status) {
    result.timed_out = true;
    c.kill();
  } else {
    result.exit_code = *status;
  }
  result.out = c.out();
  result.err = c.err();
  return result;
}

/// Runs the shell command `command` through popen under `timeout SECONDS`
/// (coreutils: exit code 124 when it fired), stderr merged into stdout.
inline run_result run_merged(const std::string& command, int seconds) {
  run_result result;
  auto full = "timeout -k 10 " + std::to_string(seconds) + " /bin/sh -c "
              + shell_quote(command) + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr)
    throw std::runtime_error("popen failed for: " + command);
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0)
    result.out.append(buf, n);
  int st = ::pclose(pipe);
  result.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  result.timed_out = result.exit_code == 124;
  return result;
}

/// Polls until `path` exists and is not empty, at most `timeout`; returns
/// its content, or nothing.
inline std::optional<std::string>
wait_for_file(const std::filesystem::path& path,
              std::chrono::milliseconds timeout) {
  std::string text;
  if (!wait_until(
        [&] {
          text = read_text(path);
          return !text.empty();
        },
        timeout, std::chrono::milliseconds{20}))
    return std::nullopt;
  return text;
}

/// Waits at most `timeout` until `c` printed a complete line containing
/// `marker` on stdout; returns what follows `marker` on the first such
/// line, or nothing. E.g. `wait_for_line(producer, "publishing on ", 20s)`
/// is the endpoint an example producer announces.
inline std::optional<std::string>
wait_for_line(const child& c, const std::string& marker,
              std::chrono::milliseconds timeout) {
  std::optional<std::string> rest;
  auto found = wait_until(
    [&] {
      auto out = c.out();
      auto at = out.find(marker);
      if (at == std::string::npos)
        return false;
      auto from = at + marker.size();
      auto end = out.find('\n', from);
      if (end == std::string::npos)
        return false;
      rest = out.substr(from, end - from);
      return true;
    },
    timeout, std::chrono::milliseconds{20});
  return found ? rest : std::nullopt;
}

} // namespace herald::test
