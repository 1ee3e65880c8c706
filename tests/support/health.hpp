#pragma once

// Reads a node's `/healthz` in tests.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>

#include <httplib.h>

namespace herald::test {

// GET /healthz on 127.0.0.1:`port`: the status code and the body.
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
