// Consumer offsets in the event log: stored per consumer and stream,
// surviving a reopen, and never reported as 0 when they cannot be read.

#include "herald/store/event_log.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "herald/core/errc.hpp"
#include "process.hpp"
#include "store_support.hpp"

using namespace std::string_literals;
using herald::errc;
namespace fs = std::filesystem;
using herald::store::test::open_log;
using herald::store::test::raw_db;
using herald::store::test::scribble;

namespace {

/// The column families of a data directory, in the order `raw_db` takes
/// them; `offsets` is index 3. ("default" is RocksDB's
/// kDefaultColumnFamilyName, spelled out: that string may not be made yet
/// when this one is.)
const std::vector<std::string> all_column_families{"default", "events", "meta",
                                                   "offsets", "dead_letters"};
constexpr size_t offsets_cf = 3;

/// Requires `offset` to be a corrupt_log error naming the consumer, the stream,
/// the data directory and the corruption.
void require_offset_error(const caf::expected<uint64_t>& offset,
                          const fs::path& data) {
  // Before, a read error came back as offset 0: a consumer replayed the
  // stream from its start.
  CHECK_FALSE(offset == uint64_t{0});
  REQUIRE(!offset);
  auto message = herald::message_of(offset.error());
  INFO(message);
  CHECK(herald::is(offset.error(), errc::corrupt_log));
  CHECK_THAT(message, Catch::Contains("consumer 'billing'")
                        && Catch::Contains("stream 'stream-a'")
                        && Catch::Contains(data.string())
                        && Catch::Contains("corrupt"));
}

} // namespace

TEST_CASE("offsets round-trip and survive a reopen", "[store]") {
  herald::test::temp_dir dir;
  {
    auto log = open_log(dir.path());
    CHECK(log->offset("billing", "stream-a") == 0);
    CHECK(!log->commit_offset("billing", "stream-a", 42));
    CHECK(!log->commit_offset("billing", "stream-b", 7));
    CHECK(!log->commit_offset("email", "stream-a", 1ull << 40));
    CHECK(log->offset("billing", "stream-a") == 42);
    CHECK(!log->commit_offset("billing", "stream-a", 43));
    CHECK(log->offset("billing", "stream-a") == 43);
  }
  auto log = open_log(dir.path());
  CHECK(log->offset("billing", "stream-a") == 43);
  CHECK(log->offset("billing", "stream-b") == 7);
  CHECK(log->offset("email", "stream-a") == 1ull << 40);
  CHECK(log->offset("email", "stream-b") == 0);
  // The separator keeps consumer and stream apart.
  CHECK(log->offset("billing\0stream", "-a") == 0);
}

TEST_CASE("an offset that cannot be read is an error, not offset 0",
          "[store]") {
  herald::test::temp_dir dir;
  auto data = dir / "data";
  {
    auto log = open_log(data);
    REQUIRE(!log->commit_offset("billing", "stream-a", 42));
    REQUIRE(!log->commit_offset("email", "stream-a", 7));
  }
  SECTION("a stored value that is not 8 bytes") {
    {
      raw_db db{data, all_column_families};
      db.put(offsets_cf, "billing\0stream-a"s, "xyz");
    }
    auto log = open_log(data);
    require_offset_error(log->offset("billing", "stream-a"), data);
    // The other offsets read as before.
    CHECK(log->offset("email", "stream-a") == 7);
    CHECK(log->offset("email", "stream-b") == 0);
  }
  SECTION("a damaged table file of the offsets: the checksum fails") {
    std::vector<fs::path> tables;
    {
      raw_db db{data, all_column_families};
      db.flush(offsets_cf);
      tables = db.table_files(offsets_cf);
    }
    REQUIRE(tables.size() == 1);
    // The file starts with its data block: the offsets themselves. Open
    // does not read it; the offset's read verifies its checksum.
    scribble(tables.front(), 0, 16);
    auto log = open_log(data);
    require_offset_error(log->offset("billing", "stream-a"), data);
  }
}
