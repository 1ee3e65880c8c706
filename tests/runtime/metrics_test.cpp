#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "deadline.hpp"
#include "herald/core/errc.hpp"
#include "metrics.hpp"
#include "process.hpp"

using namespace herald;
using namespace herald::metrics;
using namespace std::chrono_literals;
using herald::test::run_with_time_limit;

namespace {

std::unique_ptr<http_server> start_server(http_server::metrics_fn metrics,
                                          http_server::health_fn health) {
  auto srv =
    http_server::start("127.0.0.1:0", std::move(metrics), std::move(health));
  if (!srv)
    FAIL("metrics server did not start: " << message_of(srv.error()));
  return std::move(*srv);
}

// A client with bounded waits: every request below finishes or fails within
// a few seconds.
httplib::Client client_for(uint16_t port) {
  httplib::Client cli{"127.0.0.1", port};
  cli.set_connection_timeout(2s);
  cli.set_read_timeout(5s);
  cli.set_write_timeout(5s);
  return cli;
}

} // namespace

// -- histogram ---------------------------------------------------------------

TEST_CASE("a histogram counts an observation on a bound in that bucket",
          "[runtime][metrics]") {
  histogram h{{1e-5, 1e-4, 1e-3}}; // 10µs, 100µs, 1ms
  for (int64_t us : {0, 10, 11, 100, 101, 1000, 1001, -5})
    h.observe_us(us);

  auto s = h.snapshot();
  CHECK(s.bounds == std::vector<double>{1e-5, 1e-4, 1e-3});
  // <= 10µs: 0, 10 and -5 (counted as 0); <= 100µs: +11, 100; <= 1ms: +101,
  // 1000; 1001 only in +Inf.
  CHECK(s.cumulative == std::vector<uint64_t>{3, 5, 7});
  CHECK(s.count == 8);
  CHECK(s.sum == Approx(0.002223).epsilon(1e-12));
}

