#pragma once

// Helpers of the tests that run nodes in the test process.

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "herald/core/errc.hpp"
#include "health.hpp"
#include "herald/runtime/node.hpp"

namespace herald {

// A data directory per node and test, removed when the test binary exits.
inline std::string temp_data_dir(const std::string& name) {
  static const auto root = [] {
    auto tmpl =
      (std::filesystem::temp_directory_path() / "herald-node-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    static struct cleanup {
      std::string dir;
      ~cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } remove{tmpl};
    return std::filesystem::path{tmpl};
  }();
  static int counter = 0;
  return (root / (name + "-" + std::to_string(++counter))).string();
}

inline node_config make_config(std::string name, std::string service) {
  node_config cfg;
  cfg.data_dir = temp_data_dir(name);
  cfg.name = std::move(name);
  cfg.service = std::move(service);
  cfg.catalog = HERALD_SOURCE_DIR "/config/events.yaml";
  cfg.log_level = "critical";
  return cfg;
}

inline consumer_config make_consumer(std::string name,
                                     std::vector<std::string> patterns) {
  consumer_config c;
  c.name = std::move(name);
  c.subscribe = std::move(patterns);
  return c;
}

inline std::unique_ptr<node> start(node_config cfg) {
  auto n = node::start(std::move(cfg));
  if (!n)
    FAIL("node did not start: " << message_of(n.error()));
  return std::move(*n);
}

inline std::string user_id(int i) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-%012x", i);
  return buf;
}

inline payload created(int i) {
  return {{"user_id", user_id(i)},
          {"email", "user" + std::to_string(i) + "@example.com"},
          {"registration_source", "web"}};
}

// GET /metrics of `n` (its `metrics_listen` set): the body.
inline std::string metrics_of(node& n) {
  return test::metrics_text(n.metrics_port());
}

} // namespace herald
