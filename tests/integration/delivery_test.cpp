// Delivery guarantees as a user observes them, with real processes: a
// producer (examples/user_service) and a consumer (the test service as
// EmailService) that appends one line per handler call to a --record file:
// `<stream> <seq> <key> <redelivered 0|1> <id>`.
//
// What every test asserts on that file: the events handled are exactly the
// ones the producer's log holds (every seq, none twice with different ids),
// and per (stream, key) the first handling of each event follows seq order.
// Duplicates are allowed (at-least-once) but must be marked redelivered.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "deadline.hpp"
#include "process.hpp"

using namespace herald::test;
using namespace std::chrono_literals;

namespace {

const std::string src = HERALD_SOURCE_DIR;
const std::string bin = HERALD_BINARY_DIR;

// The key user_service gives user i.
std::string user_key(uint64_t i) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-%012llx",
                static_cast<unsigned long long>(i));
  return buf;
}

// Writes a node config for `service` into `dir`, its data_dir inside `dir`.
// `consumes` names the event the node's service consumes, if any.
// `consumer_extra` is YAML appended to the consumer's entry (indented).
std::string write_config(const temp_dir& dir, const std::string& node,
                         const std::string& service,
                         const std::string& consumes, int hwm = 0,
                         const std::string& consumer_extra = "") {
  std::ostringstream yaml;
  yaml << "node: " << node << "\n"
       << "service: " << service << "\n"
       << "bind: tcp://127.0.0.1:*\n"
       << "catalog: " << src << "/config/events.yaml\n"
       << "data_dir: " << (dir / (node + ".data")).string() << "\n"
       << "log_level: info\n";
  if (hwm > 0)
    yaml << "transport:\n  hwm: " << hwm << "\n";
  if (!consumes.empty())
    yaml << "consumers:\n  " << service << ":\n    subscribe: [" << consumes
         << "]\n"
         << consumer_extra;
  auto path = dir / (node + ".yaml");
  write_text(path, yaml.str());
  return path.string();
}

std::string producer_config(const temp_dir& dir, int hwm = 0) {
  return write_config(dir, "user-node", "UserService", "", hwm);
}

std::string consumer_config(const temp_dir& dir, int hwm = 0) {
  return write_config(dir, "email-node", "EmailService", "user.account.created",
                      hwm);
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.pop_back();
  return text;
}

