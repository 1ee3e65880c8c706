// The demo of the seed's services, run as the user runs it: seven processes
// on loopback, one producer and six consumer nodes, two of the services
// consumer groups of two nodes; one member killed halfway, one user's
// welcome email failing until a fix and a redrive.

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "process.hpp"

using herald::test::run_merged;
using herald::test::shell_quote;

namespace {

// The lines of `text` that contain `needle`, in order.
std::vector<std::string> lines_with(const std::string& text,
                                    const std::string& needle) {
  std::vector<std::string> found;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos)
      found.push_back(line);
  return found;
}

// The first line of `text` that contains `needle`, or "" if none does.
std::string line_with(const std::string& text, const std::string& needle) {
  auto found = lines_with(text, needle);
  return found.empty() ? std::string{} : found.front();
}

} // namespace

TEST_CASE("the demo: each event handled once per group through a kill, and "
          "a dead letter redriven after the fix",
          "[integration][demo]") {
  // 300 created, 100 deleted, one signup per user; user42's welcome email
  // fails until the redrive.
  auto result =
    run_merged("bash " + shell_quote(HERALD_SOURCE_DIR "/examples/demo.sh")
                 + " " + shell_quote(HERALD_BINARY_DIR),
               120);
  const auto& out = result.out;
  INFO(out);
  REQUIRE_FALSE(result.timed_out);
  CHECK(result.exit_code == 0);
  CHECK_THAT(out, Catch::Contains("demo: OK"));

  // The seven processes, two services as groups of two nodes.
  for (const char* started :
       {"EmailService on email-node-1", "EmailService on email-node-2",
        "AnalyticsService on analytics-node-1",
        "AnalyticsService on analytics-node-2",
        "DataCleanupService on data-cleanup-node",
        "BillingService on billing-node"})
    CHECK_THAT(out, Catch::Contains(started));

  // One EmailService node killed halfway, and not restarted.
  CHECK_THAT(
    line_with(out, ": kill -9 email-node-"),
    Catch::Matches("  EmailService had handled (1[5-9][0-9]|2[0-9]{2}) "
                   "of 300 events: kill -9 email-node-[12] \\(not "
                   "restarted\\)"));

  // Once the group settled, the survivor holds every partition of
  // UserService's stream, as the stream's owner tells.
  auto described = line_with(out, "herald group describe EmailService: ");
  CHECK_THAT(described, Catch::Contains("(up)") && Catch::Contains("(down)"));
  CHECK_THAT(described,
             Catch::Matches("  herald group describe EmailService: members "
                            "email-node-1 \\((up|down)\\), email-node-2 "
                            "\\((down|up)\\); "
                            "of the 64 partitions of UserService's stream, "
                            "email-node-[12] holds 64"));

  // Each group handled every event: distinct ids over its nodes, exact;
  // EmailService's duplicates are the ones around the kill.
  CHECK_THAT(out,
             Catch::Contains("UserService: published 300 user.account.created "
                             "and 100 user.account.deleted"));
  CHECK_THAT(line_with(out, "  EmailService: handled "),
             Catch::Matches("  EmailService: handled 300 events \\([0-9]+ "
                            "handled twice around the kill of "
                            "email-node-[12]\\)"));
  CHECK_THAT(line_with(out, "  AnalyticsService: handled "),
             Catch::Matches("  AnalyticsService: handled 300 events( \\([0-9]+ "
                            "handled twice\\))?"));
  CHECK_THAT(line_with(out, "  DataCleanupService: handled "),
             Catch::Matches("  DataCleanupService: handled 100 events( "
                            "\\([0-9]+ handled twice\\))?"));
  CHECK_THAT(line_with(out, "  BillingService: handled "),
             Catch::Matches("  BillingService: handled 100 events( \\([0-9]+ "
                            "handled twice\\))?"));

  // A line of what each service did.
  CHECK_THAT(out, Catch::Contains("AnalyticsService: tracked signup of "));
  CHECK_THAT(out, Catch::Contains("DataCleanupService: removed data of user "));
  CHECK_THAT(
    out, Catch::Contains("BillingService: cancelled subscriptions of user "));

  // The failure path: three attempts logged with their backoff, ...
  CHECK_THAT(out, Catch::Contains(
                    "error: SMTP 550 mailbox unavailable: user42@example.com"));
  // (A partition handed over during the retries starts them again on its
  // next holder: at least three lines.)
  auto attempts = lines_with(out, ": handler failed ");
  REQUIRE(attempts.size() >= 3);
  auto logged = [&](const std::string& pattern) {
    Catch::Matchers::StdString::RegexMatcher match{pattern,
                                                   Catch::CaseSensitive::Yes};
    return std::any_of(attempts.begin(), attempts.end(),
                       [&](const std::string& line) {
                         return match.match(line);
                       });
  };
  CHECK(logged(".* attempt=1 error_class=exception next=\"retry in [0-9]+ "
               "ms\""));
  CHECK(logged(".* attempt=2 error_class=exception next=\"retry in [0-9]+ "
               "ms\""));
  CHECK(logged(".* attempt=3 error_class=exception next=\"dead letter: 3 "
               "attempts failed\""));
  // ... a dead letter, the alert, ...
  CHECK_THAT(line_with(out, ": stored as a dead letter "),
             Catch::Contains("attempts=3"));
  CHECK_THAT(line_with(out, ": ALERT consumer=EmailService "),
             Catch::Contains("dead letters"));
  // ... `herald dlq list` at UserService shows it (the key of user 42), ...
  auto listed = out.find("4. herald dlq list --consumer EmailService");
  auto fixed = out.find("5. The fix is deployed");
  REQUIRE(listed != std::string::npos);
  REQUIRE(fixed != std::string::npos);
  CHECK(out.substr(listed, fixed - listed)
          .find("00000000-0000-4000-8000-00000000002a")
        != std::string::npos);
  // The letter names the node that made it; its first failure is the SMTP
  // error.
  CHECK_THAT(line_with(out, "     node: "),
             Catch::Matches(" +node: +email-node-[12]"));
  CHECK_THAT(line_with(out, "     first failure: "),
             Catch::Contains("SMTP 550 mailbox unavailable: "
                             "user42@example.com"));
  // ... and after the fix the redrive delivers it: the welcome email goes
  // out, and no dead letter is left.
  auto redrive = out.find("6. herald dlq redrive --consumer EmailService");
  auto email = out.find("EmailService: welcome email to user42@example.com");
  REQUIRE(redrive != std::string::npos);
  REQUIRE(email != std::string::npos);
  CHECK(email > redrive);
  // The redrive happened at UserService, which keeps the letter.
  CHECK_THAT(out, Catch::Contains("user-node: 1 dead letter redriven: 1"));
  CHECK_THAT(out, Catch::Contains("herald dlq list: 0 dead letters of "
                                  "user42@example.com left"));
}
