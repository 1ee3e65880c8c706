/// EmailService: sends a welcome email for every new account. Written in
/// the seed's style, a handler subscribed on the bus.
///
///   email_service --config config/email_service.yaml --peer ENDPOINT
///   email_service --config ... --fail-user-email user42@example.com
///
/// Runs until SIGINT or SIGTERM. Prints a line per event it handles, ending
/// with the event's id: delivery is at least once, so the same event may
/// come twice, and the id tells a second delivery from another email.
///
/// `--fail-user-email ADDRESS` (repeatable) makes the welcome email to
/// ADDRESS fail every attempt, as a mail server that refuses the mailbox
/// would: the handler throws "SMTP 550 mailbox unavailable: ADDRESS", the
/// node retries it per the consumer's `retry` settings (logging each failed
/// attempt), then stores the event as a dead letter. examples/demo.sh uses
/// it to show the failure path, then restarts the service without it (the
/// fix) and redrives the dead letter.

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>
#include <herald/runtime/signals.hpp>

namespace {

/// Sends the welcome email of `ev` (a user.account.created), or throws
/// std::runtime_error when its address is one of `failing`: the node then
/// retries the event, and dead-letters it once the retries are spent.
/// Called on the consumer's handler threads; `failing` is only read.
void send_welcome_email(const herald::event& ev,
                        const std::vector<std::string>& failing) {
  auto email = ev.data().at("email").get<std::string>();
  if (std::find(failing.begin(), failing.end(), email) != failing.end())
    throw std::runtime_error{
      fmt::format("SMTP 550 mailbox unavailable: {}", email)};
  // A real service would hand the email to its mail server here.
  fmt::print("EmailService: welcome email to {} (event {})\n", email, ev.id());
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
  std::vector<std::string> failing;
  CLI::App app{"EmailService: sends a welcome email per new account."};
  app.add_option("--config", config, "node configuration file (YAML)")
    ->required()
    ->check(CLI::ExistingFile);
  app.add_option("--peer", peers, "producer endpoint to subscribe to");
  app.add_option("--fail-user-email", failing,
                 "make every welcome email to ADDRESS fail with \"SMTP 550 "
                 "mailbox unavailable\" (repeatable): its event is retried, "
                 "then dead-lettered; to show the failure path");
  CLI11_PARSE(app, argc, argv);

  herald::catch_stop_signals();
  auto cfg = herald::node_config::load_file(config);
  if (!cfg)
    return fail(cfg.error());
  cfg->peers.insert(cfg->peers.end(), peers.begin(), peers.end());
  auto node = herald::node::start(*cfg);
  if (!node)
    return fail(node.error());
  if (auto err = (*node)->bus().subscribe("user.account.created",
                                          [failing](const herald::event& ev) {
                                            send_welcome_email(ev, failing);
                                          }))
    return fail(err);

  herald::wait_for_stop_signal();
  (*node)->stop();
  return 0;
}
