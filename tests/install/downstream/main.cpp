// Publishes one event and handles it on the same node, through an
// installed herald. Exit 0 when the handler saw it.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <herald/core/errc.hpp>
#include <herald/runtime/node.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: downstream CATALOG\n");
    return 2;
  }
  herald::node_config cfg;
  cfg.name = "downstream";
  cfg.service = "UserService";
  cfg.catalog = argv[1];
  cfg.log_level = "warn";
  auto n = herald::node::start(cfg);
  if (!n) {
    std::fprintf(stderr, "%s\n", herald::message_of(n.error()).c_str());
    return 1;
  }
  std::atomic<int> seen{0};
  auto err = (*n)->bus().subscribe(
    "user.account.created",
    [&](const herald::event&) {
      ++seen;
    },
    "EmailService");
  if (err)
    return 1;
  auto r =
    (*n)->bus().publish("user.account.created",
                        {{"user_id", "00000000-0000-4000-8000-000000000001"},
                         {"email", "user1@example.com"},
                         {"registration_source", "web"}});
  if (!r)
    return 1;
  for (int i = 0; i < 500 && seen == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  std::printf("downstream: handled %d event(s)\n", seen.load());
  return seen == 1 ? 0 : 1;
}
