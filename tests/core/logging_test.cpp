#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"

using herald::log_fields;
using herald::log_format;
using nlohmann::json;

namespace {

// A logger writing into a string, as a node's would to stderr.
struct captured {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> log;

  explicit captured(log_format format,
                    spdlog::level::level_enum level = spdlog::level::trace)
      : log(herald::make_logger(
        "email-node", format, level,
        std::make_shared<spdlog::sinks::ostream_sink_mt>(out))) {}

  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in{out.str()};
    for (std::string line; std::getline(in, line);)
      result.push_back(line);
    return result;
  }

  // The only line written, parsed as JSON.
  json only_object() const {
    auto all = lines();
    REQUIRE(all.size() == 1);
    return json::parse(all[0]);
  }
};

} // namespace

TEST_CASE("parse_log_format accepts text and json only", "[core][logging]") {
  CHECK(herald::parse_log_format("text") == log_format::text);
  CHECK(herald::parse_log_format("json") == log_format::json);
  for (auto bad : {"", "JSON", "yaml", "text "}) {
    auto f = herald::parse_log_format(bad);
    REQUIRE_FALSE(f);
    CHECK(herald::is(f.error(), herald::errc::invalid_config));
    CHECK_THAT(herald::message_of(f.error()),
               Catch::Contains(std::string{"'"} + bad + "'")
                 && Catch::Contains("'text' or 'json'"));
  }
}

TEST_CASE("text lines keep the node's layout and end in key=value fields",
          "[core][logging]") {
  captured c{log_format::text};
  log_fields(*c.log, spdlog::level::err, "handler failed",
             {{"consumer", "EmailService"},
              {"attempt", 2},
              {"error", "boom: bad thing"},
              {"seq", uint64_t{18446744073709551615u}},
              {"empty", ""},
              {"eq", "a=b"},
              {"quote", "say \"hi\""},
              {"newline", "two\nlines"},
              {"ok", true}});
  c.log->info("started: {} consumers", 2);
  auto lines = c.lines();
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Catch::Contains("consumer=EmailService attempt=2 "
                                       "error=\"boom: bad thing\""));
  CHECK_THAT(lines[0], Catch::Contains(" seq=18446744073709551615 "));
  CHECK_THAT(lines[0], Catch::Contains(R"( empty="" eq="a=b" )"));
  CHECK_THAT(lines[0], Catch::Contains(R"( quote="say \"hi\"" )"));
  // A value cannot start a line of its own.
  CHECK_THAT(lines[0], Catch::EndsWith(R"( newline="two\nlines" ok=true)"));
  std::regex layout{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} error )"
                    R"(node=email-node handler failed consumer=.*)"};
  CHECK(std::regex_match(lines[0], layout));
  CHECK_THAT(lines[1], Catch::EndsWith(" info node=email-node started: 2 "
                                       "consumers"));
}

