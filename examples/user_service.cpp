/// UserService: the producer of the seed's events. Publishes `--created`
/// user.account.created events, then `--deleted` user.account.deleted
/// events, for `--users` deterministic users (user i has the id
/// 00000000-0000-4000-8000-<i in 12 hex digits> and the email
/// user<i>@example.com), optionally paced to `--rate` events per second.
///
///   user_service --config config/user_service.yaml --created 300
///
/// Prints `UserService: publishing on ENDPOINT` (the consumers' `--peer`)
/// and `UserService: control on ENDPOINT` (their `cluster.seeds`) once its
/// node is up, and `UserService: published ...` once every event
/// is durable in its log. It then stays up `--linger-ms` to serve the
/// replays of consumers that are catching up; SIGINT or SIGTERM end it
/// early.

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>
#include <herald/runtime/signals.hpp>

namespace {

std::string user_id(uint64_t i) {
  return fmt::format("00000000-0000-4000-8000-{:012x}", i);
}

constexpr std::array<const char*, 3> sources{"web", "api", "oauth"};
constexpr std::array<const char*, 3> reasons{"user_request", "admin",
                                             "inactivity"};

void say(std::string_view line) {
  fmt::print("UserService: {}\n", line);
  std::fflush(stdout);
}

int fail(std::string_view message) {
  fmt::print(stderr, "UserService: {}\n", message);
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string config;
  uint64_t created = 100;
  uint64_t deleted = 20;
  uint64_t users = 1000;
  double rate = 0;
  int64_t wait_subscribers = 0;
  double wait_timeout = 10;
  int64_t linger_ms = 0;
  CLI::App app{"UserService: publishes account creations and deletions."};
  app.add_option("--config", config, "node configuration file (YAML)")
    ->required()
    ->check(CLI::ExistingFile);
  app
    .add_option("--created", created, "user.account.created events to publish")
    ->capture_default_str();
  app
    .add_option("--deleted", deleted, "user.account.deleted events to publish")
    ->capture_default_str();
  app.add_option("--users", users, "distinct users; events cycle over them")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--rate", rate, "events per second; 0: as fast as possible")
    ->capture_default_str()
    ->check(CLI::NonNegativeNumber);
  app
    .add_option("--wait-subscribers", wait_subscribers,
                "publish only once N subscriptions reached this node")
    ->capture_default_str()
    ->check(CLI::NonNegativeNumber);
  app.add_option("--wait-timeout", wait_timeout, "seconds to wait for them")
    ->capture_default_str()
    ->check(CLI::NonNegativeNumber);
  app
    .add_option("--linger-ms", linger_ms,
                "stay up MS milliseconds after the last publish, serving "
                "replays to consumers that are catching up")
    ->capture_default_str()
    ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  herald::catch_stop_signals();
  auto cfg = herald::node_config::load_file(config);
  if (!cfg)
    return fail(herald::message_of(cfg.error()));
  auto started = herald::node::start(*cfg);
  if (!started)
    return fail(herald::message_of(started.error()));
  auto& node = **started;
  say(fmt::format("publishing on {}", node.endpoint()));
  say(fmt::format("control on {}", node.control_endpoint()));
  auto timeout =
    std::chrono::milliseconds{static_cast<int64_t>(wait_timeout * 1000.0)};
  if (wait_subscribers > 0
      && !node.wait_for_subscribers(wait_subscribers, timeout))
    return fail(fmt::format("timed out after {:g}s waiting for {} "
                            "subscriber(s); start the consumers with --peer {}",
                            wait_timeout, wait_subscribers, node.endpoint()));

  // Event k goes out at start + k / rate: the pace holds over the run.
  auto start = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  std::optional<herald::publish_receipt> last;
  auto publish = [&](std::string_view type, const herald::payload& data) {
    if (rate > 0)
      std::this_thread::sleep_until(
        start
        + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(static_cast<double>(sent) / rate)));
    ++sent;
    auto receipt = node.bus().publish(type, data);
    if (!receipt)
      return std::move(receipt.error());
    last = std::move(*receipt);
    return caf::error{};
  };
  for (uint64_t k = 0; k < created && !herald::stop_requested(); ++k) {
    auto i = k % users;
    if (auto err = publish("user.account.created",
                           {{"user_id", user_id(i)},
                            {"email", fmt::format("user{}@example.com", i)},
                            {"registration_source", sources[i % 3]}}))
      return fail(herald::message_of(err));
  }
  for (uint64_t k = 0; k < deleted && !herald::stop_requested(); ++k) {
    auto i = k % users;
    if (auto err = publish(
          "user.account.deleted",
          {{"user_id", user_id(i)}, {"deletion_reason", reasons[k % 3]}}))
      return fail(herald::message_of(err));
  }
  if (herald::stop_requested())
    return fail(fmt::format("interrupted after {} events", sent));
  // Events become durable in seq order: the last one covers them all.
  if (last)
    if (auto err = last->wait())
      return fail(herald::message_of(err));
  say(fmt::format("published {} user.account.created and {} "
                  "user.account.deleted",
                  created, deleted));

  (void)herald::wait_for_stop_signal(std::chrono::milliseconds{linger_ms});
  node.stop(); // flushes what was sent
  return 0;
}
