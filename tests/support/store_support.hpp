#pragma once

// Helpers of the tests that open event logs directly.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>

#include "herald/core/errc.hpp"
#include "herald/store/event_log.hpp"

namespace herald::store::test {

/// Options for a log in `dir` with the policy `fsync`.
inline log_options options_for(const std::filesystem::path& dir,
                               fsync_policy fsync = fsync_policy::batch) {
  log_options opts;
  opts.dir = dir.string();
  opts.fsync = fsync;
  return opts;
}

/// Opens a log, failing the test when it cannot.
inline std::unique_ptr<event_log> open_log(log_options opts) {
  auto log = event_log::open(std::move(opts));
  if (!log)
    FAIL("open failed: " << herald::message_of(log.error()));
  return std::move(*log);
}

inline std::unique_ptr<event_log>
open_log(const std::filesystem::path& dir,
         fsync_policy fsync = fsync_policy::batch) {
  return open_log(options_for(dir, fsync));
}

/// Overwrites `len` bytes at `pos` of `path` with garbage.
inline void scribble(const std::filesystem::path& path, uintmax_t pos,
                     size_t len) {
  std::fstream f{path, std::ios::in | std::ios::out | std::ios::binary};
  REQUIRE(f);
  f.seekp(static_cast<std::streamoff>(pos));
  std::string garbage(len, '\0');
  for (size_t i = 0; i < len; ++i)
    garbage[i] = static_cast<char>(0xa5 ^ (i * 31));
  f.write(garbage.data(), static_cast<std::streamsize>(len));
  REQUIRE(f);
}

/// A RocksDB opened directly, with the column families `names`: to make a
/// data directory as an older version left it, or to damage one.
class raw_db {
public:
  raw_db(const std::filesystem::path& dir,
         const std::vector<std::string>& names) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (auto& name : names)
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions{options});
    rocksdb::DB* raw = nullptr;
    auto s = rocksdb::DB::Open(rocksdb::DBOptions{options}, dir.string(), cfs,
                               &handles_, &raw);
    if (!s.ok())
      FAIL("cannot open " << dir << " with RocksDB: " << s.ToString());
    db_.reset(raw);
  }
  ~raw_db() {
    for (auto* h : handles_)
      db_->DestroyColumnFamilyHandle(h);
    db_->Close();
  }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;

  void put(size_t cf, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    auto s = db_->Put(wo, handles_.at(cf), key, value);
    REQUIRE(s.ok());
  }

  /// Writes the column family `cf` into table files.
  void flush(size_t cf) {
    auto s = db_->Flush(rocksdb::FlushOptions{}, handles_.at(cf));
    REQUIRE(s.ok());
  }

  /// The table files that hold the column family `cf`.
  std::vector<std::filesystem::path> table_files(size_t cf) {
    rocksdb::ColumnFamilyMetaData meta;
    db_->GetColumnFamilyMetaData(handles_.at(cf), &meta);
    std::vector<std::filesystem::path> out;
    for (auto& level : meta.levels)
      for (auto& file : level.files)
        out.push_back(std::filesystem::path{file.directory}
                      / file.relative_filename);
    return out;
  }

private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

} // namespace herald::store::test
