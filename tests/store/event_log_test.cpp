#include "herald/store/event_log.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/errc.hpp"
#include "process.hpp"
#include "store_support.hpp"

using namespace std::chrono_literals;
using herald::errc;
using herald::store::event_log;
using herald::store::fsync_policy;
using herald::store::log_options;
using herald::store::record;
namespace fs = std::filesystem;
using herald::store::test::open_log;
using herald::store::test::options_for;
using herald::store::test::scribble;

namespace {

constexpr auto deadline = std::chrono::milliseconds{10000};

std::string envelope_of(uint64_t seq, size_t size = 0) {
  auto env = "env-" + std::to_string(seq);
  // Pseudo-random filler, so that the bytes do not compress away.
  uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;
  while (env.size() < size) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    env.push_back(static_cast<char>('a' + x % 26));
  }
  return env;
}

const char* type_of(uint64_t seq) {
  return seq % 2 == 0 ? "user.account.created" : "billing.invoice.paid";
}

/// A record of seq `seq`; even seqs are users, odd ones invoices, and the
/// type_seq of each is its position among its type.
record make_record(uint64_t seq, int64_t ts = 0, size_t size = 0) {
  record r;
  r.seq = seq;
  r.type = type_of(seq);
  r.type_seq = (seq + 1) / 2;
  r.timestamp_us = ts;
  r.envelope = envelope_of(seq, size);
  return r;
}

/// Appends seqs [from, to] and waits for the last group.
void append_range(event_log& log, uint64_t from, uint64_t to, int64_t ts = 0,
                  size_t size = 0) {
  std::shared_ptr<const herald::store::commit_ticket> ticket;
  for (auto seq = from; seq <= to; ++seq)
    ticket = log.append(make_record(seq, ts, size));
  auto err = ticket->wait_for(deadline);
  REQUIRE(err.has_value());
  REQUIRE(herald::message_of(*err) == "");
}

std::vector<uint64_t> seqs_of(const herald::store::read_result& res) {
  std::vector<uint64_t> out;
  for (auto& ev : res.events)
    out.push_back(ev.seq);
  return out;
}

std::vector<uint64_t> iota(uint64_t from, uint64_t to, uint64_t step = 1) {
  std::vector<uint64_t> out;
  for (auto seq = from; seq <= to; seq += step)
    out.push_back(seq);
  return out;
}

} // namespace

TEST_CASE("fsync policies parse from their names", "[store]") {
  CHECK(*herald::store::parse_fsync_policy("always") == fsync_policy::always);
  CHECK(*herald::store::parse_fsync_policy("batch") == fsync_policy::batch);
  CHECK(*herald::store::parse_fsync_policy("os") == fsync_policy::os);
  auto bad = herald::store::parse_fsync_policy("sometimes");
  REQUIRE(!bad);
  CHECK_THAT(herald::message_of(bad.error()), Catch::Contains("'sometimes'"));
}

TEST_CASE("appended events read back in ranges", "[store]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path());
  CHECK(log->head() == 0);
  CHECK(log->last_seq() == 0);
  CHECK(log->first() == 1);
  auto empty = log->read(1, 100, 100, 1 << 20);
  REQUIRE(empty);
  CHECK(empty->events.empty());
  CHECK(empty->next == 1);
  CHECK(empty->first == 1);

  append_range(*log, 1, 100, 0, 100);
  CHECK(log->head() == 100);
  CHECK(log->last_seq() == 100);
  CHECK(log->first() == 1);

  SECTION("all of it") {
    auto res = log->read(1, 1000, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(1, 100));
    CHECK(res->next == 101);
    CHECK(res->head == 100);
    CHECK(res->first == 1);
    for (auto& ev : res->events)
      CHECK(ev.envelope == envelope_of(ev.seq, 100));
  }
  SECTION("an inner range, both ends inclusive") {
    auto res = log->read(10, 20, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(10, 20));
    CHECK(res->next == 21);
  }
  SECTION("a filter on the type, next past the last seq looked at") {
    auto res = log->read(1, 100, 1000, 1 << 20, [](std::string_view type) {
      return type.starts_with("user.");
    });
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(2, 100, 2));
    CHECK(res->next == 101);
    auto none = log->read(1, 50, 1000, 1 << 20, [](std::string_view) {
      return false;
    });
    REQUIRE(none);
    CHECK(none->events.empty());
    CHECK(none->next == 51);
  }
  SECTION("max_count") {
    auto res = log->read(1, 100, 5, 1 << 20);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(1, 5));
    CHECK(res->next == 6);
    auto filtered = log->read(1, 100, 3, 1 << 20, [](std::string_view type) {
      return type.starts_with("user.");
    });
    REQUIRE(filtered);
    CHECK(seqs_of(*filtered) == std::vector<uint64_t>{2, 4, 6});
    CHECK(filtered->next == 7);
  }
  SECTION("max_bytes, at least one event") {
    auto res = log->read(1, 100, 1000, 250);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(1, 2));
    CHECK(res->next == 3);
    auto one = log->read(7, 100, 1000, 1);
    REQUIRE(one);
    CHECK(seqs_of(*one) == std::vector<uint64_t>{7});
    CHECK(one->next == 8);
  }
  SECTION("beyond the head") {
    auto res = log->read(101, 200, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(res->events.empty());
    CHECK(res->next == 101);
    CHECK(res->head == 100);
    auto partly = log->read(95, 200, 1000, 1 << 20);
    REQUIRE(partly);
    CHECK(seqs_of(*partly) == iota(95, 100));
    CHECK(partly->next == 101);
  }
}

