// A node whose disk fills up: publishing fails naming the data directory,
// /healthz says why, and both clear once another process frees space,
// without a restart.

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <httplib.h>

#include "deadline.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "process.hpp"
#include "tmpfs.hpp"

using namespace herald;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_CASE("a full disk shows in /healthz and clears once space is freed, "
          "without a restart",
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
  auto n = start(cfg);
  httplib::Client http{"127.0.0.1", n->metrics_port()};
  http.set_read_timeout(5s);
  auto health = [&] {
    auto r = http.Get("/healthz");
    REQUIRE(r);
    return std::make_pair(r->status, r->body);
  };
  REQUIRE(health().first == 200);

  // Another process fills the disk but for about 100 KiB.
  auto filler = disk.at / "filler";
  {
    std::string chunk(size_t{16} << 10, 'x');
    std::ofstream out{filler, std::ios::binary};
    while (fs::space(disk.at).available > (size_t{100} << 10) + chunk.size()) {
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      out.flush();
      REQUIRE(out);
    }
  }
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
  auto sick = health();
  CHECK(sick.first == 503);
  CHECK_THAT(sick.second, Catch::Contains("the event log cannot be written"));

  fs::remove(filler);
  // The next publish is stored, and health is back, with no restart.
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
}
