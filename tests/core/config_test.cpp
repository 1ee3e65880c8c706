#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/config.hpp"
#include "herald/core/errc.hpp"

using herald::dead_letter_policy;
using herald::errc;
using herald::format_duration;
using herald::node_config;
using herald::parse_duration;
using herald::retry_policy;

namespace {

std::string error_of(std::string_view yaml,
                     const std::string& file = "n.yaml") {
  auto cfg = node_config::parse(yaml, file);
  if (cfg)
    return {};
  CHECK(herald::is(cfg.error(), errc::invalid_config));
  return herald::message_of(cfg.error());
}

} // namespace

TEST_CASE("a full node configuration loads", "[core][config]") {
  auto cfg = node_config::parse(R"(node: email-node
service: EmailService
bind: tcp://127.0.0.1:5601
advertise: tcp://10.0.0.5:5601
peers: [tcp://127.0.0.1:5600, ipc:///tmp/herald.sock, inproc://local]
catalog: /etc/herald/events.yaml
log_level: debug
transport:
  hwm: 5000
  max_message_size: 65536
  heartbeat_ms: 250
consumers:
  EmailService:
    subscribe: [user.account.created]
  AuditService:
    subscribe: [user., "order.>", user.*.deleted]
)",
                                "n.yaml");
  INFO((cfg ? "" : herald::message_of(cfg.error())));
  REQUIRE(cfg);
  CHECK(cfg->name == "email-node");
  CHECK(cfg->service == "EmailService");
  CHECK(cfg->bind == "tcp://127.0.0.1:5601");
  CHECK(cfg->advertise == "tcp://10.0.0.5:5601");
  CHECK(cfg->peers
        == std::vector<std::string>{
          "tcp://127.0.0.1:5600", "ipc:///tmp/herald.sock", "inproc://local"});
  CHECK(cfg->catalog == "/etc/herald/events.yaml");
  CHECK(cfg->log_level == "debug");
  CHECK(cfg->transport.hwm == 5000);
  CHECK(cfg->transport.max_message_size == 65536);
  CHECK(cfg->transport.heartbeat == std::chrono::milliseconds{250});
  REQUIRE(cfg->consumers.size() == 2);
  CHECK(cfg->consumers[0].name == "EmailService");
  CHECK(cfg->consumers[0].subscribe
        == std::vector<std::string>{"user.account.created"});
  CHECK(cfg->consumers[1].name == "AuditService");
  CHECK(cfg->consumers[1].subscribe
        == std::vector<std::string>{"user.", "order.>", "user.*.deleted"});
}

