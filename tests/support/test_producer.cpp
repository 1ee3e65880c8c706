// The producer the integration tests run as a process when they need a log
// that stays served while they publish more: `herald tail --from-start`
// and `--since` read a stream's log from its running producer.
//
//   herald_test_producer --config F --batch N [--batch N]... --go PATH
//     [--timeout S] [--endpoint-file P] [--data-dir D] [--log-level L]
//     [--users U]
//
// Publishes the first batch of user.account.created events at once, then,
// before each later batch k (from 2), waits until the file `PATH.k`
// exists (at most --timeout seconds, default 60; exit 1 after). Event i of
// the run (from 0) is for user i (i modulo U with `--users U`): id
// 00000000-0000-4000-8000-<i in 12 hex digits>, email user<i>@example.com. Once
// a batch is durable it prints `batch <k>: seq <first>..<last>`. After the last
// batch it stays up, serving replays, until SIGINT/SIGTERM (exit 0).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"

using namespace herald;
using namespace herald::cli;

namespace {

constexpr std::string_view prog = "herald_test_producer";

payload user(uint64_t i) {
  static constexpr const char* sources[] = {"web", "api", "oauth"};
  return {{"user_id", fmt::format("00000000-0000-4000-8000-{:012x}", i)},
          {"email", fmt::format("user{}@example.com", i)},
          {"registration_source", sources[i % 3]}};
}

} // namespace

int main(int argc, char** argv) {
  node_options nopts;
  std::vector<uint64_t> batches;
  std::string go;
  double timeout = 60;
  uint64_t users = 0;
  CLI::App app{"A producer for the integration tests: publishes batches of "
               "user.account.created events, each after the test says go, "
               "and serves its log until stopped.",
               "herald_test_producer"};
  add_node_options(app, nopts);
  app
    .add_option("--batch", batches,
                "events to publish in one batch (repeat for more batches)")
    ->required();
  app
    .add_option("--go", go,
                "before batch k (from 2), wait until the file PATH.k exists")
    ->required();
  app
    .add_option("--timeout", timeout,
                "seconds to wait for each go file; exit 1 after")
    ->capture_default_str()
    ->check(at_least(0));
  app.add_option("--users", users,
                 "event i is for user i modulo U (U entities); default: "
                 "every event for a user of its own");
  if (auto rc = parse(app, argc, argv))
    return *rc;
  install_signal_handlers();

  auto n = start_node(nopts);
  if (!n)
    return fail(prog, message_of(n.error()));
  if (auto err = write_endpoint_file(**n, nopts))
    return fail(prog, message_of(err));
  uint64_t next_user = 0;
  for (size_t k = 1; k <= batches.size(); ++k) {
    if (k > 1) {
      auto file = fmt::format("{}.{}", go, k);
      auto res = wait_until(
        [&] {
          return std::filesystem::exists(file);
        },
        from_seconds(timeout));
      if (res == wait_result::interrupted)
        break;
      if (res == wait_result::timed_out)
        return fail(prog, fmt::format("timed out after {:g}s waiting for {}",
                                      timeout, file));
    }
    std::optional<publish_receipt> first, last;
    for (uint64_t i = 0; i < batches[k - 1]; ++i) {
      auto u = next_user++;
      auto r = (*n)->bus().publish("user.account.created",
                                   user(users > 0 ? u % users : u));
      if (!r)
        return fail(prog, message_of(r.error()));
      if (!first)
        first = *r;
      last = std::move(*r);
    }
    if (!first)
      continue;
    if (auto err = last->wait())
      return fail(prog, message_of(err));
    print_line(fmt::format("batch {}: seq {}..{}", k, first->seq, last->seq));
  }
  static_cast<void>(wait_until(
    [] {
      return false;
    },
    std::nullopt));
  (*n)->stop();
  return exit_ok;
}
