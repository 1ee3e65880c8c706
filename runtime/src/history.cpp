#include "history.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"

namespace herald {

namespace {

caf::error io_error(std::string_view what, const std::string& path) {
  return make_error(errc::io_error, fmt::format("cannot {} '{}': {}", what,
                                                path, std::strerror(errno)));
}

// Writes `text` to `path` and syncs it.
caf::error write_synced(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return io_error("create", path);
  bool ok =
    ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())
    && ::fsync(fd) == 0;
  auto err = ok ? caf::error{} : io_error("write", path);
  ::close(fd);
  return err;
}

const char* outcome_name(handling_outcome o) {
  switch (o) {
  case handling_outcome::handled:
    return "handled";
  case handling_outcome::dead_lettered:
    return "dead_lettered";
  case handling_outcome::discarded:
    return "discarded";
  }
  return "unknown";
}

} // namespace

caf::expected<uint64_t> raise_incarnation(const std::string& data_dir,
                                          uint64_t at_least) {
  auto path = (std::filesystem::path{data_dir} / "incarnation").string();
  uint64_t n = 0;
  if (std::filesystem::exists(path)) {
    std::ifstream in{path};
    if (!(in >> n))
      return make_error(errc::corrupt_log,
                        fmt::format("'{}' holds no incarnation number; "
                                    "write the last one (or 0) into it, or "
                                    "delete it to start again from 1",
                                    path));
  }
  n = std::max(n + 1, at_least);
  auto aside = path + ".new";
  if (auto err = write_synced(aside, fmt::format("{}\n", n)))
    return err;
  if (::rename(aside.c_str(), path.c_str()) != 0)
    return io_error("rename to", path);
  int dir = ::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return n;
}

caf::expected<std::shared_ptr<history_file>>
history_file::open(const std::string& path, const node_config& cfg,
                   const std::string& stream, uint64_t incarnation,
                   std::shared_ptr<spdlog::logger> log) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(errc::io_error,
                      fmt::format("record: cannot open the history file "
                                  "'{}': {}; give a path in a folder that "
                                  "exists and is writable",
                                  path, std::strerror(errno)));
  std::shared_ptr<history_file> h{
    new history_file(fd, path, cfg.name, incarnation, std::move(log))};
  // A record cut short by a kill of the last run: start a fresh line.
  if (auto size = ::lseek(fd, 0, SEEK_END); size > 0) {
    char last = '\n';
    if (::pread(fd, &last, 1, size - 1) == 1 && last != '\n'
        && ::write(fd, "\n", 1) != 1)
      return make_error(errc::io_error,
                        fmt::format("record: cannot append to the history "
                                    "file '{}': {}",
                                    path, std::strerror(errno)));
  }
  nlohmann::json slow = nlohmann::json::object();
  for (auto& [key, d] : cfg.test_hooks.slow_keys)
    slow[key] = d.count() / 1000;
  nlohmann::json j{
    {"v", history_version},
    {"record", "start"},
    {"node", cfg.name},
    {"service", cfg.service},
    {"incarnation", incarnation},
    {"stream", stream},
    {"time_us", now_us()},
    {"test_hooks", cfg.test_hooks.enabled},
    {"fail_keys", cfg.test_hooks.fail_keys},
    {"slow_keys", std::move(slow)},
    {"commit_before_handle", cfg.test_hooks.commit_before_handle}};
  h->append(j.dump());
  return h;
}

history_file::history_file(int fd, std::string path, std::string node,
                           uint64_t incarnation,
                           std::shared_ptr<spdlog::logger> log)
    : fd_(fd), path_(std::move(path)), node_(std::move(node)),
      incarnation_(incarnation), log_(std::move(log)) {}

history_file::~history_file() {
  ::close(fd_);
}

template <class Make> void history_file::write(Make make) noexcept {
  try {
    // Keys and ids come from the network: bytes that are no UTF-8 are
    // replaced, not thrown about.
    append(
      make().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const std::exception& e) {
    log_->error("record: cannot write a history record to '{}': {}", path_,
                e.what());
  }
}

void history_file::finished(const handling& h) noexcept {
  write([&] {
    auto& ev = h.ev;
    // A redriven dead letter is handled under no lease.
    auto epoch = h.epoch == 0 ? nlohmann::json{} : nlohmann::json(h.epoch);
    return nlohmann::json{{"v", history_version},
                          {"record", "handling"},
                          {"consumer", h.consumer},
                          {"node", node_},
                          {"incarnation", incarnation_},
                          {"id", ev.id()},
                          {"stream", ev.stream()},
                          {"seq", ev.seq()},
                          {"key", ev.key()},
                          {"type", ev.type()},
                          {"attempt", h.attempt},
                          {"redelivered", ev.redelivered()},
                          {"outcome", outcome_name(h.outcome)},
                          {"start_us", h.start_us},
                          {"end_us", h.end_us},
                          {"partition", h.partition},
                          {"lease_epoch", epoch}};
  });
}

namespace {

// An offset record: a consumer's own (no partition) or a group's offset
// of one partition.
nlohmann::json offset_record(std::string_view consumer, std::string_view node,
                             uint64_t incarnation, std::string_view stream,
                             uint64_t offset, uint64_t time_us) {
  return nlohmann::json{{"v", history_version},       {"record", "offset"},
                        {"consumer", consumer},       {"node", node},
                        {"incarnation", incarnation}, {"stream", stream},
                        {"offset", offset},           {"time_us", time_us},
                        {"partition", nullptr},       {"lease_epoch", nullptr}};
}

} // namespace

void history_file::committed(std::string_view consumer, std::string_view stream,
                             uint64_t offset) noexcept {
  write([&] {
    return offset_record(consumer, node_, incarnation_, stream, offset,
                         now_us());
  });
}

void history_file::group_committed(const std::string& consumer,
                                   const std::string& stream,
                                   uint32_t partition, uint64_t epoch,
                                   uint32_t partitions,
                                   uint64_t offset) noexcept {
  try {
    std::lock_guard<std::mutex> guard{group_offsets_mtx_};
    auto& last = group_offsets_[{consumer, stream, partition}];
    if (offset <= last)
      return;
    last = offset;
  } catch (const std::exception& e) {
    log_->error("record: cannot note a group offset: {}", e.what());
    return;
  }
  write([&] {
    auto record =
      offset_record(consumer, node_, incarnation_, stream, offset, now_us());
    record["partition"] = partition;
    record["lease_epoch"] = epoch;
    record["partitions"] = partitions;
    return record;
  });
}

void history_file::append(std::string line) noexcept {
  line += '\n';
  // One write: O_APPEND puts the whole line at the end at once.
  auto n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size()))
    log_->error("record: cannot append to the history file '{}': {}", path_,
                n < 0 ? std::strerror(errno) : "short write");
}

} // namespace herald
