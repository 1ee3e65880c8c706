/// AnalyticsService: tracks every signup. Written as a CAF behavior: the
/// node hands it, in order, the events its config subscribes it to
/// (config/analytics_service.yaml: `user.account.created`).
///
///   analytics_service --config config/analytics_service.yaml --peer ENDPOINT
///
/// Runs until SIGINT or SIGTERM. Prints a line per event it handles, ending
/// with the event's id (delivery is at least once: the id tells a second
/// delivery of an event from another signup).

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <caf/event_based_actor.hpp>
#include <fmt/format.h>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>
#include <herald/runtime/signals.hpp>

namespace {

caf::behavior analytics(caf::event_based_actor*) {
  return {[](const herald::event& ev) {
    // A real service would update its signup counters here.
    const auto& data = ev.data();
    fmt::print("AnalyticsService: tracked signup of {} via {} (event {})\n",
               data.at("user_id").get<std::string>(),
               data.at("registration_source").get<std::string>(), ev.id());
    std::fflush(stdout);
  }};
}

int fail(const caf::error& err) {
  fmt::print(stderr, "AnalyticsService: {}\n", herald::message_of(err));
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string config;
  std::vector<std::string> peers;
  CLI::App app{"AnalyticsService: tracks signups."};
  app.add_option("--config", config, "node configuration file (YAML)")
    ->required()
    ->check(CLI::ExistingFile);
  app.add_option("--peer", peers, "producer endpoint to subscribe to");
  CLI11_PARSE(app, argc, argv);

  herald::catch_stop_signals();
  auto cfg = herald::node_config::load_file(config);
  if (!cfg)
    return fail(cfg.error());
  cfg->peers.insert(cfg->peers.end(), peers.begin(), peers.end());
  auto node = herald::node::start(*cfg);
  if (!node)
    return fail(node.error());
  if (auto err = (*node)->attach("AnalyticsService", analytics))
    return fail(err);

  herald::wait_for_stop_signal();
  (*node)->stop();
  return 0;
}
