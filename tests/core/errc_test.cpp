// How errors read: herald's by their message, CAF's by their name.

#include <catch2/catch.hpp>

#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

#include "herald/core/errc.hpp"

using namespace herald;

TEST_CASE("CAF's errors read by name, not as a number in a category",
          "[core][errc]") {
  // A dead service actor used to reach dead letters as "error 3 in
  // category system".
  auto down = message_of(caf::make_error(caf::sec::request_receiver_down));
  CHECK_THAT(down, Catch::Contains("request_receiver_down"));
  CHECK_THAT(down, !Catch::Contains("error 3"));
  CHECK_THAT(message_of(caf::make_error(caf::sec::request_timeout)),
             Catch::Contains("request_timeout"));
  CHECK_THAT(message_of(caf::make_error(caf::exit_reason::user_shutdown)),
             Catch::Contains("user_shutdown"));
  CHECK(message_of(make_error(errc::not_found, "no dead letter 7"))
        == "no dead letter 7");
  CHECK(message_of(caf::error{}).empty());
}
