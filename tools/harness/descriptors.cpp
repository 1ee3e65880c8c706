#include "descriptors.hpp"

#include <algorithm>
#include <filesystem>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace herald::harness {

void count_fd(std::string_view target, fd_counts& c) {
  ++c.total;
  if (target.starts_with("socket:"))
    ++c.sockets;
  else if (target == "anon_inode:[eventfd]")
    ++c.eventfds;
  else if (target == "anon_inode:[eventpoll]")
    ++c.epolls;
  else if (target.starts_with("pipe:"))
    ++c.pipes;
  else
    ++c.files;
}

std::optional<fd_counts> count_fds(pid_t pid) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it{fmt::format("/proc/{}/fd", pid), ec};
  if (ec)
    return std::nullopt;
  fd_counts c;
  for (; it != fs::directory_iterator{}; it.increment(ec)) {
    if (ec)
      return std::nullopt;
    // A descriptor closed since the listing: not counted.
    auto target = fs::read_symlink(it->path(), ec);
    if (!ec)
      count_fd(target.native(), c);
  }
  return c;
}

namespace {

struct kind {
  const char* name;
  int fd_counts::*field;
};

constexpr kind kinds[] = {{"sockets", &fd_counts::sockets},
                          {"eventfds", &fd_counts::eventfds},
                          {"epolls", &fd_counts::epolls},
                          {"pipes", &fd_counts::pipes},
                          {"files", &fd_counts::files}};

} // namespace

std::string excess(const fd_counts& before, const fd_counts& now,
                   int file_slack) {
  std::vector<std::string> over;
  for (auto& k : kinds) {
    auto slack = k.field == &fd_counts::files ? file_slack : 0;
    if (now.*k.field > before.*k.field + slack)
      over.push_back(
        fmt::format("{} {} > {}{}", k.name, now.*k.field, before.*k.field,
                    slack > 0 ? fmt::format(" + {}", slack) : std::string{}));
  }
  return fmt::format("{}", fmt::join(over, ", "));
}

bool returned(const fd_counts& before, const fd_counts& now, int file_slack) {
  return excess(before, now, file_slack).empty();
}

fd_counts max_of(const fd_counts& a, const fd_counts& b) {
  fd_counts m;
  m.total = std::max(a.total, b.total);
  for (auto& k : kinds)
    m.*k.field = std::max(a.*k.field, b.*k.field);
  return m;
}

payload to_json(const fd_counts& c) {
  payload j{{"total", c.total}};
  for (auto& k : kinds)
    j[k.name] = c.*k.field;
  return j;
}

} // namespace herald::harness
