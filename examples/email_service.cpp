/// EmailService: sends a welcome email for every new account. Written in
/// the seed's style, a handler subscribed on the bus.

#include <fmt/format.h>

#include "cli_common.hpp"

int main(int argc, char** argv) {
  return herald::cli::consumer_main(
    argc, argv, "EmailService",
    "EmailService: sends a welcome email per new account.",
    [](herald::node& n, herald::cli::report_fn report) {
      return n.bus().subscribe(
        "user.account.created", [report](const herald::event& ev) {
          report(fmt::format("EmailService: welcome email to {}",
                             ev.data().at("email").get<std::string>()));
        });
    });
}
