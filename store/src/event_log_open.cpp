// event_log::open: opens RocksDB and restores the log's state from it, one
// named step at a time.

#include "herald/store/event_log.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/iterator.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>

#include "event_log_impl.hpp"
#include "group_format.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"

namespace herald::store {

using namespace detail;

namespace {

// RocksDB's own diagnostics go to stderr, warnings and worse only, never
// to a LOG file in the data directory: on a full disk that file fails too,
// and RocksDB aborts on a second write to a failed file.
class stderr_logger : public rocksdb::Logger {
public:
  stderr_logger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::fputs("rocksdb: ", stderr);
    std::vfprintf(stderr, format, ap);
    std::fputc('\n', stderr);
  }
};

// Watches RocksDB's background errors. First, it turns off RocksDB's own
// recovery from a full disk. That recovery waits until the
// disk has as much free space as the largest write buffer (64 MiB by
// default), polling every 5 seconds, and while it waits `DB::Resume`
// answers Busy: on a disk smaller than that, or one that stays fuller, the
// log would refuse writes until a restart. Instead the next write resumes
// (`event_log::impl::write`), which works as soon as the flush of the
// memtables fits. Second, it marks the store failed on any background
// error, so that health shows it before a write fails.
class store_error_listener : public rocksdb::EventListener {
public:
  explicit store_error_listener(event_log::impl& log) : log_(log) {}
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason,
                            rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (bg_error.IsNoSpace()
        || bg_error.subcode() == rocksdb::Status::kSpaceLimit)
      *auto_recovery = false;
  }
  // A failed flush or compaction stops every later write as a failed
  // write does: the store's health says so at once, and the next write
  // (or `event_log::writable`) resumes.
  void OnBackgroundError(rocksdb::BackgroundErrorReason,
                         rocksdb::Status* bg_error) override {
    if (bg_error && !bg_error->ok())
      log_.note_write_failure(*bg_error);
  }

private:
  event_log::impl& log_;
};

// Checks the options, fills in their defaults and creates the directory.
caf::error prepare(log_options& opts) {
  if (opts.dir.empty())
    return make_error(errc::invalid_argument,
                      "data directory '': must not be empty; set the node's "
                      "data directory");
  if (!opts.clock)
    opts.clock = [] {
      return now_us();
    };
  std::error_code ec;
  std::filesystem::create_directories(opts.dir, ec);
  if (ec)
    return make_error(errc::io_error,
                      fmt::format("{}: cannot create it ({}); check the path "
                                  "and its permissions",
                                  dir_prefix(opts.dir), ec.message()));
  return {};
}

