// The `publish` op of the control protocol: its messages, and a node
// serving it (acknowledged once durable, a request id published once).

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include "deadline.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/control_client.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;

namespace {

control::publish_request publish_req(std::string request_id,
                                     std::vector<int> users) {
  control::publish_request m;
  m.id = 21;
  m.request_id = std::move(request_id);
  for (int i : users)
    m.events.push_back({"user.account.created", created(i)});
  return m;
}

control_client connect(const std::string& endpoint) {
  control_client_options opts;
  opts.timeout = 10s;
  auto c = control_client::connect(endpoint, opts);
  if (!c)
    FAIL("no client: " << message_of(c.error()));
  return std::move(*c);
}

// The head of `n`'s stream, as a replay request sees it.
uint64_t head_of(node& n, control_client& client) {
  control::replay_request r;
  r.stream = n.stream();
  r.from = 1;
  r.max = 1;
  auto reply = client.call(r);
  REQUIRE(reply);
  return reply->head;
}

} // namespace

TEST_CASE("publish messages read back as they were written",
          "[runtime][control]") {
  auto req = publish_req("batch-1", {1, 2});
  auto decoded = control::decode_request(control::encode(req));
  REQUIRE(decoded);
  CHECK(std::get<control::publish_request>(*decoded) == req);
  CHECK(control::op_name(*decoded) == "publish");

  control::publish_reply rep;
  rep.id = 21;
  rep.request_id = "batch-1";
  rep.acks = {{"0190c0de-0000-7000-8000-000000000001", "s-1", 7}};
  SECTION("all published") {}
  SECTION("refused at an index") {
    rep.refused = 1;
    rep.reason = "event 'user.account.created': field 'email': ...";
  }
  auto back =
    control::decode_reply<control::publish_reply>(control::encode(rep));
  REQUIRE(back);
  CHECK(std::get<control::publish_reply>(*back) == rep);
}

TEST_CASE("a publish request outside its limits is refused, naming the "
          "field",
          "[runtime][control]") {
  auto check_refused = [](const control::publish_request& m,
                          const std::string& what) {
    auto decoded = control::decode_request(control::encode(m));
    REQUIRE_FALSE(decoded);
    CHECK(is(decoded.error(), errc::decode_error));
    CHECK_THAT(message_of(decoded.error()), Catch::Contains(what));
  };
  check_refused(publish_req("", {1}), "request_id");
  check_refused(publish_req(std::string(control::max_request_id + 1, 'r'), {1}),
                "request_id");
  check_refused(publish_req("r", {}), "events");
  std::vector<int> many(control::max_publish_events + 1, 1);
  check_refused(publish_req("r", many), "expected 1 to 256");
  auto not_a_map = publish_req("r", {1});
  not_a_map.events[0].data = payload::array({1, 2});
  // The encoder writes what it is given; the decoder refuses it.
  check_refused(not_a_map, "events[0].data");
}

