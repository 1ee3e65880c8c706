#pragma once

// Reads a node's `/healthz` in tests.

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <string>
#include <utility>

#include <httplib.h>

namespace herald::test {

// GET /healthz on 127.0.0.1:`port`: the status code and the body.
/// The value of the sample `series` (name and labels as written, e.g.
/// `herald_cluster_members{status="up"}`) in a /metrics text; -1 when
/// absent.
inline double sample_of(const std::string& text, const std::string& series) {
  std::istringstream lines{text};
  std::string line;
  while (std::getline(lines, line))
    if (line.starts_with(series + " "))
      return std::stod(line.substr(series.size() + 1));
  return -1;
}

/// GET /metrics on 127.0.0.1:`port`: the body (REQUIREs a 200).
inline std::string metrics_text(int port) {
  httplib::Client http{"127.0.0.1", port};
  http.set_read_timeout(std::chrono::seconds{5});
  auto res = http.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  return res->body;
}

struct healthz {
  explicit healthz(int port) : http("127.0.0.1", port) {
    http.set_read_timeout(std::chrono::seconds{5});
  }
  std::pair<int, std::string> operator()() {
    auto r = http.Get("/healthz");
    REQUIRE(r);
    return {r->status, r->body};
  }
  httplib::Client http;
};

} // namespace herald::test