TEST_CASE("latency buckets hold bounds that binary floating point cannot "
          "represent exactly",
          "[runtime][metrics]") {
  // 2.5e-5 * 1e6 is not exactly 25 in binary: 25µs must still be <= 25µs.
  const auto& bounds = histogram::latency_bounds();
  REQUIRE(bounds.size() == 19);
  CHECK(bounds.front() == 1e-5);
  CHECK(bounds.back() == 10);
  histogram h;
  h.observe_us(25);
  h.observe_us(250);
  h.observe_us(2'500);
  h.observe_us(10'000'000); // exactly 10s: the last finite bucket
  h.observe_us(10'000'001);
  auto s = h.snapshot();
  CHECK(s.cumulative[0] == 0);  // 10µs
  CHECK(s.cumulative[1] == 1);  // 25µs
  CHECK(s.cumulative[4] == 2);  // 250µs
  CHECK(s.cumulative[7] == 3);  // 2.5ms
  CHECK(s.cumulative[17] == 3); // 5s
  CHECK(s.cumulative[18] == 4); // 10s
  CHECK(s.count == 5);
}

TEST_CASE("a histogram rejects bounds that are not strictly increasing",
          "[runtime][metrics]") {
  CHECK_THROWS_AS(histogram({1e-3, 1e-3}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({1e-2, 1e-3}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({-1.0}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({std::numeric_limits<double>::infinity()}),
                  std::invalid_argument);
  CHECK_NOTHROW(histogram(std::vector<double>{}));
}

TEST_CASE("a snapshot taken during observations keeps +Inf equal to count",
          "[runtime][metrics]") {
  histogram h;
  constexpr int threads = 4;
  constexpr int per_thread = 100'000;
  auto consistent = run_with_time_limit(20s, [&h] {
    std::atomic<bool> go{false};
    std::vector<std::thread> writers;
    writers.reserve(threads);
    for (int t = 0; t < threads; ++t)
      writers.emplace_back([&h, &go, t] {
        while (!go)
          std::this_thread::yield();
        for (int i = 0; i < per_thread; ++i)
          h.observe_us((i * 7 + t) % 20'000'000);
      });
    go = true;
    bool ok = true;
    for (int i = 0; i < 200; ++i) {
      auto s = h.snapshot();
      for (size_t b = 1; b < s.cumulative.size(); ++b)
        ok = ok && s.cumulative[b - 1] <= s.cumulative[b];
      ok = ok && s.cumulative.back() <= s.count;
    }
    for (auto& w : writers)
      w.join();
    return ok;
  });
  CHECK(consistent);
  CHECK(h.snapshot().count == uint64_t{threads} * per_thread);
}

TEST_CASE("merging shard snapshots sums buckets, count and sum",
          "[runtime][metrics]") {
  histogram a{{1e-3, 1e-2}};
  histogram b{{1e-3, 1e-2}};
  a.observe_us(500);
  a.observe_us(20'000);
  b.observe_us(5'000);
  b.observe_us(900);
  b.observe_us(1'000);

  histogram_snapshot total; // a scrape starts empty
  total.merge(a.snapshot());
  total.merge(b.snapshot());
  CHECK(total.bounds == std::vector<double>{1e-3, 1e-2});
  CHECK(total.cumulative == std::vector<uint64_t>{3, 4});
  CHECK(total.count == 5);
  CHECK(total.sum == Approx(0.0274).epsilon(1e-12));

  // An empty snapshot merges into anything without effect.
  total.merge(histogram_snapshot{});
  CHECK(total.count == 5);

  histogram other{{1e-3}};
  other.observe_us(1);
  CHECK_THROWS_AS(total.merge(other.snapshot()), std::invalid_argument);
}

// -- text exposition format --------------------------------------------------

TEST_CASE("sample values are written so that Prometheus reads them back "
          "exactly",
          "[runtime][metrics]") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(-0.0) == "0");
  CHECK(format_value(42) == "42");
  CHECK(format_value(100000) == "100000");
  CHECK(format_value(1e20) == "100000000000000000000");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(0.0001) == "0.0001");
  CHECK(format_value(2.5e-5) == "2.5e-05");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(-1.5) == "-1.5");
  CHECK(format_value(0.1 + 0.2) == "0.30000000000000004");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::nan("")) == "NaN");
}

TEST_CASE("counters are written with their label values escaped",
          "[runtime][metrics]") {
  text_writer w;
  auto& handled =
    w.family("herald_events_handled_total",
             "Events handled.\nBy consumer and \\type.", metric_type::counter);
  handled.sample(
    {{"consumer", "EmailService"}, {"type", "user.account.created"}}, 42);
  handled.sample({{"consumer", R"(say "hi"\now)"}, {"type", "two\nlines"}},
                 std::numeric_limits<uint64_t>::max());
  handled.sample({}, 0);

  CHECK(
    w.str() ==
    R"(# HELP herald_events_handled_total Events handled.\nBy consumer and \\type.
# TYPE herald_events_handled_total counter
herald_events_handled_total{consumer="EmailService",type="user.account.created"} 42
herald_events_handled_total{consumer="say \"hi\"\\now",type="two\nlines"} 18446744073709551615
herald_events_handled_total 0
)");
}

TEST_CASE("samples of one family come under one HELP and TYPE even when "
          "written between other families",
          "[runtime][metrics]") {
  text_writer w;
  w.counter("herald_events_handled_total", "Events handled.",
            {{"consumer", "A"}}, 1);
  w.gauge("herald_consumer_backlog", "Events waiting.", {{"consumer", "A"}}, 3);
  w.counter("herald_events_handled_total", "Events handled.",
            {{"consumer", "B"}}, 2);
  w.gauge("herald_consumer_backlog", "Events waiting.", {{"consumer", "B"}},
          0.5);

  CHECK(w.str() == R"(# HELP herald_events_handled_total Events handled.
# TYPE herald_events_handled_total counter
herald_events_handled_total{consumer="A"} 1
herald_events_handled_total{consumer="B"} 2
# HELP herald_consumer_backlog Events waiting.
# TYPE herald_consumer_backlog gauge
herald_consumer_backlog{consumer="A"} 3
herald_consumer_backlog{consumer="B"} 0.5
)");
}

TEST_CASE("a histogram is written as cumulative buckets, sum and count",
          "[runtime][metrics]") {
  histogram h{{1e-4, 0.25, 1}};
  h.observe_us(100);
  h.observe_us(200'000);
  h.observe_us(3'000'000);
  text_writer w;
  w.histogram("herald_handler_duration_seconds", "Handler run time.",
              {{"consumer", "EmailService"}}, h.snapshot());
  w.histogram("herald_handler_duration_seconds", "Handler run time.", {},
              histogram{{1e-4, 0.25, 1}}.snapshot());

  CHECK(w.str() == R"(# HELP herald_handler_duration_seconds Handler run time.
# TYPE herald_handler_duration_seconds histogram
herald_handler_duration_seconds_bucket{consumer="EmailService",le="0.0001"} 1
herald_handler_duration_seconds_bucket{consumer="EmailService",le="0.25"} 2
herald_handler_duration_seconds_bucket{consumer="EmailService",le="1"} 2
herald_handler_duration_seconds_bucket{consumer="EmailService",le="+Inf"} 3
herald_handler_duration_seconds_sum{consumer="EmailService"} 3.2001
herald_handler_duration_seconds_count{consumer="EmailService"} 3
herald_handler_duration_seconds_bucket{le="0.0001"} 0
herald_handler_duration_seconds_bucket{le="0.25"} 0
herald_handler_duration_seconds_bucket{le="1"} 0
herald_handler_duration_seconds_bucket{le="+Inf"} 0
herald_handler_duration_seconds_sum 0
herald_handler_duration_seconds_count 0
)");
}

TEST_CASE("the writer refuses what would make an invalid scrape",
          "[runtime][metrics]") {
  text_writer w;
  CHECK_THROWS_AS(w.family("herald_events_handled", "", metric_type::counter),
                  std::invalid_argument);
  CHECK_THROWS_AS(w.family("herald-events", "", metric_type::gauge),
                  std::invalid_argument);
  CHECK_THROWS_AS(w.family("9lives", "", metric_type::gauge),
                  std::invalid_argument);

  auto& g = w.family("herald_backlog", "", metric_type::gauge);
  CHECK_THROWS_AS(w.family("herald_backlog", "", metric_type::counter),
                  std::invalid_argument);
  CHECK(&w.family("herald_backlog", "", metric_type::gauge) == &g);
  CHECK_THROWS_AS(g.sample({{"bad-name", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(g.sample({{"__reserved", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(g.sample({{"a", "x"}, {"a", "y"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(g.sample({}, histogram_snapshot{}), std::invalid_argument);
  g.sample({{"a", "x"}, {"b", "y"}}, 1);
  // The same series again, even with the labels in another order.
  CHECK_THROWS_AS(g.sample({{"b", "y"}, {"a", "x"}}, 2), std::invalid_argument);

  auto& h = w.family("herald_latency_seconds", "", metric_type::histogram);
  CHECK_THROWS_AS(h.sample({{"le", "1"}}, histogram_snapshot{}),
                  std::invalid_argument);
  CHECK_THROWS_AS(h.sample({}, 1.0), std::invalid_argument);

  // Nothing of the refused samples was written.
  CHECK(w.str() == R"(# HELP herald_backlog 
# TYPE herald_backlog gauge
herald_backlog{a="x",b="y"} 1
# HELP herald_latency_seconds 
# TYPE herald_latency_seconds histogram
)");
}

TEST_CASE("promtool accepts the writer's output without lint complaints",
          "[runtime][metrics]") {
  auto which = test::run("command -v promtool", 10s);
  if (which.exit_code != 0)
    FAIL("promtool is not on PATH; install the Debian package 'prometheus' "
         "(scripts/quickstart.sh test does)");

  histogram email;
  histogram billing;
  for (int64_t us : {7, 30, 450, 1'200, 80'000, 2'000'000, 12'000'000})
    email.observe_us(us);
  billing.observe_us(333);
  histogram_snapshot all;
  all.merge(email.snapshot());
  all.merge(billing.snapshot());

  text_writer w;
  auto& handled =
    w.family("herald_events_handled_total",
             "Events a consumer handled successfully.", metric_type::counter);
  handled.sample(
    {{"consumer", "EmailService"}, {"type", "user.account.created"}}, 42);
  handled.sample({{"consumer", "Billing \"EU\"\\1"}, {"type", "order\nplaced"}},
                 7);
  w.counter("herald_events_published_total", "Events this node published.", {},
            1'000'000);
  w.gauge("herald_consumer_backlog", "Events stored but not yet handled.",
          {{"consumer", "EmailService"}}, 12);
  w.gauge("herald_up", "Whether the node runs (1) or not.", {}, 1);
  w.histogram("herald_handler_duration_seconds",
              "Time a handler took per event.", {{"consumer", "EmailService"}},
              email.snapshot());
  w.histogram("herald_handler_duration_seconds",
              "Time a handler took per event.", {{"consumer", "Billing"}},
              billing.snapshot());
  w.histogram("herald_node_handler_duration_seconds",
              "Time every handler of the node took per event.", {}, all);

  test::temp_dir dir;
  test::write_text(dir / "scrape.txt", w.str());
  auto check = test::run("promtool check metrics < "
                           + test::shell_quote((dir / "scrape.txt").string()),
                         30s);
  INFO("scrape:\n" << w.str());
  INFO("promtool stdout:\n"
       << check.out << "\npromtool stderr:\n"
       << check.err);
  REQUIRE_FALSE(check.timed_out);
  CHECK(check.exit_code == 0);
  CHECK(check.out.empty());
  CHECK(check.err.empty());
}

// -- HTTP endpoint -----------------------------------------------------------

TEST_CASE("the metrics server answers /metrics, /healthz and 404",
          "[runtime][metrics]") {
  std::atomic<bool> healthy{true};
  auto srv = start_server(
    [] {
      text_writer w;
      w.counter("herald_events_handled_total", "Events handled.",
                {{"consumer", "EmailService"}}, 42);
      return w.str();
    },
    [&healthy]() -> std::pair<bool, std::string> {
      if (healthy)
        return {true, ""};
      return {false, "store: disk full"};
    });
  REQUIRE(srv->port() != 0);
  auto cli = client_for(srv->port());

  auto metrics = cli.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->get_header_value("Content-Type")
        == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(metrics->body == R"(# HELP herald_events_handled_total Events handled.
# TYPE herald_events_handled_total counter
herald_events_handled_total{consumer="EmailService"} 42
)");

  auto ok = cli.Get("/healthz");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->body == "ok\n");

  healthy = false;
  auto sick = cli.Get("/healthz");
  REQUIRE(sick);
  CHECK(sick->status == 503);
  CHECK(sick->body == "store: disk full\n");

  auto missing = cli.Get("/metrics/extra");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  auto wrong_method = cli.Post("/metrics", "", "text/plain");
  REQUIRE(wrong_method);
  CHECK(wrong_method->status == 404);
}

TEST_CASE("a failing metrics callback gives 500 with its message",
          "[runtime][metrics]") {
  auto srv = start_server(
    []() -> std::string {
      throw std::runtime_error("shard 3 did not answer");
    },
    []() -> std::pair<bool, std::string> {
      throw std::runtime_error("no store");
    });
  auto cli = client_for(srv->port());
  auto metrics = cli.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 500);
  CHECK(metrics->body == "metrics failed: shard 3 did not answer\n");
  auto health = cli.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 500);
  CHECK(health->body == "health check failed: no store\n");
}

TEST_CASE("a stopped metrics server closes its port", "[runtime][metrics]") {
  auto srv = start_server(
    [] {
      return std::string{};
    },
    [] {
      return std::pair<bool, std::string>{true, ""};
    });
  auto port = srv->port();
  run_with_time_limit(10s, [&srv] {
    srv->stop();
    srv->stop(); // idempotent
  });
  auto cli = client_for(port);
  CHECK_FALSE(cli.Get("/healthz"));
}

TEST_CASE("a metrics server stopped right after it started does not hang",
          "[runtime][metrics]") {
  // stop() may come before the listen thread runs; it must not be lost.
  auto started = run_with_time_limit(20s, [] {
    int n = 0;
    for (int i = 0; i < 50; ++i) {
      auto srv = http_server::start("127.0.0.1:0", {}, {});
      if (!srv)
        break;
      (*srv)->stop();
      ++n;
    }
    return n;
  });
  CHECK(started == 50);
}

TEST_CASE("a malformed metrics.listen is a config error naming the rule",
          "[runtime][metrics]") {
  auto srv = http_server::start("127.0.0.1:abc", {}, {});
  REQUIRE_FALSE(srv);
  CHECK(is(srv.error(), errc::invalid_config));
  CHECK(message_of(srv.error())
        == "metrics.listen '127.0.0.1:abc': expected HOST:PORT with a port "
           "0-65535 (0 picks a free one)");

  for (const char* listen :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:99999999999", ":9100", "::1:9100", "[::1]9100", "[::1",
        "127.0.0.1:80 "}) {
    INFO("listen: '" << listen << "'");
    auto r = http_server::start(listen, {}, {});
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::invalid_config));
    CHECK_THAT(
      message_of(r.error()),
      Catch::StartsWith(std::string{"metrics.listen '"} + listen + "': "));
  }
}

TEST_CASE("a second metrics server cannot share a busy port",
          "[runtime][metrics]") {
  // httplib's default SO_REUSEPORT would let both bind and split scrapes.
  auto first = start_server(
    [] {
      return std::string{"first\n"};
    },
    {});
  auto listen = "127.0.0.1:" + std::to_string(first->port());
  auto second = http_server::start(listen, {}, {});
  REQUIRE_FALSE(second);
  CHECK(is(second.error(), errc::invalid_config));
  CHECK(message_of(second.error())
        == "metrics.listen '" + listen
             + "': cannot listen there: Address already in use; choose a "
               "free port (0 picks one) or another address of this machine");

  // A port held by another program's plain socket is refused as well.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto busy = http_server::start(
    "127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), {}, {});
  ::close(fd);
  REQUIRE_FALSE(busy);
  CHECK(is(busy.error(), errc::invalid_config));

  // An address that is not this machine's cannot be bound either.
  auto foreign = http_server::start("192.0.2.1:0", {}, {});
  REQUIRE_FALSE(foreign);
  CHECK(is(foreign.error(), errc::invalid_config));

  // The first server still serves.
  auto cli = client_for(first->port());
  auto res = cli.Get("/metrics");
  REQUIRE(res);
  CHECK(res->body == "first\n");
}
