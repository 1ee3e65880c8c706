/// AnalyticsService: tracks every signup. Written as a CAF behavior: the
/// node hands it, in order, the events its config subscribes it to.

#include <caf/event_based_actor.hpp>
#include <fmt/format.h>

#include "cli_common.hpp"

int main(int argc, char** argv) {
  return herald::cli::consumer_main(
    argc, argv, "AnalyticsService", "AnalyticsService: tracks signups.",
    [](herald::node& n, herald::cli::report_fn report) {
      return n.attach(
        "AnalyticsService", [report](caf::event_based_actor*) -> caf::behavior {
          return {[=](const herald::event& ev) {
            const auto& data = ev.data();
            report(
              fmt::format("AnalyticsService: tracked signup of {} via {}",
                          data.at("user_id").get<std::string>(),
                          data.at("registration_source").get<std::string>()));
          }};
        });
    });
}