// How often `needle` occurs in `text`.
size_t occurrences(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

// Waits at most `timeout` until `c` printed `text` `times` times on stdout
// (or, with `on_stderr`, on stderr).
bool wait_for_output(const child& c, const std::string& text,
                     std::chrono::milliseconds timeout, bool on_stderr = false,
                     size_t times = 1) {
  return wait_until(
    [&] {
      return occurrences(on_stderr ? c.err() : c.out(), text) >= times;
    },
    timeout, 20ms);
}

// `command` (which starts with `exec`) run after writing the shell's pid,
// which exec keeps, to `pid_file`: the test can kill -9 the program itself.
std::string with_pid_file(const std::filesystem::path& pid_file,
                          const std::string& command) {
  return "echo $$ > " + shell_quote(pid_file.string()) + " && " + command;
}

// Sends SIGKILL to the process whose pid `pid_file` holds.
void kill_9(const std::filesystem::path& pid_file) {
  auto text = wait_for_file(pid_file, 10s);
  REQUIRE(text);
  auto pid = static_cast<pid_t>(std::stol(*text));
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
}

// One line of a --record file.
struct record_line {
  std::string stream;
  uint64_t seq = 0;
  std::string key;
  bool redelivered = false;
  std::string id;
};

// Parses a --record file; with `check`, every line must be complete (the
// consumer writes each with one write(2), so even a kill -9 leaves none cut
// short).
std::vector<record_line> read_record(const std::filesystem::path& path,
                                     bool check = true) {
  std::vector<record_line> result;
  std::istringstream lines{read_text(path)};
  std::string line;
  size_t malformed = 0;
  std::string first_bad;
  while (std::getline(lines, line)) {
    std::istringstream fields{line};
    record_line r;
    int redelivered = -1;
    std::string rest;
    if (!(fields >> r.stream >> r.seq >> r.key >> redelivered >> r.id)
        || (fields >> rest) || (redelivered != 0 && redelivered != 1)
        || r.seq == 0) {
      if (malformed++ == 0)
        first_bad = line;
      continue;
    }
    r.redelivered = redelivered == 1;
    result.push_back(std::move(r));
  }
  if (check) {
    INFO("first malformed line: '" << first_bad << "'");
    CHECK(malformed == 0);
  }
  return result;
}

// What a record file says, checked line by line in file order.
struct record_summary {
  size_t lines = 0;
  /// Lines marked redelivered (handed over from a replay).
  size_t redelivered = 0;
  /// seq -> id of its first handling (one stream only).
  std::map<uint64_t, std::string> first;
  /// Lines whose (stream, seq) was handled before.
  size_t duplicates = 0;
  /// Duplicates not marked redelivered.
  size_t unmarked_duplicates = 0;
  /// Seqs handled again with another id than the first time.
  size_t id_mismatches = 0;
  /// First handlings of a key whose seq was below the key's previous one.
  size_t order_violations = 0;
  std::string first_violation;
  std::vector<std::string> streams;
};

record_summary summarize(const std::vector<record_line>& lines) {
  record_summary s;
  s.lines = lines.size();
  std::unordered_map<std::string, uint64_t> last_first_of_key;
  for (auto& r : lines) {
    if (r.redelivered)
      ++s.redelivered;
    if (std::find(s.streams.begin(), s.streams.end(), r.stream)
        == s.streams.end())
      s.streams.push_back(r.stream);
    auto [it, fresh] = s.first.try_emplace(r.seq, r.id);
    if (!fresh) {
      ++s.duplicates;
      if (!r.redelivered)
        ++s.unmarked_duplicates;
      if (it->second != r.id)
        ++s.id_mismatches;
      continue;
    }
    auto& last = last_first_of_key[r.key];
    if (r.seq < last && s.order_violations++ == 0)
      s.first_violation = "key " + r.key + ": seq " + std::to_string(r.seq)
                          + " handled first after seq " + std::to_string(last);
    last = std::max(last, r.seq);
  }
  return s;
}

// Checks what every test expects of a record: one stream, seqs exactly
// 1..`count`, each with one id, first handlings in seq order per key, and
// every duplicate marked redelivered.
void check_record(const record_summary& s, uint64_t count) {
  INFO("record lines: " << s.lines << ", distinct seqs: " << s.first.size()
                        << ", duplicates: " << s.duplicates);
  CHECK(s.streams.size() == 1);
  CHECK(s.first.size() == count);
  if (!s.first.empty()) {
    CHECK(s.first.begin()->first == 1);
    CHECK(s.first.rbegin()->first == count);
  }
  INFO("first order violation: " << s.first_violation);
  CHECK(s.order_violations == 0);
  CHECK(s.id_mismatches == 0);
  CHECK(s.unmarked_duplicates == 0);
}

// The commands start with `exec`: the shell becomes the program, so the
// signals the test sends and the exit status it reads are the program's.
std::string producer_cmd(const std::string& config, const std::string& args) {
  return "exec " + bin + "/examples/user_service --config "
         + shell_quote(config) + " " + args;
}

std::string consumer_cmd(const std::string& config, const std::string& peer,
                         const temp_dir& dir, const std::string& args) {
  return "exec " + bin
         + "/tests/herald_test_service --service EmailService --config "
         + shell_quote(config) + " --peer " + shell_quote(peer)
         + " --quiet --record " + shell_quote((dir / "email.record").string())
         + " " + args;
}

// The endpoint the producer announces on stdout once its node is up.
std::string endpoint_of(const child& producer) {
  auto endpoint = wait_for_line(producer, "publishing on ", 20s);
  INFO("producer stderr: " << producer.err());
  REQUIRE(endpoint);
  return trimmed(*endpoint);
}

} // namespace

