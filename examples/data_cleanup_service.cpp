/// DataCleanupService: removes the data of every deleted account. Written
/// in the seed's style, a handler subscribed on the bus.
///
///   data_cleanup_service --config config/data_cleanup_service.yaml
///     --peer ENDPOINT
///
/// Runs until SIGINT or SIGTERM. Prints a line per event it handles, ending
/// with the event's id (delivery is at least once: the id tells a second
/// delivery of an event from another deletion of the same user).

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>
#include <herald/runtime/signals.hpp>

namespace {

void remove_user_data(const herald::event& ev) {
  // A real service would delete the user's rows and files here.
  const auto& data = ev.data();
  fmt::print("DataCleanupService: removed data of user {} ({}) (event {})\n",
             data.at("user_id").get<std::string>(),
             data.at("deletion_reason").get<std::string>(), ev.id());
  std::fflush(stdout);
}

int fail(const caf::error& err) {
  fmt::print(stderr, "DataCleanupService: {}\n", herald::message_of(err));
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string config;
  std::vector<std::string> peers;
  CLI::App app{"DataCleanupService: removes the data of deleted accounts."};
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
  if (auto err =
        (*node)->bus().subscribe("user.account.deleted", remove_user_data))
    return fail(err);

  herald::wait_for_stop_signal();
  (*node)->stop();
  return 0;
}