TEST_CASE("a minimal node configuration gets the defaults", "[core][config]") {
  auto cfg =
    node_config::parse("node: user-node\ncatalog: events.yaml\n", "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->name == "user-node");
  CHECK(cfg->service == "user-node");
  CHECK(cfg->bind == "tcp://127.0.0.1:*");
  CHECK(cfg->advertise.empty());
  CHECK(cfg->peers.empty());
  CHECK(cfg->catalog == "events.yaml");
  CHECK(cfg->log_level == "info");
  CHECK(cfg->transport.hwm == 100000);
  CHECK(cfg->transport.max_message_size == 1024 * 1024);
  CHECK(cfg->transport.heartbeat == std::chrono::milliseconds{1000});
  CHECK(cfg->store.max_pending_bytes == 32 * 1024 * 1024);
  CHECK(cfg->store.publish_timeout == std::chrono::seconds{10});
  CHECK(cfg->groups.dead_letter_quota == uint64_t{256} << 20);
  CHECK(cfg->consumers.empty());
}

TEST_CASE("the bound on events queued for the disk and the publish wait load",
          "[core][config][backpressure]") {
  auto cfg = node_config::parse("node: n\ncatalog: e.yaml\nstore:\n"
                                "  max_pending_bytes: 1048576\n"
                                "  publish_timeout: 0s\n",
                                "n.yaml");
  INFO((cfg ? "" : herald::message_of(cfg.error())));
  REQUIRE(cfg);
  CHECK(cfg->store.max_pending_bytes == 1024 * 1024);
  CHECK(cfg->store.publish_timeout == std::chrono::microseconds{0});
}

TEST_CASE("the bounds on what peers and clients make a node keep load, "
          "with their defaults",
          "[core][config][bounds]") {
  auto defaults = node_config::parse("node: n\ncatalog: e.yaml\n", "n.yaml");
  REQUIRE(defaults);
  CHECK(defaults->transport.max_control_sockets == 128);
  CHECK(defaults->transport.control_idle == std::chrono::minutes{5});
  CHECK(defaults->transport.max_peer_streams == 1024);
  CHECK(defaults->transport.control_send_hwm == 16);
  CHECK(defaults->transport.control_backlog_bytes == size_t{8} << 20);
  CHECK(defaults->transport.max_held_bytes_per_stream == size_t{64} << 20);
  CHECK(defaults->transport.max_held_bytes == size_t{256} << 20);
  auto cfg = node_config::parse(
    "node: n\ncatalog: e.yaml\ntransport:\n  max_control_sockets: 32\n"
    "  control_idle_ms: 1000\n  max_peer_streams: 10\n"
    "  control_send_hwm: 4\n  control_backlog_bytes: 2097152\n"
    "  max_held_bytes_per_stream: 1000000\n  max_held_bytes: 3000000\n",
    "n.yaml");
  INFO((cfg ? "" : herald::message_of(cfg.error())));
  REQUIRE(cfg);
  CHECK(cfg->transport.max_control_sockets == 32);
  CHECK(cfg->transport.control_idle == std::chrono::seconds{1});
  CHECK(cfg->transport.max_peer_streams == 10);
  CHECK(cfg->transport.control_send_hwm == 4);
  CHECK(cfg->transport.control_backlog_bytes == 2097152);
  CHECK(cfg->transport.max_held_bytes_per_stream == 1000000);
  CHECK(cfg->transport.max_held_bytes == 3000000);
}

TEST_CASE("a relative catalog is resolved against the config's folder",
          "[core][config]") {
  const std::string yaml = "node: n\ncatalog: ../config/events.yaml\n";
  CHECK(node_config::parse(yaml, "n.yaml", "/srv/herald/nodes")->catalog
        == "/srv/herald/config/events.yaml");
  CHECK(node_config::parse(yaml, "n.yaml", "")->catalog
        == "../config/events.yaml");
  CHECK(node_config::parse("node: n\ncatalog: /abs/events.yaml\n", "n.yaml",
                           "/srv/herald")
          ->catalog
        == "/abs/events.yaml");

  auto dir = std::filesystem::temp_directory_path()
             / ("herald_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = dir / "node.yaml";
  std::ofstream{file} << "node: n\ncatalog: events.yaml\n";
  auto cfg = node_config::load_file(file.string());
  std::filesystem::remove_all(dir);
  REQUIRE(cfg);
  CHECK(cfg->catalog == (dir / "events.yaml").string());
}

TEST_CASE("a missing config file is an io_error naming the path",
          "[core][config]") {
  auto cfg = node_config::load_file("/nonexistent/node.yaml");
  REQUIRE_FALSE(cfg);
  CHECK(herald::is(cfg.error(), errc::io_error));
  CHECK(herald::message_of(cfg.error())
        == "cannot read config file '/nonexistent/node.yaml': no such file");
}

TEST_CASE("each configuration error names the key, the file and the line",
          "[core][config]") {
  struct row {
    std::string_view yaml;
    std::string_view message;
  };
  const std::string base = "node: n\ncatalog: e.yaml\n";
  const std::vector<row> rows = {
    {"node: n\ncatalog: e.yaml\nnod: x\n",
     "n.yaml:3: unknown key 'nod' (allowed: node, service, bind, advertise, "
     "peers, catalog, log_level, transport, consumers, data_dir, control, "
     "store, log, metrics, record, test_hooks, cluster, groups)"},
    {"node: n\ncatalog: e.yaml\ntest_hooks: {slow_keys: {k1: soon}}\n",
     "n.yaml:3: test_hooks: slow_keys: 'k1': 'soon' is not a positive "
     "duration"},
    {"node: n\ncatalog: e.yaml\ntest_hooks:\n  commit_before_handle: maybe\n",
     "n.yaml:4: test_hooks: 'commit_before_handle' must be true or false"},
    {"node: n\ncatalog: e.yaml\ntest_hooks: {fail_key: [a]}\n",
     "n.yaml:3: test_hooks: unknown key 'fail_key'"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  Email/Service:\n"
     "    subscribe: [a.b.c]\n",
     "n.yaml:4: consumer name 'Email/Service' holds '/' at byte 6: a "
     "consumer name is 1 to 128 letters, digits, '_', '.' or '-', starting "
     "with a letter or digit (e.g. EmailService, billing-v2); rename it"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retry: 3\n",
     "n.yaml:6: consumer 'A': 'retry' must be a map with attempts, initial, "
     "max, jitter, types"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retry: {jitter: 1.5}\n",
     "n.yaml:6: consumer 'A': retry: 'jitter' must be a fraction in [0, 1)"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retry: {attempts: 0}\n",
     "n.yaml:6: consumer 'A': retry: 'attempts' must be a positive integer"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retry: {initial: soon}\n",
     "n.yaml:6: consumer 'A': retry: 'initial': 'soon' is not a positive "
     "duration"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retry: {types: {Bad.Name: {attempts: 2}}}\n",
     "consumer 'A': retry: types: 'Bad.Name': "},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    dead_letter: drop\n",
     "n.yaml:6: consumer 'A': 'dead_letter': 'drop' is not a policy; use "
     "continue or park"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    alert: {window: 5m}\n",
     "consumer 'A': alert: missing 'dead_letters'"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    shards: 0\n",
     "n.yaml:6: consumer 'A': 'shards' must be a positive integer"},
    {"node: n\ncatalog: e.yaml\nlog: {format: xml}\n",
     "n.yaml:3: log: 'format': 'xml' is not a log format; use text or json"},
    {"node: n\ncatalog: e.yaml\nmetrics: {}\n", "metrics: missing 'listen'"},
    {"node: n\ncatalog: e.yaml\ntransport:\n  hwm: 1\n  hw: 2\n",
     "n.yaml:5: transport: unknown key 'hw' (allowed: hwm, max_message_size, "
     "heartbeat_ms, stream_heartbeat_ms, max_control_sockets, "
     "control_idle_ms, max_peer_streams, control_send_hwm, "
     "control_backlog_bytes, max_held_bytes_per_stream, max_held_bytes)"},
    {"node: n\ncatalog: e.yaml\ntransport: {max_control_sockets: 500}\n",
     "n.yaml:3: transport: 'max_control_sockets' must be at most 400, not "
     "500"},
    {"node: n\ncatalog: e.yaml\ntransport: {max_control_sockets: 0}\n",
     "n.yaml:3: transport: 'max_control_sockets' must be a positive integer "
     "(sockets)"},
    {"node: n\ncatalog: e.yaml\ntransport: {control_backlog_bytes: 1000}\n",
     "n.yaml:3: transport: 'control_backlog_bytes' must be at least "
     "max_message_size (1048576 bytes), not 1000"},
    {"node: n\ncatalog: e.yaml\ntransport: {max_held_bytes: -1}\n",
     "n.yaml:3: transport: 'max_held_bytes' must be a positive integer"},
    {"node: n\ncatalog: e.yaml\nstore:\n  fsync: sometimes\n",
     "n.yaml:4: 'fsync': 'sometimes' is not a policy; use always, batch or os"},
    {"node: n\ncatalog: e.yaml\nstore:\n  retention: 7 days\n",
     "n.yaml:4: 'retention': '7 days' is not a positive duration"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    retries: 3\n",
     "n.yaml:6: consumer 'A': unknown key 'retries' (allowed: subscribe, "
     "shards, entity_buffer, retry, dead_letter, alert, concurrency, "
     "handler_timeout, restarts, stall_after, partitions)"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    concurrency: -1\n",
     "n.yaml:6: consumer 'A': 'concurrency' must be an integer from 0 "
     "(handlers on the shards, for handlers that never block) to 1024 "
     "(handler calls at once), not '-1'"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    concurrency: 5000\n",
     "consumer 'A': 'concurrency' must be an integer from 0"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    handler_timeout: 0s\n",
     "n.yaml:6: consumer 'A': 'handler_timeout': '0s' is not a positive "
     "duration"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    stall_after: never\n",
     "n.yaml:6: consumer 'A': 'stall_after': 'never' is not a positive "
     "duration"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    restarts: 5\n",
     "n.yaml:6: consumer 'A': 'restarts' must be a map with max, within"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    restarts: {max: 0}\n",
     "n.yaml:6: consumer 'A': restarts: 'max' must be a positive integer"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [a.b.c]\n"
     "    restarts: {max: 3, in: 1m}\n",
     "consumer 'A': restarts: unknown key 'in' (allowed: max, within)"},
    {"catalog: e.yaml\n",
     "n.yaml:1: missing 'node' (the node's name, e.g. node: email-node)"},
    {"node: n\n", "n.yaml:1: missing 'catalog' (the path of the event "
                  "catalog, e.g. catalog: events.yaml)"},
    {"node: [a]\ncatalog: e.yaml\n", "n.yaml:1: 'node' must be a name"},
    {"node: n\ncatalog: e.yaml\ntransport: {hwm: 0}\n",
     "n.yaml:3: transport: 'hwm' must be a positive integer (messages), not "
     "'0'"},
    {"node: n\ncatalog: e.yaml\ntransport: {hwm: -5}\n",
     "n.yaml:3: transport: 'hwm' must be a positive integer (messages), not "
     "'-5'"},
    {"node: n\ncatalog: e.yaml\ntransport: {hwm: 99999999999}\n",
     "transport: 'hwm' must be a positive integer"},
    {"node: n\ncatalog: e.yaml\ntransport: {max_message_size: 1MB}\n",
     "n.yaml:3: transport: 'max_message_size' must be a positive integer "
     "(bytes), not '1MB'"},
    {"node: n\ncatalog: e.yaml\nstore:\n  max_pending_bytes: 100\n",
     "n.yaml:4: store: 'max_pending_bytes' must be at least 4096 bytes, not "
     "100"},
    {"node: n\ncatalog: e.yaml\ngroups: {dead_letter_quota: 0}\n",
     "n.yaml:3: groups: 'dead_letter_quota' must be a positive integer "
     "(bytes), not '0'"},
    {"node: n\ncatalog: e.yaml\nstore: {publish_timeout: -1s}\n",
     "n.yaml:3: store: 'publish_timeout': '-1s' is not a non-negative "
     "duration"},
    // Below a live batch, nothing would ever be delivered.
    {"node: n\ncatalog: e.yaml\ntransport:\n  max_message_size: 200\n",
     "n.yaml:4: transport: 'max_message_size' must be at least 65536 bytes "
     "(64 KiB), not 200"},
    {"node: n\ncatalog: e.yaml\ntransport: {heartbeat_ms: [1]}\n",
     "n.yaml:3: transport: 'heartbeat_ms' must be a positive integer "
     "(milliseconds), not a list or map"},
    {"node: n\ncatalog: e.yaml\ntransport: 5\n",
     "n.yaml:3: 'transport' must be a map"},
    {"node: n\ncatalog: e.yaml\nlog_level: verbose\n",
     "n.yaml:3: 'log_level': 'verbose' is not a level; use one of trace, "
     "debug, info, warn, error, critical, off"},
    {"node: n\ncatalog: e.yaml\npeers: tcp://127.0.0.1:5600\n",
     "n.yaml:3: 'peers' must be a list of endpoints, e.g. "
     "[tcp://127.0.0.1:5600]"},
    {"node: n\ncatalog: e.yaml\npeers:\n  - tcp://127.0.0.1:5600\n"
     "  - 127.0.0.1:5601\n",
     "n.yaml:5: 'peers': '127.0.0.1:5601' is not a ZeroMQ endpoint: it "
     "does not start with tcp://, ipc:// or inproc://; use tcp://HOST:PORT, "
     "ipc://PATH or inproc://NAME"},
    {"node: n\ncatalog: e.yaml\nbind: udp://0.0.0.0:1\n",
     "n.yaml:3: 'bind': 'udp://0.0.0.0:1' is not a ZeroMQ endpoint"},
    {"node: n\ncatalog: e.yaml\nadvertise: tcp://\n",
     "n.yaml:3: 'advertise': 'tcp://' is not a ZeroMQ endpoint"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe: [user.*]\n",
     "n.yaml:5: consumer 'A': subscription pattern 'user.*': has 2 parts and "
     "never matches a 3-part event name"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A:\n    subscribe:\n"
     "      - user.account.created\n      - User.\n",
     "n.yaml:7: consumer 'A': subscription pattern 'User.': part 1 'User' "
     "must match [a-z][a-z0-9_]*"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A: {}\n",
     "n.yaml:4: consumer 'A': missing 'subscribe' (a list of patterns"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A: {subscribe: user.}\n",
     "n.yaml:4: consumer 'A': 'subscribe' must be a list of patterns"},
    {"node: n\ncatalog: e.yaml\nconsumers:\n  A: {subscribe: [a.b.c]}\n"
     "  A: {subscribe: [a.b.d]}\n",
     "n.yaml:5: duplicate consumer 'A' (first at line 4)"},
    {"node: n\ncatalog: e.yaml\nconsumers: [A]\n",
     "n.yaml:3: 'consumers' must be a map"},
    {"node: n\nnode: m\ncatalog: e.yaml\n",
     "n.yaml:2: duplicate key 'node' (first at line 1)"},
    {"[node, n]\n", "n.yaml:1: a node configuration must be a map"},
    {"", "n.yaml: a node configuration must be a map"},
    {"node: n\ncatalog: [e.yaml\n", "n.yaml:3: YAML syntax error: "},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    CHECK_THAT(error_of(r.yaml), Catch::Contains(std::string{r.message}));
  }
}

TEST_CASE("every configuration problem is reported at once", "[core][config]") {
  auto message = error_of(R"(service: EmailService
bind: pgm://x
log_level: loud
transport:
  hwm: 0
  colour: red
consumers:
  EmailService:
    subscribe: [user.account]
)",
                          "/etc/herald/email.yaml");
  const std::vector<std::string_view> expected = {
    "/etc/herald/email.yaml:1: missing 'node'",
    "/etc/herald/email.yaml:1: missing 'catalog'",
    "/etc/herald/email.yaml:2: 'bind': 'pgm://x' is not a ZeroMQ endpoint",
    "/etc/herald/email.yaml:3: 'log_level': 'loud' is not a level",
    "/etc/herald/email.yaml:5: transport: 'hwm' must be a positive integer",
    "/etc/herald/email.yaml:6: transport: unknown key 'colour'",
    "/etc/herald/email.yaml:9: consumer 'EmailService': subscription "
    "pattern 'user.account': has 2 parts",
  };
  for (auto line : expected)
    CHECK_THAT(message, Catch::Contains(std::string{line}));
  CHECK(std::count(message.begin(), message.end(), '\n') + 1
        == static_cast<long>(expected.size()));
}

