// Retention: deletes whole commit groups once their newest event is older
// than `log_options::retention`. Dead letters are never deleted here.

#include "herald/store/event_log.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>
#include <rocksdb/iterator.h>

#include "event_log_impl.hpp"
#include "group_format.hpp"

namespace herald::store {

using namespace detail;

caf::expected<uint64_t> event_log::enforce_retention() {
  auto& self = *impl_;
  std::lock_guard<std::mutex> guard{self.retention_mtx};
  auto cutoff = self.opts.clock() - self.opts.retention.count();
  auto ro = self.read_options();
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(ro, self.cf_events)};
  uint64_t first = 0;
  uint64_t end = 0;       // one past the last expired seq
  uint64_t unexpired = 0; // the oldest seq kept, if any
  uint64_t count = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = it->key();
    if (key.size() != 8)
      return corrupt_error(self.opts.dir, "an events key is not 8 bytes");
    auto seq = get_be64(key.data());
    // A group expires whole, once its newest event has.
    group_reader g{seq, it->value().ToStringView()};
    entry_view e;
    int64_t newest = std::numeric_limits<int64_t>::min();
    uint64_t n = 0;
    while (g.next(e)) {
      newest = std::max(newest, e.timestamp_us);
      ++n;
    }
    if (g.corrupt())
      return corrupt_error(self.opts.dir,
                           fmt::format("the group of events at seq {} is "
                                       "malformed",
                                       seq));
    if (newest >= cutoff) {
      unexpired = seq;
      break;
    }
    if (first == 0)
      first = seq;
    end = g.end_seq();
    count += n;
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  it.reset();
  if (count == 0)
    return uint64_t{0};
  rocksdb::WriteOptions wo;
  rocksdb::WriteBatch batch;
  batch.DeleteRange(self.cf_events, be64{first}.slice(), be64{end}.slice());
  auto s = self.write(wo, batch);
  if (!s.ok())
    return write_error(self.opts.dir, s);
  // Without an unexpired event the oldest retained one is the next append,
  // whose seq is at least `end`.
  auto next_first = unexpired != 0 ? unexpired : end;
  if (next_first > self.first.load(std::memory_order_relaxed))
    self.first.store(next_first, std::memory_order_release);
  return count;
}

} // namespace herald::store