TEST_CASE("a node acknowledges a publish once durable and publishes a "
          "request id once",
          "[runtime][control]") {
  auto n = start(make_config("pub", "UserService"));
  auto client = connect(n->control_endpoint());

  auto first = client.call(publish_req("once", {1}));
  REQUIRE(first);
  REQUIRE(first->acks.size() == 1);
  CHECK_FALSE(first->refused);
  CHECK(first->request_id == "once");
  CHECK(first->acks[0].stream == n->stream());
  CHECK(first->acks[0].seq == 1);
  CHECK(head_of(*n, client) == 1);

  // The same request id again, e.g. re-sent after a timeout: the same ack,
  // nothing appended.
  auto again = client.call(publish_req("once", {1}));
  REQUIRE(again);
  CHECK(again->acks == first->acks);
  CHECK(head_of(*n, client) == 1);

  SECTION("the same id with other events is refused, naming the id") {
    auto other = client.call(publish_req("once", {2}));
    REQUIRE_FALSE(other);
    CHECK(is(other.error(), errc::remote_error));
    CHECK_THAT(message_of(other.error()), Catch::Contains("'once'"));
    CHECK(head_of(*n, client) == 1);
  }
  SECTION("a new id publishes") {
    auto next = client.call(publish_req("twice", {2, 3}));
    REQUIRE(next);
    REQUIRE(next->acks.size() == 2);
    CHECK(next->acks[0].seq == 2);
    CHECK(next->acks[1].seq == 3);
    CHECK(head_of(*n, client) == 3);
  }
  SECTION("a request sent twice at once is published once") {
    // Both arrive before the first is durable, or the second after: the
    // same reply either way.
    zmq::context_t ctx;
    zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::rcvtimeo, 10000);
    dealer.connect(n->control_endpoint());
    auto req = publish_req("burst", {4, 5, 6});
    req.id = 1;
    auto a = control::encode(req);
    req.id = 2;
    auto b = control::encode(req);
    REQUIRE(dealer.send(zmq::buffer(a)));
    REQUIRE(dealer.send(zmq::buffer(b)));
    std::vector<control::publish_reply> replies;
    for (int i = 0; i < 2; ++i) {
      zmq::message_t msg;
      REQUIRE(dealer.recv(msg));
      auto got =
        control::decode_reply<control::publish_reply>(msg.to_string_view());
      REQUIRE(got);
      REQUIRE(std::holds_alternative<control::publish_reply>(*got));
      replies.push_back(std::get<control::publish_reply>(*got));
    }
    CHECK(replies[0].id + replies[1].id == 3);
    CHECK(replies[0].acks == replies[1].acks);
    REQUIRE(replies[0].acks.size() == 3);
    CHECK(replies[0].acks[2].seq == 4);
    CHECK(head_of(*n, client) == 4);
  }
}

TEST_CASE("a node stops a publish batch at the first refused event",
          "[runtime][control]") {
  auto n = start(make_config("pub-bad", "UserService"));
  auto client = connect(n->control_endpoint());
  auto req = publish_req("bad-second", {1, 2, 3});
  req.events[1].data["email"] = "not-an-email";
  auto reply = client.call(req);
  REQUIRE(reply);
  REQUIRE(reply->refused);
  CHECK(*reply->refused == 1);
  CHECK_THAT(reply->reason, Catch::Contains("user.account.created")
                              && Catch::Contains("email")
                              && Catch::Contains("not-an-email"));
  REQUIRE(reply->acks.size() == 1);
  CHECK(reply->acks[0].seq == 1);
  CHECK(head_of(*n, client) == 1);
}

TEST_CASE("a node refuses to publish a type its service does not produce",
          "[runtime][control]") {
  auto n = start(make_config("pub-email", "EmailService"));
  auto client = connect(n->control_endpoint());
  auto reply = client.call(publish_req("not-mine", {1}));
  REQUIRE(reply);
  REQUIRE(reply->refused);
  CHECK(*reply->refused == 0);
  CHECK(reply->acks.empty());
  CHECK_THAT(reply->reason, Catch::Contains("produced by 'UserService'")
                              && Catch::Contains("not by 'EmailService'"));
}

TEST_CASE("a publish is acknowledged under every fsync policy",
          "[runtime][control]") {
  // With `os` the log may write a record on the appending thread (the
  // pump's) and hand it out before the request is parked: the request
  // must find its events durable and complete at once.
  auto policy =
    GENERATE(std::string{"os"}, std::string{"always"}, std::string{"batch"});
  INFO("fsync: " << policy);
  auto cfg = make_config("pub-" + policy, "UserService");
  cfg.store.fsync = policy;
  auto n = start(cfg);
  auto client = connect(n->control_endpoint());
  for (int i = 1; i <= 20; ++i) {
    auto reply =
      client.call(publish_req("r" + std::to_string(i), {i, i + 100}));
    REQUIRE(reply);
    REQUIRE(reply->acks.size() == 2);
    CHECK(reply->acks[1].seq == static_cast<uint64_t>(2 * i));
  }
  CHECK(head_of(*n, client) == 40);
}