TEST_CASE("durations read as a number and a unit", "[core][config]") {
  using namespace std::chrono;
  CHECK(*herald::parse_duration("7d") == hours{24 * 7});
  CHECK(*herald::parse_duration("12h") == hours{12});
  CHECK(*herald::parse_duration("30m") == minutes{30});
  CHECK(*herald::parse_duration("45s") == seconds{45});
  CHECK(*herald::parse_duration("500ms") == milliseconds{500});
  CHECK(*herald::parse_duration("250us") == microseconds{250});
  for (auto bad : {"", "7", "d", "7 d", "7w", "-1s", "1.5h"})
    CHECK_FALSE(herald::parse_duration(bad));
}

TEST_CASE("the store settings default to 7 days and fsync batch",
          "[core][config]") {
  auto cfg = node_config::parse("node: n\ncatalog: e.yaml\n", "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->store.fsync == "batch");
  CHECK(cfg->store.retention == std::chrono::hours{24 * 7});
  auto custom = node_config::parse("node: n\ncatalog: e.yaml\ndata_dir: /d\n"
                                   "store:\n  fsync: os\n  retention: 12h\n",
                                   "n.yaml");
  REQUIRE(custom);
  CHECK(custom->data_dir == "/d");
  CHECK(custom->store.fsync == "os");
  CHECK(custom->store.retention == std::chrono::hours{12});
}

TEST_CASE("a consumer's ordering, retry, dead-letter and alert settings load",
          "[core][config]") {
  auto cfg = node_config::parse(R"(node: n
catalog: e.yaml
log: {level: debug, format: json}
metrics: {listen: 127.0.0.1:0}
consumers:
  EmailService:
    subscribe: [user.account.created]
    shards: 4
    entity_buffer: 64
    retry:
      attempts: 5
      initial: 50ms
      max: 2s
      jitter: 0.1
      types:
        user.account.deleted: {attempts: 2}
    dead_letter: park
    alert: {dead_letters: 10, window: 5m, command: notify.sh}
    concurrency: 16
    handler_timeout: 5s
    restarts: {max: 3, within: 30s}
    stall_after: 90s
  BillingService:
    subscribe: [user.account.deleted]
)",
                                "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->log_level == "debug");
  CHECK(cfg->log_format == "json");
  CHECK(cfg->metrics_listen == "127.0.0.1:0");
  auto& c = cfg->consumers.at(0);
  CHECK(c.shards == 4);
  CHECK(c.entity_buffer == 64);
  CHECK(c.retry.attempts == 5);
  CHECK(c.retry.initial == std::chrono::milliseconds{50});
  CHECK(c.retry.max == std::chrono::seconds{2});
  CHECK(c.retry.jitter == Approx(0.1));
  CHECK(c.on_dead_letter == dead_letter_policy::park);
  CHECK(c.alert.dead_letters == 10);
  CHECK(c.alert.window == std::chrono::minutes{5});
  CHECK(c.alert.command == "notify.sh");
  CHECK(c.concurrency == 16);
  CHECK(c.handler_timeout == std::chrono::seconds{5});
  CHECK(c.restarts.max == 3);
  CHECK(c.restarts.within == std::chrono::seconds{30});
  CHECK(c.stall_after == std::chrono::seconds{90});
  // A per-type override keeps the consumer's other settings.
  auto& deleted = c.retry_for("user.account.deleted");
  CHECK(deleted.attempts == 2);
  CHECK(deleted.initial == std::chrono::milliseconds{50});
  CHECK(&c.retry_for("user.account.created") == &c.retry);
  // Defaults.
  auto& b = cfg->consumers.at(1);
  CHECK(b.shards == 8);
  CHECK(b.entity_buffer == 1024);
  CHECK(b.retry.attempts == 3);
  CHECK(b.retry.initial == std::chrono::milliseconds{200});
  CHECK(b.retry.max == std::chrono::seconds{10});
  CHECK(b.retry.jitter == Approx(0.2));
  CHECK(b.on_dead_letter == dead_letter_policy::continue_);
  CHECK(b.alert.dead_letters == 0);
  CHECK(b.concurrency == 64);
  CHECK(b.handler_timeout == std::chrono::seconds{30});
  CHECK(b.restarts.max == 5);
  CHECK(b.restarts.within == std::chrono::minutes{1});
  CHECK(b.stall_after == std::chrono::minutes{5});
}

TEST_CASE("concurrency 0 is allowed: handlers on the shards",
          "[core][config]") {
  auto cfg = node_config::parse("node: n\ncatalog: e.yaml\nconsumers:\n"
                                "  A: {subscribe: [a.b.c], concurrency: 0}\n",
                                "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->consumers.at(0).concurrency == 0);
}

TEST_CASE("retry delays double from initial, spread by jitter, capped by max",
          "[core][config]") {
  retry_policy p;
  p.initial = std::chrono::milliseconds{100};
  p.max = std::chrono::milliseconds{1000};
  p.jitter = 0.2;
  using us = std::chrono::microseconds;
  // unit 0.5 is the middle of the spread: the schedule itself.
  CHECK(p.delay(2, 0.5) == us{100'000});
  CHECK(p.delay(3, 0.5) == us{200'000});
  CHECK(p.delay(4, 0.5) == us{400'000});
  CHECK(p.delay(5, 0.5) == us{800'000});
  CHECK(p.delay(6, 0.5) == us{1'000'000}); // capped
  CHECK(p.delay(60, 0.5) == us{1'000'000});
  // The ends of the spread: ±20 %.
  CHECK(p.delay(2, 0.0) == us{80'000});
  CHECK(p.delay(3, 0.999999).count() == Approx(240'000).margin(1));
  CHECK(p.delay(6, 0.0) == us{1'000'000}); // 1.28 s - 20 %, capped
}

TEST_CASE("durations format the way they parse", "[core][config]") {
  using namespace std::chrono;
  for (auto d :
       {microseconds{hours{24 * 7}}, microseconds{minutes{5}},
        microseconds{milliseconds{1500}}, microseconds{250}, microseconds{0}}) {
    auto text = format_duration(d);
    auto back = parse_duration(text);
    INFO(text);
    if (d.count() == 0)
      CHECK(text == "0us");
    else
      CHECK((back && *back == d));
  }
  CHECK(format_duration(minutes{5}) == "5m");
  CHECK(format_duration(hours{24 * 7}) == "7d");
  CHECK(format_duration(milliseconds{1500}) == "1500ms");
}

TEST_CASE("record and test_hooks are read; test_hooks alone enables them",
          "[core][config]") {
  auto cfg = node_config::parse(
    "node: n\ncatalog: e.yaml\nrecord: out/n.jsonl\ntest_hooks:\n"
    "  fail_keys: [a, b]\n  slow_keys: {c: 250ms}\n"
    "  commit_before_handle: true\n",
    "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->record == "out/n.jsonl");
  CHECK(cfg->test_hooks.enabled);
  CHECK(cfg->test_hooks.fail_keys == std::vector<std::string>{"a", "b"});
  REQUIRE(cfg->test_hooks.slow_keys.size() == 1);
  CHECK(cfg->test_hooks.slow_keys[0].second == std::chrono::milliseconds{250});
  CHECK(cfg->test_hooks.commit_before_handle);
  auto bare =
    node_config::parse("node: n\ncatalog: e.yaml\ntest_hooks:\n", "n.yaml");
  REQUIRE(bare);
  CHECK(bare->test_hooks.enabled);
  auto none = node_config::parse("node: n\ncatalog: e.yaml\n", "n.yaml");
  REQUIRE(none);
  CHECK_FALSE(none->test_hooks.enabled);
  CHECK(none->record.empty());
}

TEST_CASE("a bad bind value is reported with the config file and line",
          "[core][config]") {
  struct row {
    std::string_view yaml;
    std::string_view message;
  };
  const std::vector<row> rows = {
    {"node: n\ncatalog: e.yaml\nbind: tcp://127.0.0.1:notaport\n",
     "n.yaml:3: 'bind': 'tcp://127.0.0.1:notaport' is not a ZeroMQ endpoint: "
     "the port 'notaport' is not a number 0-65535 or *"},
    {"node: n\ncatalog: e.yaml\nbind: tcp://127.0.0.1:65536\n",
     "n.yaml:3: 'bind': 'tcp://127.0.0.1:65536' is not a ZeroMQ endpoint: "
     "the port '65536' is not a number 0-65535 or *"},
    {"node: n\ncatalog: e.yaml\nbind: tcp://127.0.0.1\n",
     "n.yaml:3: 'bind': 'tcp://127.0.0.1' is not a ZeroMQ endpoint: it has "
     "no ':PORT'"},
    {"node: n\ncatalog: e.yaml\nbind: tcp://:5600\n",
     "n.yaml:3: 'bind': 'tcp://:5600' is not a ZeroMQ endpoint: the host "
     "before ':PORT' is empty (use * for every interface)"},
    {"node: n\ncatalog: e.yaml\nbind: ipc://\n",
     "n.yaml:3: 'bind': 'ipc://' is not a ZeroMQ endpoint: nothing follows "
     "'ipc://'"},
    {"node: n\ncatalog: e.yaml\ncontrol: tcp://127.0.0.1:x\n",
     "n.yaml:3: 'control': 'tcp://127.0.0.1:x' is not a ZeroMQ endpoint"},
    {"node: n\ncatalog: e.yaml\npeers: [tcp://127.0.0.1:*]\n",
     "n.yaml:3: 'peers': 'tcp://127.0.0.1:*' is not a ZeroMQ endpoint: a "
     "port of '*' can be bound, not connected to; give the port"},
    {"node: n\ncatalog: e.yaml\nadvertise: tcp://127.0.0.1:0\n",
     "n.yaml:3: 'advertise': 'tcp://127.0.0.1:0' is not a ZeroMQ endpoint: "
     "the port '0' is not a number 1-65535"},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    CHECK_THAT(error_of(r.yaml), Catch::Contains(std::string{r.message}));
  }
  // What binds: a wildcard port and interface, ipc and inproc.
  for (auto ok :
       {"tcp://*:*", "tcp://127.0.0.1:0", "tcp://eth0:5600", "tcp://[::1]:5600",
        "ipc:///tmp/herald.sock", "inproc://node"}) {
    INFO(ok);
    auto cfg = node_config::parse(
      "node: n\ncatalog: e.yaml\nbind: " + std::string{ok} + "\n", "n.yaml");
    CHECK(cfg);
  }
}

TEST_CASE("a config remembers where its settings were read", "[core][config]") {
  auto cfg = node_config::parse("node: n\n"
                                "catalog: events.yaml\n"
                                "bind: tcp://127.0.0.1:5600\n"
                                "peers:\n"
                                "  - tcp://127.0.0.1:5601\n"
                                "data_dir: /var/lib/herald\n"
                                "consumers:\n"
                                "  A:\n"
                                "    subscribe: [a.b.c]\n",
                                "/etc/herald/n.yaml", "/etc/herald");
  REQUIRE(cfg);
  auto& o = cfg->origin;
  CHECK(o.file == "/etc/herald/n.yaml");
  CHECK(o.place("catalog", "/etc/herald/events.yaml")
        == "/etc/herald/n.yaml:2: ");
  CHECK(o.place("bind", "tcp://127.0.0.1:5600") == "/etc/herald/n.yaml:3: ");
  CHECK(o.place("peers", "tcp://127.0.0.1:5601") == "/etc/herald/n.yaml:5: ");
  CHECK(o.place("data_dir", "/var/lib/herald") == "/etc/herald/n.yaml:6: ");
  CHECK(o.place("consumers.A.subscribe", "a.b.c") == "/etc/herald/n.yaml:9: ");
  // A value changed since (e.g. --data-dir), or not set there.
  CHECK(o.place("data_dir", "/tmp/other") == "/etc/herald/n.yaml: ");
  CHECK(o.place("control", "tcp://127.0.0.1:*") == "/etc/herald/n.yaml: ");
  auto err = o.locate("bind", "tcp://127.0.0.1:5600",
                      herald::make_error(errc::io_error, "cannot bind"));
  CHECK(herald::is(err, errc::io_error));
  CHECK(herald::message_of(err) == "/etc/herald/n.yaml:3: bind: cannot bind");
  // A config made in code has no file.
  CHECK(herald::node_config{}.origin.place("bind", "x").empty());
}

TEST_CASE("the cluster section loads, with membership's defaults",
          "[core][config]") {
  auto plain =
    node_config::parse("node: user-node\ncatalog: events.yaml\n", "n.yaml");
  REQUIRE(plain);
  CHECK(plain->cluster.name == "herald");
  CHECK(plain->cluster.seeds.empty());
  CHECK(plain->cluster.suspect_after == std::chrono::milliseconds{1500});
  CHECK(plain->cluster.down_after == std::chrono::seconds{3});
  CHECK(plain->cluster.probe_interval == std::chrono::milliseconds{500});
  CHECK(plain->cluster.sync_interval == std::chrono::seconds{2});
  CHECK(plain->cluster.reconnect_window == std::chrono::hours{1});

  auto cfg = node_config::parse(R"(node: user-node
catalog: events.yaml
cluster:
  name: orders-prod
  seeds: [tcp://10.0.0.1:7001, tcp://10.0.0.2:7001]
  suspect_after: 2s
  down_after: 6s
  probe_interval: 250ms
  sync_interval: 5s
  reconnect_window: 30m
)",
                                "n.yaml");
  REQUIRE(cfg);
  CHECK(cfg->cluster.name == "orders-prod");
  CHECK(
    cfg->cluster.seeds
    == std::vector<std::string>{"tcp://10.0.0.1:7001", "tcp://10.0.0.2:7001"});
  CHECK(cfg->cluster.suspect_after == std::chrono::seconds{2});
  CHECK(cfg->cluster.down_after == std::chrono::seconds{6});
  CHECK(cfg->cluster.probe_interval == std::chrono::milliseconds{250});
  CHECK(cfg->cluster.sync_interval == std::chrono::seconds{5});
  CHECK(cfg->cluster.reconnect_window == std::chrono::minutes{30});
  CHECK(cfg->origin.place("cluster.seeds", "tcp://10.0.0.2:7001")
        == "n.yaml:5: ");
}

TEST_CASE("a bad cluster section is reported with the key, file and line",
          "[core][config]") {
  auto base = std::string{"node: n\ncatalog: events.yaml\n"};
  auto err =
    error_of(base + "cluster:\n  suspect_after: 3s\n  down_after: 2s\n");
  CHECK(err.find("n.yaml:5") != std::string::npos);
  CHECK(err.find("'down_after' (2s) must be more than 'suspect_after' (3s)")
        != std::string::npos);
  err = error_of(base + "cluster:\n  probe_interval: 2s\n");
  CHECK(err.find("'probe_interval' (2s) must be less than 'suspect_after'")
        != std::string::npos);
  err = error_of(base + "cluster:\n  name: 'prod cluster'\n");
  CHECK(err.find("n.yaml:4") != std::string::npos);
  CHECK(err.find("'prod cluster' is not a cluster name") != std::string::npos);
  err = error_of(base + "cluster:\n  seeds: tcp://10.0.0.1:7001\n");
  CHECK(err.find("'seeds' must be a list of control endpoints")
        != std::string::npos);
  err = error_of(base + "cluster:\n  seeds: [10.0.0.1:7001]\n");
  CHECK(err.find("n.yaml:4") != std::string::npos);
  CHECK(err.find("seeds") != std::string::npos);
  err = error_of(base + "cluster:\n  down_after: soon\n");
  CHECK(err.find("'down_after': 'soon' is not a positive duration")
        != std::string::npos);
  err = error_of(base + "cluster:\n  gossip: fast\n");
  CHECK(err.find("gossip") != std::string::npos);
}