TEST_CASE("the stream id is stable across reopens and new per directory",
          "[store]") {
  herald::test::temp_dir dir;
  std::string id;
  {
    auto log = open_log(dir / "a");
    id = log->stream_id();
    CHECK(id.size() == 36);
  }
  {
    auto log = open_log(dir / "a");
    CHECK(log->stream_id() == id);
  }
  auto other = open_log(dir / "b");
  CHECK(other->stream_id().size() == 36);
  CHECK(other->stream_id() != id);
}

TEST_CASE("seq and type heads are restored after a reopen", "[store]") {
  herald::test::temp_dir dir;
  {
    auto log = open_log(dir.path());
    append_range(*log, 1, 51);
    auto heads = log->type_heads();
    CHECK(heads.size() == 2);
    CHECK(heads["user.account.created"] == 25);
    CHECK(heads["billing.invoice.paid"] == 26);
  }
  auto log = open_log(dir.path());
  CHECK(log->head() == 51);
  CHECK(log->last_seq() == 51);
  CHECK(log->first() == 1);
  auto heads = log->type_heads();
  CHECK(heads.size() == 2);
  CHECK(heads["user.account.created"] == 25);
  CHECK(heads["billing.invoice.paid"] == 26);

  SECTION("appends go on after the head") {
    append_range(*log, 52, 60);
    auto res = log->read(1, 1000, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(1, 60));
  }
  SECTION("an append out of seq order fails and is not written") {
    auto ticket = log->append(make_record(53));
    auto err = ticket->wait_for(deadline);
    REQUIRE(err.has_value());
    CHECK(herald::is(*err, errc::invalid_argument));
    CHECK(log->last_seq() == 51);
  }
}

TEST_CASE("tickets of every fsync policy complete", "[store]") {
  auto policy =
    GENERATE(fsync_policy::always, fsync_policy::batch, fsync_policy::os);
  herald::test::temp_dir dir;
  auto log = open_log(dir.path(), policy);
  std::vector<std::shared_ptr<const herald::store::commit_ticket>> tickets;
  for (uint64_t seq = 1; seq <= 200; ++seq) {
    tickets.push_back(log->append(make_record(seq)));
    if (seq % 50 == 0)
      std::this_thread::sleep_for(1ms);
  }
  for (auto& t : tickets) {
    auto err = t->wait_for(deadline);
    REQUIRE(err.has_value());
    CHECK(!*err);
    CHECK(t->done());
  }
  CHECK(log->head() == 200);
  auto res = log->read(1, 200, 1000, 1 << 20);
  REQUIRE(res);
  CHECK(seqs_of(*res) == iota(1, 200));
}