TEST_CASE("a slow consumer behind a full HWM still handles all 200,000 events "
          "in order per entity",
          "[integration][delivery]") {
  temp_dir dir;
  auto pcfg = producer_config(dir, 1000);
  auto ccfg = consumer_config(dir, 1000);
  child producer{producer_cmd(pcfg,
                              "--created 200000 --deleted 0 --users 1000 "
                              "--rate 0 --wait-subscribers 1 --wait-timeout 30 "
                              "--linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  // Slow for its first 2,000 events: the producer's PUB queue (HWM 1000)
  // overflows and drops; the consumer must notice and replay.
  child consumer{consumer_cmd(ccfg, endpoint, dir,
                              "--expect 200000 --timeout 240 "
                              "--slow-first 2000 --slow-us 200"),
                 dir / "email.out", dir / "email.err"};
  auto status = consumer.wait_for(250s);
  INFO("consumer stdout: " << consumer.out());
  INFO("consumer stderr (tail): " << consumer.err().substr(
         consumer.err().size() > 4000 ? consumer.err().size() - 4000 : 0));
  INFO("producer stderr (tail): " << producer.err().substr(
         producer.err().size() > 4000 ? producer.err().size() - 4000 : 0));
  CHECK(status == 0);
  CHECK_THAT(producer.out(),
             Catch::Contains("published 200000 user.account.created"));
  producer.kill();
  CHECK(producer.wait_for(1s) == 0);

  auto s = summarize(read_record(dir / "email.record"));
  check_record(s, 200000);
  // Whether the HWM overflowed shows in the consumer's log (gap warnings)
  // and in the record (replayed events); either way the result must hold.
  auto gaps = occurrences(consumer.err(), "gap");
  WARN("slow consumer: " << gaps << " gap warnings, " << s.redelivered
                         << " events replayed, " << s.duplicates
                         << " duplicates");
  CHECK_THAT(consumer.out(), Catch::Contains("EmailService: handled 200000 "
                                             "events"));
}

TEST_CASE("a consumer that joins after all 50,000 events were published "
          "handles them all in order per entity",
          "[integration][delivery]") {
  temp_dir dir;
  auto pcfg = producer_config(dir);
  auto ccfg = consumer_config(dir);
  child producer{producer_cmd(pcfg, "--created 50000 --deleted 0 --users 1000 "
                                    "--rate 0 --wait-subscribers 0 "
                                    "--linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  {
    INFO("producer stderr: " << producer.err());
    REQUIRE(wait_for_output(producer, "UserService: published", 60s));
  }
  child consumer{
    consumer_cmd(ccfg, endpoint, dir, "--expect 50000 --timeout 120"),
    dir / "email.out", dir / "email.err"};
  auto status = consumer.wait_for(130s);
  INFO("consumer stdout: " << consumer.out());
  INFO("consumer stderr: " << consumer.err());
  CHECK(status == 0);
  producer.kill();

  auto s = summarize(read_record(dir / "email.record"));
  check_record(s, 50000);
  CHECK(s.duplicates == 0);
}

TEST_CASE("a consumer killed -9 five times during 100,000 events misses none "
          "and keeps per-entity order",
          "[integration][delivery]") {
  temp_dir dir;
  auto pcfg = producer_config(dir);
  auto ccfg = consumer_config(dir);
  // 100,000 events at 20,000/s: the stream lasts about 5 s, in which the
  // consumer is killed at 5 random points.
  child producer{producer_cmd(pcfg, "--created 100000 --deleted 0 --users 1000 "
                                    "--rate 20000 --wait-subscribers 1 "
                                    "--wait-timeout 30 --linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  const unsigned seed = 20240611;
  std::mt19937 rng{seed};
  std::uniform_int_distribution<int> delay_ms{300, 1200};
  std::ostringstream kills;
  kills << "seed " << seed << ", kill -9 after (ms):";
  auto pid_file = dir / "email.pid";
  for (int round = 0; round < 5; ++round) {
    std::filesystem::remove(pid_file);
    child consumer{
      with_pid_file(pid_file, consumer_cmd(ccfg, endpoint, dir,
                                           "--expect 100000 --timeout 120")),
      dir / ("email" + std::to_string(round) + ".out"),
      dir / ("email" + std::to_string(round) + ".err")};
    auto wait = delay_ms(rng);
    kills << ' ' << wait;
    std::this_thread::sleep_for(std::chrono::milliseconds{wait});
    kill_9(pid_file);
    auto status = consumer.wait_for(10s);
    INFO("round " << round << " consumer stderr: " << consumer.err());
    REQUIRE(status == 128 + SIGKILL);
  }
  WARN(kills.str());
  {
    INFO("producer stderr: " << producer.err());
    REQUIRE(wait_for_output(producer, "UserService: published", 60s));
  }
  child consumer{
    consumer_cmd(ccfg, endpoint, dir, "--expect 100000 --timeout 120"),
    dir / "email.out", dir / "email.err"};
  auto status = consumer.wait_for(130s);
  INFO("final consumer stdout: " << consumer.out());
  INFO("final consumer stderr: " << consumer.err());
  CHECK(status == 0);
  producer.kill();

  auto s = summarize(read_record(dir / "email.record"));
  WARN(kills.str() << "; record: " << s.lines << " lines, " << s.first.size()
                   << " distinct, " << s.duplicates << " duplicates");
  check_record(s, 100000);
}

TEST_CASE("a consumer killed -9 while its events wait for retries loses none "
          "of them",
          "[integration][delivery][failure]") {
  temp_dir dir;
  auto pcfg = producer_config(dir);
  // Retries 2 s apart: the kill comes while every entity waits for one.
  auto ccfg =
    write_config(dir, "email-node", "EmailService", "user.account.created", 0,
                 "    retry: {attempts: 3, initial: 2s}\n");
  child producer{producer_cmd(pcfg,
                              "--created 20 --deleted 0 --users 5 --rate 0 "
                              "--wait-subscribers 1 --wait-timeout 30 "
                              "--linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  auto pid_file = dir / "email.pid";
  {
    child failing{
      with_pid_file(pid_file, consumer_cmd(ccfg, endpoint, dir, "--fail-all")),
      dir / "email1.out", dir / "email1.err"};
    {
      INFO("producer stderr: " << producer.err());
      REQUIRE(wait_for_output(producer, "UserService: published", 30s));
    }
    // Each of the 5 entities' first event failed once and waits.
    INFO("failing consumer stderr: " << failing.err());
    REQUIRE(wait_for_output(failing, "retry in", 20s, true, 5));
    CHECK(failing.err().find("dead letter") == std::string::npos);
    kill_9(pid_file);
    REQUIRE(failing.wait_for(10s) == 128 + SIGKILL);
  }
  // Nothing was handled; after the restart (handlers fixed) all 20 are.
  CHECK(read_record(dir / "email.record").empty());
  child consumer{consumer_cmd(ccfg, endpoint, dir, "--expect 20 --timeout 60"),
                 dir / "email.out", dir / "email.err"};
  auto status = consumer.wait_for(70s);
  INFO("consumer stdout: " << consumer.out());
  INFO("consumer stderr: " << consumer.err());
  CHECK(status == 0);
  producer.kill();
  auto s = summarize(read_record(dir / "email.record"));
  check_record(s, 20);
  CHECK(s.duplicates == 0);
}

TEST_CASE("with log format json, every failure line is one JSON object with "
          "the event's full context",
          "[integration][delivery][failure]") {
  temp_dir dir;
  auto pcfg = producer_config(dir);
  auto ccfg =
    write_config(dir, "email-node", "EmailService", "user.account.created", 0,
                 "    retry: {attempts: 2, initial: 10ms}\n");
  write_text(ccfg, read_text(ccfg) + "log: {format: json}\n");
  child producer{producer_cmd(pcfg,
                              "--created 3 --deleted 0 --users 3 --rate 0 "
                              "--wait-subscribers 1 --wait-timeout 30 "
                              "--linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  child consumer{consumer_cmd(ccfg, endpoint, dir, "--fail-all"),
                 dir / "email.out", dir / "email.err"};
  // 3 events, 2 attempts each, then a dead letter each: 9 failure lines.
  wait_for_output(consumer, "stored as a dead letter", 20s, true, 3);
  consumer.kill();
  INFO("consumer stderr: " << consumer.err());
  std::istringstream lines{consumer.err()};
  std::string line;
  size_t objects = 0, failures = 0, letters = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(j.is_discarded()); // every line is one JSON object
    ++objects;
    auto msg = j.value("msg", std::string{});
    if (msg != "handler failed" && msg != "stored as a dead letter")
      continue;
    (msg == "handler failed" ? failures : letters)++;
    CHECK(j["node"] == "email-node");
    CHECK(j["consumer"] == "EmailService");
    CHECK(j["type"] == "user.account.created");
    CHECK(j["key"].get<std::string>().size() == 36);
    CHECK(j["event_id"].get<std::string>().size() == 36);
    CHECK(j["stream"].get<std::string>().size() == 36);
    CHECK(j["seq"].is_number_unsigned());
    CHECK(j["error"] == "failing on purpose (--fail-all)");
    CHECK((j["attempt"].is_number() || j["attempts"].is_number()));
  }
  CHECK(objects > 0);
  CHECK(failures == 6);
  CHECK(letters == 3);
}

TEST_CASE("a producer killed -9 mid-run keeps what it stored and continues "
          "its stream without reusing a seq",
          "[integration][delivery]") {
  temp_dir dir;
  auto pcfg = producer_config(dir);
  auto ccfg = consumer_config(dir);
  auto pid_file = dir / "user.pid";
  {
    // 30,000 events at 10,000/s, killed about 1.5 s in: mid-run.
    child first{
      with_pid_file(pid_file, producer_cmd(pcfg, "--created 30000 --deleted 0 "
                                                 "--users 1000 --rate 10000 "
                                                 "--wait-subscribers 0")),
      dir / "user1.out", dir / "user1.err"};
    endpoint_of(first);
    std::this_thread::sleep_for(1500ms);
    INFO("first producer stderr: " << first.err());
    REQUIRE_FALSE(first.wait_for(0ms)); // still publishing
    kill_9(pid_file);
    REQUIRE(first.wait_for(10s) == 128 + SIGKILL);
    CHECK(first.out().find("UserService: published") == std::string::npos);
  }
  // The restart publishes 5,000 more, all for user 0: in the log, the
  // first run's events are seqs 1..M1 with keys cycling over 1,000 users,
  // the second run's are M1+1..M1+5000 with user 0's key.
  child second{producer_cmd(pcfg,
                            "--created 5000 --deleted 0 --users 1 --rate 0 "
                            "--wait-subscribers 0 --linger-ms 120000"),
               dir / "user2.out", dir / "user2.err"};
  auto endpoint = endpoint_of(second);
  {
    INFO("second producer stderr: " << second.err());
    REQUIRE(wait_for_output(second, "UserService: published", 60s));
  }
  // A consumer from scratch starts at the oldest event. How many the log
  // holds is not known from outside: wait until the record holds a
  // complete log of that shape and stopped growing.
  child consumer{consumer_cmd(ccfg, endpoint, dir, ""), dir / "email.out",
                 dir / "email.err"};
  auto shape_complete = [](const record_summary& s) {
    if (s.first.size() <= 5000 || s.first.rbegin()->first != s.first.size())
      return false;
    return true;
  };
  size_t last_lines = 0;
  auto stable_since = std::chrono::steady_clock::now();
  (void)wait_until(
    [&] {
      auto s = summarize(read_record(dir / "email.record", false));
      auto now = std::chrono::steady_clock::now();
      if (s.lines != last_lines) {
        last_lines = s.lines;
        stable_since = now;
        return false;
      }
      return shape_complete(s) && now - stable_since >= 1500ms;
    },
    60s, 100ms);
  consumer.kill();
  INFO("consumer stdout: " << consumer.out());
  INFO("consumer stderr: " << consumer.err());
  CHECK(consumer.wait_for(1s) == 0);
  second.kill();

  auto s = summarize(read_record(dir / "email.record"));
  REQUIRE_FALSE(s.first.empty());
  auto max_seq = s.first.rbegin()->first;
  // Seqs 1..max with no hole, one id each, in order per key.
  check_record(s, max_seq);
  REQUIRE(max_seq > 5000); // the first run stored some
  auto first_run = max_seq - 5000;
  WARN("the first producer run stored " << first_run
                                        << " events before "
                                           "kill -9");
  std::unordered_map<uint64_t, std::string> key_of;
  for (auto& r : read_record(dir / "email.record"))
    key_of.try_emplace(r.seq, r.key);
  size_t wrong_keys = 0;
  std::string first_wrong;
  for (uint64_t seq = 1; seq <= max_seq; ++seq) {
    auto want = seq <= first_run ? user_key((seq - 1) % 1000) : user_key(0);
    if (key_of[seq] != want && wrong_keys++ == 0)
      first_wrong = "seq " + std::to_string(seq) + ": key " + key_of[seq]
                    + ", expected " + want;
  }
  INFO("first wrong key: " << first_wrong);
  CHECK(wrong_keys == 0);
}
