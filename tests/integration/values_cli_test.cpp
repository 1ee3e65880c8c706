// The value table (tests/support/value_cases.hpp) through the CLI, as a
// user publishes: `herald publish --control` through a running node and
// `herald publish --standalone` from a throw-away one give every row the
// verdict the C++ path gives, and what they publish (read back from the
// nodes' logs with `herald tail --from-start`) is the canonical form.

#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "deadline.hpp"
#include "process.hpp"
#include "value_cases.hpp"

using namespace std::chrono_literals;
using herald::payload;
using herald::test::child;
using herald::test::run;
using herald::test::shell_quote;
using herald::test::temp_dir;
using herald::test::verdict;
using herald::test::write_text;

namespace {

const std::string bin = HERALD_BINARY_DIR;
const std::string herald_exe = shell_quote(bin + "/tools/herald");

std::string node_yaml(const temp_dir& dir, const std::string& name,
                      const std::string& extra) {
  return "node: " + name + "\nservice: TestService\ncatalog: "
         + (dir / "values.yaml").string() + "\ndata_dir: "
         + (dir / (name + ".data")).string() + "\nlog_level: warn\n" + extra;
}

// The JSON lines `herald tail` printed, by event id.
std::map<std::string, payload> tailed(const child& tail) {
  std::map<std::string, payload> out;
  std::istringstream in{tail.out()};
  for (std::string line; std::getline(in, line);) {
    try {
      auto ev = payload::parse(line);
      out[ev.at("id").get<std::string>()] = ev;
    } catch (const std::exception&) {
      // A line still being written.
    }
  }
  return out;
}

// What one publish path did with one row.
struct outcome {
  bool published = false;
  std::string id;
  std::string error;
};

void check_row(const herald::test::value_case& c, const payload& sent,
               const outcome& got, const std::map<std::string, payload>& seen,
               const std::string& tag) {
  INFO(herald::test::describe(c));
  if (c.outcome == verdict::refused) {
    CHECK_FALSE(got.published);
    CHECK_THAT(got.error, Catch::Contains(std::string{c.expect}));
    return;
  }
  INFO("stderr: " << got.error);
  REQUIRE(got.published);
  auto it = seen.find(got.id);
  REQUIRE(it != seen.end());
  auto key = it->second.at("key").get<std::string>();
  herald::test::check_published(c, sent, it->second.at("data"), &key, tag);
}

} // namespace

TEST_CASE("herald publish --control and --standalone give every row of the "
          "value table the C++ path's verdict",
          "[integration][cli][values]") {
  temp_dir dir;
  write_text(dir / "values.yaml", herald::test::value_catalog_yaml());
  // The throw-away nodes of --standalone keep their log here; a node
  // started on it afterwards serves what they published.
  write_text(dir / "standalone.yaml", node_yaml(dir, "standalone", ""));
  auto consumer = std::string{"consumers:\n  TestConsumer:\n"
                              "    subscribe: [test.value.*]\n"};
  write_text(dir / "served.yaml", node_yaml(dir, "standalone", consumer));
  write_text(dir / "tail.yaml", node_yaml(dir, "tail", ""));

  // Starts the node of `config` (reporting to `name`.ep), and a tail that
  // reads its stream from the start.
  auto serve = [&](const std::string& config, const std::string& name) {
    auto node = std::make_unique<child>(
      "exec " + bin
        + "/tests/herald_test_service --service TestConsumer --config "
        + shell_quote((dir / config).string()) + " --quiet --endpoint-file "
        + shell_quote((dir / (name + ".ep")).string()) + " --control-file "
        + shell_quote((dir / (name + ".ctl")).string()),
      dir / (name + ".out"), dir / (name + ".err"));
    auto ep = herald::test::wait_for_file(dir / (name + ".ep"), 20s);
    INFO("node stderr: " << node->err());
    REQUIRE(ep);
    auto tail = std::make_unique<child>(
      herald_exe + " tail --config " + shell_quote((dir / "tail.yaml").string())
        + " --from-start --peer " + shell_quote(ep->substr(0, ep->size() - 1))
        + " 'test.value.*'",
      dir / (name + ".tail.out"), dir / (name + ".tail.err"));
    return std::pair{std::move(node), std::move(tail)};
  };
  // The node --control publishes through.
  write_text(dir / "node.yaml", node_yaml(dir, "value-node", consumer));
  auto [node, tail_control] = serve("node.yaml", "node");
  auto ctl = herald::test::wait_for_file(dir / "node.ctl", 20s);
  REQUIRE(ctl);
  auto control = ctl->substr(0, ctl->size() - 1);

  const auto& cases = herald::test::value_cases();
  std::vector<payload> sent;
  std::vector<outcome> by_control, by_standalone;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    INFO(herald::test::describe(c));
    sent.push_back(herald::test::value_payload(c, "row-" + std::to_string(i)));
    auto type = "test.value." + std::string{c.type};
    auto json = shell_quote(sent.back().dump());
    auto published = [&](const herald::test::run_result& r) {
      outcome o;
      o.error = r.err;
      o.published = r.exit_code == 0;
      if (o.published)
        o.id = payload::parse(r.out).at("id").get<std::string>();
      else
        CHECK(r.exit_code == 1);
      return o;
    };
    by_control.push_back(
      published(run(herald_exe + " publish --control " + shell_quote(control)
                      + " " + type + " " + json,
                    20s)));
    by_standalone.push_back(
      published(run(herald_exe + " publish --standalone --config "
                      + shell_quote((dir / "standalone.yaml").string()) + " "
                      + type + " " + json,
                    30s)));
  }
  auto [served, tail_standalone] = serve("served.yaml", "served");
  // Every published row reached its tail.
  size_t expected_control = 0, expected_standalone = 0;
  for (auto& o : by_control)
    expected_control += o.published ? 1 : 0;
  for (auto& o : by_standalone)
    expected_standalone += o.published ? 1 : 0;
  (void)herald::test::wait_until(
    [&] {
      return tailed(*tail_control).size() >= expected_control
             && tailed(*tail_standalone).size() >= expected_standalone;
    },
    30s, 50ms);
  INFO("tail stderr: " << tail_control->err() << tail_standalone->err());
  auto seen_control = tailed(*tail_control);
  auto seen_standalone = tailed(*tail_standalone);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto tag = "row-" + std::to_string(i);
    {
      INFO("herald publish --control");
      check_row(cases[i], sent[i], by_control[i], seen_control, tag);
    }
    {
      INFO("herald publish --standalone");
      check_row(cases[i], sent[i], by_standalone[i], seen_standalone, tag);
    }
  }
}