TEST_CASE("group commit writes many appends in one group", "[store]") {
  herald::test::temp_dir dir;
  auto log = open_log(dir.path(), fsync_policy::batch);
  std::set<const herald::store::commit_ticket*> distinct;
  std::vector<std::shared_ptr<const herald::store::commit_ticket>> tickets;
  tickets.reserve(10000);
  for (uint64_t seq = 1; seq <= 10000; ++seq) {
    tickets.push_back(log->append(make_record(seq)));
    distinct.insert(tickets.back().get());
  }
  for (auto& t : tickets) {
    auto err = t->wait_for(deadline);
    REQUIRE(err.has_value());
    REQUIRE(!*err);
  }
  INFO("groups: " << distinct.size());
  CHECK(distinct.size() < 500);
  CHECK(log->head() == 10000);
}

TEST_CASE("the commit callback sees every record once, in seq order",
          "[store]") {
  auto policy =
    GENERATE(fsync_policy::always, fsync_policy::batch, fsync_policy::os);
  herald::test::temp_dir dir;
  // What the callback touches is declared before the log: a failed
  // REQUIRE destroys the log (and ends its committer) first.
  std::mutex mtx;
  std::vector<uint64_t> seen;
  std::vector<size_t> group_sizes;
  bool errors = false;
  std::atomic<uint64_t> head_at_callback{0};
  auto log = open_log(dir.path(), policy);
  auto* raw = log.get();
  log->on_commit([&](std::vector<record>& group, const caf::error& err) {
    std::lock_guard<std::mutex> guard{mtx};
    errors = errors || static_cast<bool>(err);
    group_sizes.push_back(group.size());
    for (auto& r : group) {
      seen.push_back(r.seq);
      // The records are handed over, not copied.
      auto moved = std::move(r.envelope);
      (void)moved;
    }
    // The head covers the group when its callback runs.
    head_at_callback = raw->head();
    if (!group.empty() && head_at_callback < group.back().seq)
      errors = true;
  });
  std::shared_ptr<const herald::store::commit_ticket> last;
  for (uint64_t seq = 1; seq <= 3000; ++seq) {
    last = log->append(make_record(seq));
    if (seq % 700 == 0)
      std::this_thread::sleep_for(3ms);
  }
  // 3,000 appends synced one by one take seconds on a slow disk: a bound
  // well above that, not a timing.
  constexpr auto slow_disk_bound = std::chrono::seconds{60};
  REQUIRE(last->wait_for(slow_disk_bound).has_value());
  // The callback runs after the ticket completes: wait for it.
  (void)herald::test::wait_until(
    [&] {
      std::lock_guard<std::mutex> guard{mtx};
      return seen.size() >= 3000;
    },
    deadline, 1ms);
  log.reset();
  CHECK(!errors);
  CHECK(seen == iota(1, 3000));
  CHECK(group_sizes.size() > 1);
}

