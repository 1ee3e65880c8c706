/// UserService: the producer of the seed's events. Publishes `--created`
/// user.account.created events, then `--deleted` user.account.deleted
/// events, for `--users` deterministic users (user i has the id
/// 00000000-0000-4000-8000-<i in 12 hex digits> and the email
/// user<i>@example.com), optionally paced to `--rate` events per second.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"

namespace {

namespace cli = herald::cli;

constexpr std::string_view prog = "UserService";

std::string user_id(uint64_t i) {
  return fmt::format("00000000-0000-4000-8000-{:012x}", i);
}

constexpr std::array<const char*, 3> sources{"web", "api", "oauth"};
constexpr std::array<const char*, 3> reasons{"user_request", "admin",
                                             "inactivity"};

} // namespace

int main(int argc, char** argv) {
  cli::node_options nopts;
  uint64_t created = 100;
  uint64_t deleted = 20;
  uint64_t users = 1000;
  double rate = 0;
  int64_t wait_subscribers = 0;
  double wait_timeout = 10;
  int64_t linger_ms = 0;
  CLI::App app{"UserService: publishes account creations and deletions.",
               "user_service"};
  cli::add_node_options(app, nopts);
  app
    .add_option("--created", created, "user.account.created events to publish")
    ->capture_default_str();
  app
    .add_option("--deleted", deleted, "user.account.deleted events to publish")
    ->capture_default_str();
  app.add_option("--users", users, "distinct users; events cycle over them")
    ->capture_default_str()
    ->check(cli::at_least(1));
  app.add_option("--rate", rate, "events per second; 0: as fast as possible")
    ->capture_default_str()
    ->check(cli::at_least(0));
  app
    .add_option("--wait-subscribers", wait_subscribers,
                "publish only once N subscriptions reached this node")
    ->capture_default_str()
    ->check(cli::at_least(0));
  app.add_option("--wait-timeout", wait_timeout, "seconds to wait for them")
    ->capture_default_str()
    ->check(cli::at_least(0));
  app
    .add_option("--linger-ms", linger_ms,
                "stay up MS milliseconds after the last publish, serving "
                "replays to consumers that are catching up (SIGINT/SIGTERM "
                "end it early)")
    ->capture_default_str()
    ->check(cli::at_least(0));
  if (auto rc = cli::parse(app, argc, argv))
    return *rc;
  cli::install_signal_handlers();

  auto n = cli::start_node(nopts);
  if (!n)
    return cli::fail(prog, herald::message_of(n.error()));
  auto& nd = **n;
  if (auto err = cli::write_endpoint_file(nd, nopts))
    return cli::fail(prog, herald::message_of(err));
  if (wait_subscribers > 0
      && !nd.wait_for_subscribers(wait_subscribers,
                                  cli::from_seconds(wait_timeout)))
    return cli::fail(prog, fmt::format("timed out after {:g}s waiting for {} "
                                       "subscriber(s) at {}; start the "
                                       "consumers with --peer {}",
                                       wait_timeout, wait_subscribers,
                                       nd.endpoint(), nd.endpoint()));

  // Event k goes out at start + k / rate: the pace holds over the run.
  auto start = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  std::optional<herald::publish_receipt> last;
  auto publish = [&](std::string_view type, herald::payload data) {
    if (rate > 0)
      std::this_thread::sleep_until(
        start
        + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(static_cast<double>(sent) / rate)));
    ++sent;
    auto receipt = nd.bus().publish(type, std::move(data));
    if (!receipt)
      return std::move(receipt.error());
    last = std::move(*receipt);
    return caf::error{};
  };
  for (uint64_t k = 0; k < created && !cli::stop_requested(); ++k) {
    auto i = k % users;
    if (auto err = publish("user.account.created",
                           {{"user_id", user_id(i)},
                            {"email", fmt::format("user{}@example.com", i)},
                            {"registration_source", sources[i % 3]}}))
      return cli::fail(prog, herald::message_of(err));
  }
  for (uint64_t k = 0; k < deleted && !cli::stop_requested(); ++k) {
    auto i = k % users;
    if (auto err = publish(
          "user.account.deleted",
          {{"user_id", user_id(i)}, {"deletion_reason", reasons[k % 3]}}))
      return cli::fail(prog, herald::message_of(err));
  }
  if (cli::stop_requested())
    return cli::fail(prog, fmt::format("interrupted after {} events", sent));
  // Events become durable in seq order: the last one covers them all.
  if (last)
    if (auto err = last->wait())
      return cli::fail(prog, herald::message_of(err));
  cli::print_line(fmt::format("UserService: published {} user.account.created "
                              "and {} user.account.deleted",
                              created, deleted));
  cli::wait_until(
    [] {
      return false;
    },
    std::chrono::milliseconds{linger_ms});
  nd.stop(); // flushes what was sent
  return cli::exit_ok;
}
