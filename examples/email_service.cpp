/// EmailService: sends a welcome email for every new account. Written in
/// the seed's style, a handler subscribed on the bus.
///
///   email_service --config config/email_service.yaml --peer ENDPOINT
///
/// Runs until SIGINT or SIGTERM. Prints a line per event it handles, ending
/// with the event's id: delivery is at least once, so the same event may
/// come twice, and the id tells a second delivery from another email.

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>
#include <herald/runtime/signals.hpp>

namespace {

void send_welcome_email(const herald::event& ev) {
  // A real service would hand the email to its mail server here.
  fmt::print("EmailService: welcome email to {} (event {})\n",
             ev.data().at("email").get<std::string>(), ev.id());
  std::fflush(stdout);
}

int fail(const caf::error& err) {
  fmt::print(stderr, "EmailService: {}\n", herald::message_of(err));
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string config;
  std::vector<std::string> peers;
  CLI::App app{"EmailService: sends a welcome email per new account."};
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
        (*node)->bus().subscribe("user.account.created", send_welcome_email))
    return fail(err);

  herald::wait_for_stop_signal();
  (*node)->stop();
  return 0;
}
