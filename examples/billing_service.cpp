/// BillingService: cancels the subscriptions of every deleted account.
/// Written as a CAF behavior: the node hands it, in order, the events its
/// config subscribes it to.

#include <caf/event_based_actor.hpp>
#include <fmt/format.h>

#include "cli_common.hpp"

int main(int argc, char** argv) {
  return herald::cli::consumer_main(
    argc, argv, "BillingService",
    "BillingService: cancels the subscriptions of deleted accounts.",
    [](herald::node& n, herald::cli::report_fn report) {
      return n.attach(
        "BillingService", [report](caf::event_based_actor*) -> caf::behavior {
          return {[=](const herald::event& ev) {
            report(
              fmt::format("BillingService: cancelled subscriptions of user {}",
                          ev.data().at("user_id").get<std::string>()));
          }};
        });
    });
}
