// The demo of the seed's five services, run as the user runs it: five
// processes on loopback, one producer and four consumers.

#include <string>

#include <catch2/catch.hpp>

#include "process.hpp"

using herald::test::run_merged;
using herald::test::shell_quote;

TEST_CASE("the demo delivers every event to every consumer once",
          "[integration][demo]") {
  // 300 created, 100 deleted: each consumer must report its exact count.
  auto result =
    run_merged("bash " + shell_quote(HERALD_SOURCE_DIR "/examples/demo.sh")
                 + " " + shell_quote(HERALD_BINARY_DIR),
               120);
  INFO(result.out);
  REQUIRE_FALSE(result.timed_out);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Catch::Contains("EmailService: handled 300 events"));
  CHECK_THAT(result.out,
             Catch::Contains("AnalyticsService: handled 300 events"));
  CHECK_THAT(result.out,
             Catch::Contains("DataCleanupService: handled 100 events"));
  CHECK_THAT(result.out, Catch::Contains("BillingService: handled 100 events"));
  CHECK_THAT(result.out,
             Catch::Contains("UserService: published 300 user.account.created "
                             "and 100 user.account.deleted"));
  // Sample lines of what the consumers did.
  CHECK_THAT(result.out,
             Catch::Contains("EmailService: welcome email to user"));
  CHECK_THAT(result.out,
             Catch::Contains("AnalyticsService: tracked signup of "));
  CHECK_THAT(result.out,
             Catch::Contains("DataCleanupService: removed data of user "));
  CHECK_THAT(result.out, Catch::Contains(
                           "BillingService: cancelled subscriptions of user "));
}