TEST_CASE("retention deletes exactly the expired commit groups", "[store]") {
  herald::test::temp_dir dir;
  auto now = std::make_shared<std::atomic<int64_t>>(1'000'000);
  log_options opts;
  opts.dir = dir.path().string();
  opts.retention = std::chrono::microseconds{10'000};
  opts.clock = [now] {
    return now->load();
  };
  {
    auto log = open_log(opts);
    // seq 1..100 at t = 1'000'000 + 100 * seq, in two commit groups at
    // least (1..30, then 31..100): retention deletes whole groups.
    std::shared_ptr<const herald::store::commit_ticket> last;
    for (uint64_t seq = 1; seq <= 100; ++seq) {
      last = log->append(make_record(seq, 1'000'000 + 100 * int64_t(seq)));
      if (seq == 30)
        REQUIRE(last->wait_for(deadline).has_value());
    }
    REQUIRE(last->wait_for(deadline).has_value());

    // Nothing is older than the retention yet.
    now->store(1'000'000 + 10'000);
    auto none = log->enforce_retention();
    REQUIRE(none);
    CHECK(*none == 0);
    CHECK(log->first() == 1);

    // Cutoff 1'003'050: seq 1..30 (t <= 1'003'000) are expired, 31 is not.
    now->store(1'003'050 + 10'000);
    auto deleted = log->enforce_retention();
    REQUIRE(deleted);
    CHECK(*deleted == 30);
    CHECK(log->first() == 31);
    auto res = log->read(1, 1000, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(seqs_of(*res) == iota(31, 100));
    CHECK(res->first == 31);

    // Again: nothing more to delete.
    auto again = log->enforce_retention();
    REQUIRE(again);
    CHECK(*again == 0);
    CHECK(log->first() == 31);
  }
  {
    auto log = open_log(opts);
    CHECK(log->first() == 31);
    CHECK(log->head() == 100);
    // Everything expires: first moves past the head, seqs are not reused.
    now->store(1'000'000 + 1'000'000);
    auto deleted = log->enforce_retention();
    REQUIRE(deleted);
    CHECK(*deleted == 70);
    CHECK(log->first() == 101);
    auto res = log->read(1, 1000, 1000, 1 << 20);
    REQUIRE(res);
    CHECK(res->events.empty());
    CHECK(res->first == 101);
    CHECK(res->head == 100);
  }
  auto log = open_log(opts);
  CHECK(log->head() == 100);
  CHECK(log->last_seq() == 100);
  CHECK(log->first() == 101);
  append_range(*log, 101, 101, now->load());
  auto res = log->read(1, 1000, 1000, 1 << 20);
  REQUIRE(res);
  CHECK(seqs_of(*res) == std::vector<uint64_t>{101});
}

TEST_CASE("seq_at_or_after finds the first event at or after a time",
          "[store][since]") {
  herald::test::temp_dir dir;
  auto now = std::make_shared<std::atomic<int64_t>>(1'000'000);
  log_options opts;
  opts.dir = dir.path().string();
  opts.retention = std::chrono::microseconds{1'000'000};
  opts.clock = [now] {
    return now->load();
  };
  auto log = open_log(opts);
  // An empty log: nothing is that recent.
  auto empty = log->seq_at_or_after(0);
  REQUIRE(empty);
  CHECK(*empty == 1);

  // Ten appends of 10 events (ten commit groups at least), seq s at
  // t = 1'000'000 + 100 * s, except that seq 55 steps back by 130 us,
  // behind 54 (a publisher that waited for the stream lock).
  for (uint64_t g = 0; g < 10; ++g) {
    std::shared_ptr<const herald::store::commit_ticket> last;
    for (uint64_t seq = g * 10 + 1; seq <= g * 10 + 10; ++seq) {
      auto ts = 1'000'000 + 100 * int64_t(seq) - (seq == 55 ? 130 : 0);
      last = log->append(make_record(seq, ts));
    }
    REQUIRE(last->wait_for(deadline).has_value());
  }
  struct row {
    int64_t time;
    uint64_t seq;
  };
  for (auto [time, seq] : std::vector<row>{
         {0, 1},           // older than everything: the oldest
         {1'000'100, 1},   // exactly the first event's time
         {1'000'101, 2},   // between two events: the later one
         {1'001'000, 10},  // the last event of a group
         {1'001'001, 11},  // the first of the next group
         {1'005'350, 54},  // 55 comes after 54, stepped back
         {1'005'401, 56},  // 55 is older than that: skipped
         {1'005'000, 50},  // a group's last event
         {1'005'001, 51},  // the next group's first
         {1'007'777, 78},  //
         {1'010'000, 100}, // the newest event
         {1'010'001, 101}, // newer than everything: head + 1
         {std::numeric_limits<int64_t>::max(), 101},
       }) {
    INFO("time " << time);
    auto found = log->seq_at_or_after(time);
    REQUIRE(found);
    CHECK(*found == seq);
  }

  // Retention deleted the first three groups: an old time gives the oldest
  // retained event.
  now->store(1'003'001 + 1'000'000);
  auto deleted = log->enforce_retention();
  REQUIRE(deleted);
  REQUIRE(*deleted == 30);
  auto oldest = log->seq_at_or_after(0);
  REQUIRE(oldest);
  CHECK(*oldest == 31);
  auto later = log->seq_at_or_after(1'006'050);
  REQUIRE(later);
  CHECK(*later == 61);
}

namespace {

std::vector<fs::path> files_ending(const fs::path& dir,
                                   std::string_view suffix) {
  std::vector<fs::path> out;
  for (auto& entry : fs::directory_iterator{dir}) {
    auto name = entry.path().filename().string();
    if (name.ends_with(suffix) || name.starts_with(suffix))
      out.push_back(entry.path());
  }
  return out;
}

/// Writes 2000 events of 200 bytes and gets them into .sst files: RocksDB
/// flushes the replayed WAL when the log is opened again.
void fill_and_flush(const fs::path& dir) {
  {
    auto log = open_log(dir);
    append_range(*log, 1, 2000, 0, 200);
  }
  { auto log = open_log(dir); }
  REQUIRE(!files_ending(dir, ".sst").empty());
}

/// Opens `dir` and reads everything: one of the two must fail naming the
/// directory (a read with corrupt_log; an open with corrupt_log, or with
/// io_error when RocksDB reports the damage as a failed read), and no event
/// may come back altered.
void require_corruption_detected(
  const fs::path& dir,
  caf::expected<std::unique_ptr<event_log>> log = caf::error{}) {
  if (!log)
    log = event_log::open(options_for(dir));
  if (!log) {
    INFO(herald::message_of(log.error()));
    CHECK((herald::is(log.error(), errc::corrupt_log)
           || herald::is(log.error(), errc::io_error)));
    CHECK_THAT(herald::message_of(log.error()), Catch::Contains(dir.string()));
    return;
  }
  auto res = (*log)->read(1, 10000, 100000, size_t{1} << 30);
  REQUIRE(!res);
  INFO(herald::message_of(res.error()));
  CHECK(herald::is(res.error(), errc::corrupt_log));
  CHECK_THAT(herald::message_of(res.error()), Catch::Contains(dir.string()));
  CHECK_THAT(herald::message_of(res.error()), Catch::Contains("corrupt"));
  // Smaller reads return only intact events, or fail.
  for (uint64_t from = 1; from <= 2000; from += 100) {
    auto part = (*log)->read(from, from + 99, 1000, size_t{1} << 30);
    if (!part)
      continue;
    for (auto& ev : part->events)
      CHECK(ev.envelope == envelope_of(ev.seq, 200));
  }
}

} // namespace

TEST_CASE("a corrupt table file is reported, never returned", "[store]") {
  herald::test::temp_dir dir;
  auto data = dir / "data";
  fill_and_flush(data);
  auto tables = files_ending(data, ".sst");
  SECTION("garbage in every table file") {
    for (auto& sst : tables) {
      auto size = fs::file_size(sst);
      scribble(sst, size / 3, 512);
      scribble(sst, size / 2, 512);
    }
    require_corruption_detected(data);
  }
  SECTION("garbage in the data blocks of the events: the read fails") {
    // The biggest table holds the events; its middle is data blocks, which
    // open does not read: the checksum of the read catches it.
    auto events = *std::max_element(
      tables.begin(), tables.end(), [](const fs::path& a, const fs::path& b) {
        return fs::file_size(a) < fs::file_size(b);
      });
    scribble(events, fs::file_size(events) / 2, 512);
    // Open reads the newest group: it may find the damage already.
    auto log = event_log::open(options_for(data));
    if (!log) {
      CHECK_THAT(herald::message_of(log.error()),
                 Catch::Contains("corrupt") && Catch::Contains(data.string()));
    } else {
      CHECK((*log)->head() == 2000);
      require_corruption_detected(data, std::move(*log));
    }
  }
}

TEST_CASE("a corrupt MANIFEST makes open fail naming the directory",
          "[store]") {
  herald::test::temp_dir dir;
  auto data = dir / "data";
  fill_and_flush(data);
  auto manifests = files_ending(data, "MANIFEST-");
  REQUIRE(!manifests.empty());
  for (auto& m : manifests) {
    auto size = fs::file_size(m);
    scribble(m, size / 2, std::min<uintmax_t>(64, size / 4));
  }
  auto log = event_log::open(options_for(data));
  REQUIRE(!log);
  INFO(herald::message_of(log.error()));
  CHECK(herald::is(log.error(), errc::corrupt_log));
  CHECK_THAT(herald::message_of(log.error()), Catch::Contains(data.string()));
  CHECK_THAT(herald::message_of(log.error()), Catch::Contains("corrupt"));
}

TEST_CASE("every acknowledged append survives a kill -9", "[store]") {
  herald::test::temp_dir dir;
  auto data = (dir / "data").string();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  auto pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: append in small bursts, report each acknowledged seq.
    ::close(fds[0]);
    auto log = event_log::open(options_for(data));
    if (!log)
      ::_exit(2);
    uint64_t seq = 0;
    for (int burst = 0; burst < 100000; ++burst) {
      std::shared_ptr<const herald::store::commit_ticket> ticket;
      for (int i = 0; i < 7; ++i)
        ticket = (*log)->append(make_record(++seq, 0, 64));
      if (ticket->wait())
        ::_exit(3);
      auto line = "acked " + std::to_string(seq) + "\n";
      if (::write(fds[1], line.data(), line.size())
          != static_cast<ssize_t>(line.size()))
        ::_exit(4);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  // The parent: kill the child once it acknowledged 2000 appends, then
  // read what it reported until the pipe closes.
  uint64_t acked = 0;
  bool killed = false;
  std::string buf;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  char chunk[4096];
  for (;;) {
    if (!killed
        && (acked >= 2000 || std::chrono::steady_clock::now() > until)) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    if (::poll(&pfd, 1, 100) == 0)
      continue;
    auto n = ::read(fds[0], chunk, sizeof(chunk));
    if (n <= 0)
      break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      auto line = buf.substr(0, pos);
      buf.erase(0, pos + 1);
      if (line.starts_with("acked "))
        acked = std::stoull(line.substr(6));
    }
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("acked " << acked);
  CHECK(WIFSIGNALED(status));
  REQUIRE(acked >= 2000);

  auto log = open_log(fs::path{data});
  CHECK(log->last_seq() >= acked);
  CHECK(log->head() >= acked);
  auto res = log->read(1, acked, 1000000, size_t{1} << 30);
  REQUIRE(res);
  CHECK(seqs_of(*res) == iota(1, acked));
  for (auto& ev : res->events)
    if (ev.envelope != envelope_of(ev.seq, 64))
      FAIL("seq " << ev.seq << " came back altered");
  // The stream goes on after the last seq the child wrote.
  append_range(*log, log->last_seq() + 1, log->last_seq() + 1);
}

namespace {

// A small tmpfs mounted for one test, unmounted at the end. Needs root
// (CI runs as root).
struct small_fs {
  fs::path at;
  bool mounted = false;
  small_fs(const fs::path& where, const char* size) : at(where) {
    fs::create_directories(at);
    auto opts = std::string{"size="} + size;
    mounted = ::mount("tmpfs", at.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~small_fs() {
    if (mounted)
      ::umount2(at.c_str(), MNT_DETACH);
  }
};

} // namespace

TEST_CASE("a full disk fails publishes, loses nothing acknowledged, and "
          "recovers once there is space",
          "[store][disk_full]") {
  herald::test::temp_dir dir;
  small_fs disk{dir / "disk", "160m"};
  INFO("mounting a tmpfs needs root: run the tests as root (CI does)");
  REQUIRE(disk.mounted);
  auto data = disk.at / "data";
  auto log = open_log(data, fsync_policy::batch);
  // Fill the disk but for about 3 MiB.
  auto filler = disk.at / "filler";
  {
    std::string chunk(1 << 20, 'x');
    std::ofstream out{filler, std::ios::binary};
    while (fs::space(disk.at).available > (size_t{3} << 20))
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  uint64_t acked = 0;
  caf::error failure;
  for (uint64_t seq = 1; seq <= 100'000 && !failure; ++seq) {
    auto err = log->append(make_record(seq, 0, 4096))->wait_for(deadline);
    REQUIRE(err.has_value());
    if (*err)
      failure = *err;
    else
      acked = seq;
  }
  REQUIRE(failure);
  CHECK(acked > 0);
  CHECK_THAT(herald::message_of(failure),
             Catch::Contains(data.string()) && Catch::Contains("space"));
  // Space again: the next appends succeed, after the seqs already used.
  fs::remove(filler);
  auto next = log->last_seq() + 1;
  std::optional<caf::error> again;
  for (int attempt = 0; attempt < 300; ++attempt, ++next) {
    again = log->append(make_record(next, 0, 4096))->wait_for(deadline);
    REQUIRE(again.has_value());
    if (!*again)
      break;
    std::this_thread::sleep_for(100ms);
  }
  INFO("after freeing space: " << herald::message_of(*again));
  CHECK_FALSE(*again);
  log.reset();
  // Every acknowledged event is there after a reopen.
  auto reopened = open_log(data, fsync_policy::batch);
  auto res = reopened->read(1, acked, 1'000'000, size_t{1} << 30);
  REQUIRE(res);
  CHECK(seqs_of(*res) == iota(1, acked));
}
