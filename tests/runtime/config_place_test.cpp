// Config errors found only when a node starts (a catalog file that cannot
// be read, an endpoint that cannot be bound, a data directory that cannot
// be opened, a subscription the catalog does not allow) name the config
// file and line, as those found while loading it do.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "herald/core/config.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"

using namespace herald;

namespace {

// Writes `yaml` as `node.yaml` in a fresh folder, loads it and starts a
// node from it; returns the start's error message ("" when it started).
struct config_file {
  std::filesystem::path dir = temp_data_dir("config-place");
  std::string path;

  explicit config_file(const std::string& yaml) {
    std::filesystem::create_directories(dir);
    path = (dir / "node.yaml").string();
    std::ofstream{path} << yaml;
  }

  std::string start_error() const {
    auto cfg = node_config::load_file(path);
    if (!cfg)
      return message_of(cfg.error());
    cfg->log_level = "critical";
    // A file without data_dir would put the node's data under the working
    // directory: this test's folder takes it instead.
    std::ifstream in{path};
    std::string text{std::istreambuf_iterator<char>{in}, {}};
    if (text.find("data_dir:") == std::string::npos)
      cfg->data_dir = (dir / "data").string();
    auto n = node::start(std::move(*cfg));
    return n ? std::string{} : message_of(n.error());
  }
};

std::string seed_catalog() {
  return HERALD_SOURCE_DIR "/config/events.yaml";
}

} // namespace

TEST_CASE("a missing catalog file is reported with the config file and line",
          "[runtime][config]") {
  config_file f{"node: n\nservice: UserService\ncatalog: missing.yaml\n"};
  auto message = f.start_error();
  CHECK_THAT(message,
             Catch::StartsWith(f.path + ":3: catalog: cannot read catalog '"
                               + (f.dir / "missing.yaml").string() + "'"));
}

TEST_CASE("a catalog with problems is reported behind the config's catalog "
          "line",
          "[runtime][config]") {
  config_file f{"node: n\ncatalog: bad.yaml\n"};
  std::ofstream{f.dir / "bad.yaml"} << "events: 5\n";
  CHECK_THAT(f.start_error(),
             Catch::StartsWith(f.path
                               + ":2: catalog: " + (f.dir / "bad.yaml").string()
                               + ":1: 'events' must be a map"));
}

TEST_CASE("a bind value that cannot be bound is reported with the config "
          "file and line",
          "[runtime][config]") {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
  config_file f{"node: n\ncatalog: " + seed_catalog()
                + "\nbind: tcp://192.0.2.1:5600\n"};
  CHECK_THAT(f.start_error(),
             Catch::StartsWith(f.path
                               + ":3: bind: cannot bind the PUB "
                                 "endpoint 'tcp://192.0.2.1:5600'"));
  config_file control{"node: n\ncatalog: " + seed_catalog()
                      + "\nlog_level: warn\ncontrol: tcp://192.0.2.1:5601\n"};
  CHECK_THAT(control.start_error(),
             Catch::StartsWith(control.path
                               + ":4: control: cannot bind the control "
                                 "endpoint 'tcp://192.0.2.1:5601'"));
}

TEST_CASE("a data directory that cannot be opened is reported with the "
          "config file and line",
          "[runtime][config]") {
  config_file f{"node: n\ncatalog: " + seed_catalog() + "\n"};
  // A file where the directory should be.
  auto blocked = (f.dir / "blocked").string();
  std::ofstream{blocked} << "x";
  std::ofstream{f.path, std::ios::app} << "data_dir: " << blocked << "\n";
  CHECK_THAT(f.start_error(), Catch::StartsWith(f.path + ":3: data_dir: "));
}

TEST_CASE("metrics.listen that cannot be served is reported with the config "
          "file and line",
          "[runtime][config]") {
  config_file f{"node: n\ncatalog: " + seed_catalog()
                + "\nmetrics:\n  listen: 127.0.0.1:abc\n"};
  CHECK_THAT(f.start_error(),
             Catch::StartsWith(f.path
                               + ":4: metrics.listen '127.0.0.1:abc': "
                                 "expected HOST:PORT"));
}

TEST_CASE("a subscription the catalog does not allow is reported with the "
          "config file and line",
          "[runtime][config]") {
  config_file f{"node: n\ncatalog: " + seed_catalog()
                + "\nconsumers:\n  Billing:\n    subscribe:\n"
                  "      - user.account.created\n"};
  CHECK_THAT(f.start_error(),
             Catch::StartsWith(f.path + ":6: consumers.Billing.subscribe: "));
}