TEST_CASE("json lines are objects with typed fields", "[core][logging]") {
  captured c{log_format::json};
  log_fields(*c.log, spdlog::level::err, "handler failed",
             {{"consumer", "EmailService"},
              {"attempt", 2},
              {"seq", uint64_t{18446744073709551615u}},
              {"delta", -5},
              {"error", std::string{"boom: bad thing"}},
              {"redelivered", false},
              {"ms", 1.5}});
  auto j = c.only_object();
  CHECK(j.at("level") == "error");
  CHECK(j.at("node") == "email-node");
  CHECK(j.at("msg") == "handler failed");
  CHECK(j.at("consumer") == "EmailService");
  CHECK(j.at("attempt").is_number_integer());
  CHECK(j.at("attempt") == 2);
  CHECK(j.at("seq").is_number_unsigned());
  CHECK(j.at("seq").get<uint64_t>() == 18446744073709551615u);
  CHECK(j.at("delta") == -5);
  CHECK(j.at("error") == "boom: bad thing");
  CHECK(j.at("redelivered") == false);
  CHECK(j.at("ms") == 1.5);
  std::regex rfc3339{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"};
  CHECK(std::regex_match(j.at("time").get<std::string>(), rfc3339));
  // The line's own keys come first, in a fixed order.
  CHECK_THAT(c.lines()[0], Catch::StartsWith(R"({"time":")"));
}

TEST_CASE("json escapes quotes, newlines and control characters",
          "[core][logging]") {
  captured c{log_format::json};
  std::string nasty = "a \"quoted\" \\ back\nslash\ttab\r\x01\x1f end";
  log_fields(*c.log, spdlog::level::warn, nasty, {{"value", nasty}});
  auto j = c.only_object();
  CHECK(j.at("level") == "warning");
  CHECK(j.at("msg") == nasty);
  CHECK(j.at("value") == nasty);
  CHECK_THAT(c.lines()[0], Catch::Contains(R"(\u0001)"));
}

TEST_CASE("json replaces invalid UTF-8 and keeps valid UTF-8",
          "[core][logging]") {
  captured c{log_format::json};
  std::string text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
                     "bad:\xff\xc0\xaf\xed\xa0\x80 cut:\xe2\x82";
  c.log->info("{}", text);
  auto j = c.only_object(); // nlohmann refuses invalid UTF-8
  auto msg = j.at("msg").get<std::string>();
  CHECK_THAT(msg, Catch::StartsWith("caf\xc3\xa9 \xe2\x82\xac "
                                    "\xf0\x9f\x98\x80 bad:"));
  CHECK_THAT(msg, Catch::Contains("\xef\xbf\xbd"));
  CHECK_THAT(msg, Catch::EndsWith("cut:\xef\xbf\xbd\xef\xbf\xbd"));
}

TEST_CASE("ordinary log calls in json are objects with the message in msg",
          "[core][logging]") {
  captured c{log_format::json};
  c.log->info("started: {} consumers on {}", 2, "tcp://127.0.0.1:5601");
  c.log->warn("dropped \"{}\"\n", "x");
  auto lines = c.lines();
  REQUIRE(lines.size() == 2);
  auto first = json::parse(lines[0]);
  CHECK(first.at("msg") == "started: 2 consumers on tcp://127.0.0.1:5601");
  CHECK(first.at("level") == "info");
  CHECK(first.size() == 4);
  CHECK(json::parse(lines[1]).at("msg") == "dropped \"x\"\n");
}

TEST_CASE("a message cannot pose as fields in json", "[core][logging]") {
  // What a user controls (an exception text, a payload) ends up in
  // messages; it must stay inside "msg".
  captured c{log_format::json};
  std::string forged = "\x1e\",\"level\":\"critical";
  c.log->error("{}", forged);
  log_fields(*c.log, spdlog::level::info, forged, {{"n", 1}});
  auto lines = c.lines();
  REQUIRE(lines.size() == 2);
  auto plain = json::parse(lines[0]);
  CHECK(plain.at("msg") == forged);
  CHECK(plain.at("level") == "error");
  auto with_fields = json::parse(lines[1]);
  CHECK(with_fields.at("msg") == forged);
  CHECK(with_fields.at("level") == "info");
  CHECK(with_fields.at("n") == 1);
}

TEST_CASE("json fields named like the line's keys get a leading '_'",
          "[core][logging]") {
  captured c{log_format::json};
  log_fields(*c.log, spdlog::level::info, "m",
             {{"msg", "field"}, {"level", 3}, {"node", "x"}, {"time", "t"}});
  auto j = c.only_object();
  CHECK(j.at("msg") == "m");
  CHECK(j.at("_msg") == "field");
  CHECK(j.at("level") == "info");
  CHECK(j.at("_level") == 3);
  CHECK(j.at("node") == "email-node");
  CHECK(j.at("_node") == "x");
  CHECK(j.at("_time") == "t");
}

TEST_CASE("the level filters records with and without fields",
          "[core][logging]") {
  for (auto format : {log_format::text, log_format::json}) {
    captured c{format, spdlog::level::warn};
    c.log->info("hidden");
    log_fields(*c.log, spdlog::level::info, "hidden", {{"a", 1}});
    log_fields(*c.log, spdlog::level::warn, "shown", {{"a", 1}});
    auto lines = c.lines();
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Catch::Contains("shown"));
  }
}

TEST_CASE("a clone of a json logger keeps the format", "[core][logging]") {
  captured c{log_format::json};
  auto other = c.log->clone("other-node");
  log_fields(*other, spdlog::level::info, "m", {{"attempt", 2}});
  auto j = c.only_object();
  CHECK(j.at("node") == "other-node");
  CHECK(j.at("attempt") == 2);
}

TEST_CASE("a logger not made by make_logger gets text fields",
          "[core][logging]") {
  std::ostringstream out;
  spdlog::logger plain{"plain",
                       std::make_shared<spdlog::sinks::ostream_sink_mt>(out)};
  plain.set_pattern("%v");
  log_fields(plain, spdlog::level::info, "m",
             {{"consumer", "EmailService"}, {"attempt", 2}});
  CHECK(out.str() == "m consumer=EmailService attempt=2\n");
}
