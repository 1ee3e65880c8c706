// A disk that fills up and gets space back while the node runs: every write
// of the store (events, dead letters, offsets) fails while it is full and
// works again, without a restart, once space is freed.

#include "herald/store/event_log.hpp"

#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "deadline.hpp"
#include "herald/core/errc.hpp"
#include "process.hpp"
#include "store_support.hpp"
#include "tmpfs.hpp"

using namespace std::chrono_literals;
using herald::store::dead_letter;
using herald::store::dead_letter_filter;
using herald::store::fsync_policy;
using herald::store::record;
using herald::store::test::open_log;
using herald::test::tmpfs_mount;
namespace fs = std::filesystem;

namespace {

constexpr auto deadline = std::chrono::milliseconds{10000};

record make_record(uint64_t seq) {
  record r;
  r.seq = seq;
  r.type = "user.account.created";
  r.type_seq = seq;
  // 4 KiB that do not compress away.
  r.envelope = "env-" + std::to_string(seq);
  uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;
  while (r.envelope.size() < 4096) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r.envelope.push_back(static_cast<char>('a' + x % 26));
  }
  return r;
}

dead_letter make_letter() {
  dead_letter dl;
  dl.consumer = "billing";
  dl.node = "node-1";
  dl.event_type = "user.account.created";
  dl.event_id = "id-1";
  dl.key = "user-1";
  dl.stream = "users";
  dl.seq = 1;
  dl.envelope = "env-1";
  dl.attempts.push_back({1'000, "boom", "exception", "node-1"});
  dl.reason = "attempts exhausted";
  return dl;
}

std::vector<uint64_t> seqs_of(const herald::store::read_result& res) {
  std::vector<uint64_t> out;
  for (auto& ev : res.events)
    out.push_back(ev.seq);
  return out;
}

std::vector<uint64_t> iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (auto seq = from; seq <= to; ++seq)
    out.push_back(seq);
  return out;
}

} // namespace

TEST_CASE("a disk that was full takes appends, dead letters and offsets "
          "again once space is freed, without a restart",
          "[store][disk_full]") {
  herald::test::temp_dir dir;
  // Smaller than RocksDB's write buffer (64 MiB): its own recovery from a
  // full disk waits for that much free space, which this disk never has.
  tmpfs_mount disk{dir / "disk", "8m"};
  if (!disk.mounted) {
    WARN("cannot mount a tmpfs (needs root; CI runs as root): skipped");
    return;
  }
  auto data = disk.at / "data";
  auto log = open_log(data, fsync_policy::batch);

  // Fill the disk but for about 100 KiB, as another process would.
  auto filler = disk.at / "filler";
  {
    std::string chunk(size_t{16} << 10, 'x');
    std::ofstream out{filler, std::ios::binary};
    while (fs::space(disk.at).available > (size_t{100} << 10) + chunk.size()) {
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      out.flush();
      REQUIRE(out);
    }
  }

  // Append until an append fails; every one acknowledged before must stay.
  uint64_t acked = 0;
  caf::error failure;
  for (uint64_t seq = 1; seq <= 10'000 && !failure; ++seq) {
    auto err =
      herald::test::get_within(*log->append(make_record(seq)), deadline);
    if (err)
      failure = err;
    else
      acked = seq;
  }
  REQUIRE(failure);
  CHECK(herald::is(failure, herald::errc::io_error));
  CHECK_THAT(herald::message_of(failure), Catch::Contains(data.string()));

  // Space again. A caller sees its writes fail until the store resumed; the
  // store resumes on the next write of any kind, so each of these writes
  // (offsets first: they must not wait for a publish) should succeed at
  // once. The bounded retries only keep a slow machine from failing.
  fs::remove(filler);
  auto retry = [](auto write) {
    caf::error last;
    bool ok = herald::test::wait_until(
      [&] {
        last = write();
        return !last;
      },
      deadline, 100ms);
    INFO("the last error: " << herald::message_of(last));
    CHECK(ok);
    return ok;
  };
  retry([&] {
    return log->commit_offset("billing", "users", 42);
  });
  auto offset = log->offset("billing", "users");
  REQUIRE(offset);
  CHECK(*offset == 42);

  retry([&]() -> caf::error {
    std::vector<dead_letter> letters{make_letter()};
    auto ids = log->add_dead_letters(letters);
    return ids ? caf::error{} : ids.error();
  });
  auto letters = log->dead_letters(dead_letter_filter{});
  REQUIRE(letters);
  CHECK(letters->size() == 1);

  uint64_t recovered = 0;
  retry([&] {
    auto seq = log->last_seq() + 1;
    auto err =
      herald::test::get_within(*log->append(make_record(seq)), deadline);
    if (!err)
      recovered = seq;
    return err;
  });
  REQUIRE(recovered > acked);
  CHECK(log->head() == recovered);

  // Everything acknowledged is readable, now and after a reopen.
  auto check_readable = [&](herald::store::event_log& l) {
    auto before = l.read(1, acked, 1'000'000, size_t{1} << 30);
    REQUIRE(before);
    CHECK(seqs_of(*before) == iota(1, acked));
    auto after = l.read(recovered, recovered, 1, size_t{1} << 20);
    REQUIRE(after);
    CHECK(seqs_of(*after) == std::vector<uint64_t>{recovered});
  };
  check_readable(*log);
  log.reset();
  auto reopened = open_log(data, fsync_policy::batch);
  check_readable(*reopened);
  CHECK(reopened->dead_letters(dead_letter_filter{})->size() == 1);
}
