// A node whose disk fills up: publishing fails naming the data directory,
// /healthz says why, and both clear once another process frees space,
// without a restart.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>

#include "deadline.hpp"
#include "health.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "process.hpp"
#include "tmpfs.hpp"

using namespace herald;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Fills the file system of `dir` with a file of its own until at most
// `leave` bytes (and less than one 16 KiB chunk more) are free, as
// another process would; the file's path.
fs::path fill(const fs::path& dir, size_t leave) {
  auto filler = dir / "filler";
  std::string chunk(size_t{16} << 10, 'x');
  std::ofstream out{filler, std::ios::binary};
  while (fs::space(dir).available > leave + chunk.size()) {
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    out.flush();
    REQUIRE(out);
  }
  return filler;
}

} // namespace

TEST_CASE("a full disk shows in /healthz and clears once space is freed, "
          "with nothing written and without a restart",
          "[runtime][disk_full]") {
  test::temp_dir dir;
  test::tmpfs_mount disk{dir.path() / "disk", "8m"};
  if (!disk.mounted) {
    WARN("cannot mount a tmpfs (needs root; CI runs as root): skipped");
    return;
  }
  auto cfg = make_config("user-node", "UserService");
  cfg.data_dir = (disk.at / "data").string();
  cfg.metrics_listen = "127.0.0.1:0";
  std::ostringstream log;
  cfg.log_level = "info";
  cfg.log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto n = start(cfg);
  test::healthz health{n->metrics_port()};
  REQUIRE(health().first == 200);

  // Another process fills the disk but for about 100 KiB.
  auto filler = fill(disk.at, size_t{100} << 10);
  // Publish until one is not stored.
  caf::error failure;
  int i = 0;
  for (; i < 20000 && !failure; ++i) {
    auto r = n->bus().publish("user.account.created", created(i));
    REQUIRE(r);
    failure = test::get_within(*r->durable, 10s);
  }
  REQUIRE(failure);
  CHECK_THAT(message_of(failure), Catch::Contains(cfg.data_dir));
  // 100 more publishes fail, one commit group each: the log says so once,
  // not once a group.
  auto began = std::chrono::steady_clock::now();
  for (int k = 0; k < 100; ++k) {
    auto r = n->bus().publish("user.account.created", created(++i));
    REQUIRE(r);
    CHECK(test::get_within(*r->durable, 10s));
  }
  auto not_stored = [&] {
    auto text = log.str();
    size_t count = 0;
    for (size_t at = 0; (at = text.find("not stored", at)) != std::string::npos;
         ++at)
      ++count;
    return count;
  };
  // The first failure, then a summary every 10 s at most.
  auto took = std::chrono::steady_clock::now() - began;
  CHECK(not_stored() <= 2 + static_cast<size_t>(took / 10s));
  auto sick = health();
  CHECK(sick.first == 503);
  CHECK_THAT(sick.second, Catch::Contains("the event log cannot be written"));

  fs::remove(filler);
  // Health clears by itself, with nothing published meanwhile.
  CHECK(test::wait_until(
    [&] {
      return health().first == 200;
    },
    15s, 100ms));
  // The next publish is stored, with no restart.
  REQUIRE(test::wait_until(
    [&] {
      auto r = n->bus().publish("user.account.created", created(++i));
      return r && !test::get_within(*r->durable, 10s);
    },
    15s, 100ms));
  auto well = health();
  CHECK(well.first == 200);
  CHECK(well.second == "ok\n");
  n->stop();
  // The failures not logged one by one are summed up once it recovered.
  CHECK_THAT(log.str(), Catch::Contains("commit groups were not stored")
                          && Catch::Contains("the event log is written again"));
}