// Opens RocksDB with the log's column families, creating what is missing
// (a directory made before `dead_letters` existed gets it now).
caf::error open_db(event_log::impl& self) {
  const auto& dir = self.opts.dir;
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  options.info_log = std::make_shared<stderr_logger>();
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Reusing WAL files keeps their size, so a sync need not update file
  // metadata: fewer journal commits per fdatasync.
  options.recycle_log_file_num = 4;
  options.keep_log_file_num = 4;
  options.max_background_jobs = 2;
  options.listeners.push_back(std::make_shared<store_error_listener>(self));
  // Memory bounded by these, not by the work: memtables of 16 MiB (two per
  // column family at most) and 32 MiB in all before the largest is
  // flushed (RocksDB's defaults are 64 MiB each, no total), and one block
  // cache of 8 MiB for every column family. An append-only log reads each
  // block about once (a replay), so a larger cache buys little.
  options.write_buffer_size = size_t{16} << 20;
  options.db_write_buffer_size = size_t{32} << 20;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(size_t{8} << 20);
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs{
    {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions{options}},
    {"events", rocksdb::ColumnFamilyOptions{options}},
    {"meta", rocksdb::ColumnFamilyOptions{options}},
    {"offsets", rocksdb::ColumnFamilyOptions{options}},
    {"dead_letters", rocksdb::ColumnFamilyOptions{options}},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s =
    rocksdb::DB::Open(rocksdb::DBOptions{options}, dir, cfs, &handles, &raw);
  if (!s.ok()) {
    if (s.IsCorruption())
      return corrupt_error(dir, s.ToString());
    return make_error(errc::io_error,
                      fmt::format("{}: cannot open the event log ({}); check "
                                  "that no other node uses the directory and "
                                  "that it is writable",
                                  dir_prefix(dir), s.ToString()));
  }
  self.db.reset(raw);
  self.cf_default = handles[0];
  self.cf_events = handles[1];
  self.cf_meta = handles[2];
  self.cf_offsets = handles[3];
  self.cf_dead_letters = handles[4];
  return {};
}

// The stream id: read, or made (and synced) with a new directory.
caf::error load_stream_id(event_log::impl& self) {
  const auto& dir = self.opts.dir;
  std::string value;
  auto s =
    self.db->Get(self.read_options(), self.cf_meta, meta_stream_id, &value);
  if (s.ok()) {
    self.stream_id = std::move(value);
    return {};
  }
  if (!s.IsNotFound())
    return read_error(dir, s);
  self.stream_id = make_uuid_v4();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = self.db->Put(wo, self.cf_meta, meta_stream_id, self.stream_id);
  if (!s.ok())
    return write_error(dir, s);
  return {};
}

// The head and the oldest retained seq. The head is the newest event, or
// the last seq ever written if retention deleted it (a seq is never
// reused); the newest group is parsed, so a damaged one fails the open.
caf::error load_positions(event_log::impl& self) {
  const auto& dir = self.opts.dir;
  auto ro = self.read_options();
  uint64_t head = 0;
  std::string value;
  auto s = self.db->Get(ro, self.cf_meta, meta_last_seq, &value);
  if (s.ok()) {
    if (value.size() != 8)
      return corrupt_error(dir, "meta 'last_seq' is not 8 bytes");
    head = get_be64(value.data());
  } else if (!s.IsNotFound()) {
    return read_error(dir, s);
  }
  uint64_t first = 0;
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_events)};
  it->SeekToLast();
  if (it->Valid()) {
    if (it->key().size() != 8)
      return corrupt_error(dir, "an events key is not 8 bytes");
    group_reader g{get_be64(it->key().data()), it->value().ToStringView()};
    entry_view e;
    while (g.next(e)) {
    }
    if (g.corrupt())
      return corrupt_error(dir, "the newest group of events is malformed");
    head = std::max(head, g.end_seq() - 1);
    it->SeekToFirst();
    if (it->Valid()) {
      if (it->key().size() != 8)
        return corrupt_error(dir, "an events key is not 8 bytes");
      first = get_be64(it->key().data());
    }
  }
  if (!it->status().ok())
    return read_error(dir, it->status());
  self.last_seq = head;
  self.head = head;
  self.first = first != 0 ? first : head + 1;
  return {};
}

// The last type_seq of every type.
caf::error load_type_heads(event_log::impl& self) {
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(self.read_options(), self.cf_meta)};
  for (it->Seek(meta_type_prefix);
       it->Valid() && it->key().starts_with(meta_type_prefix); it->Next()) {
    if (it->value().size() != 8)
      return corrupt_error(self.opts.dir, "a type head in meta is not 8 bytes");
    auto key = it->key();
    key.remove_prefix(meta_type_prefix.size());
    self.type_heads.emplace(key.ToString(), get_be64(it->value().data()));
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  return {};
}

// The dead letters: how many there are, and the last id assigned.
caf::error load_dead_letter_state(event_log::impl& self) {
  const auto& dir = self.opts.dir;
  auto ro = self.read_options();
  std::string value;
  auto s = self.db->Get(ro, self.cf_meta, meta_last_dead_letter, &value);
  if (s.ok()) {
    if (value.size() != 8)
      return corrupt_error(dir, "meta 'last_dead_letter' is not 8 bytes");
    self.last_dead_letter = get_be64(value.data());
  } else if (!s.IsNotFound()) {
    return read_error(dir, s);
  }
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_dead_letters)};
  uint64_t count = 0;
  uint64_t last = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8)
      return corrupt_error(dir, "a dead_letters key is not 8 bytes");
    last = get_be64(it->key().data());
    ++count;
  }
  if (!it->status().ok())
    return read_error(dir, it->status());
  self.dead_letter_count = count;
  self.last_dead_letter = std::max(self.last_dead_letter, last);
  return {};
}

caf::error start_committer(event_log::impl& self) {
  try {
    self.committer = std::thread{[ptr = &self] {
      ptr->run();
    }};
  } catch (const std::exception& ex) {
    return make_error(errc::io_error,
                      fmt::format("{}: cannot start the committer thread ({}); "
                                  "raise the process' thread limit",
                                  dir_prefix(self.opts.dir), ex.what()));
  }
  return {};
}

} // namespace

caf::expected<std::unique_ptr<event_log>> event_log::open(log_options opts) {
  if (auto err = prepare(opts))
    return err;
  auto self = std::make_unique<impl>();
  self->opts = std::move(opts);
  for (auto step : {open_db, load_stream_id, load_positions, load_type_heads,
                    load_dead_letter_state, start_committer})
    if (auto err = step(*self))
      return err;
  return std::unique_ptr<event_log>{new event_log(std::move(self))};
}

} // namespace herald::store
