/// DataCleanupService: removes the data of every deleted account. Written
/// in the seed's style, a handler subscribed on the bus.

#include <fmt/format.h>

#include "cli_common.hpp"

int main(int argc, char** argv) {
  return herald::cli::consumer_main(
    argc, argv, "DataCleanupService",
    "DataCleanupService: removes the data of deleted accounts.",
    [](herald::node& n, herald::cli::report_fn report) {
      return n.bus().subscribe(
        "user.account.deleted", [report](const herald::event& ev) {
          const auto& data = ev.data();
          report(fmt::format("DataCleanupService: removed data of user {} ({})",
                             data.at("user_id").get<std::string>(),
                             data.at("deletion_reason").get<std::string>()));
        });
    });
}
