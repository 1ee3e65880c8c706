// Dead letters: the `event_log` members that store, list, find and remove
// them (their encoding is in dead_letter_codec.cpp).
//
// Thread safety: writers (`add_dead_letters`, `remove_dead_letters`) hold
// `dead_letters_mtx` (see event_log_impl.hpp); readers take no lock.

#include "herald/store/event_log.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <rocksdb/iterator.h>

#include "event_log_impl.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"

namespace herald::store {

using namespace detail;

namespace {

caf::error corrupt_dead_letter(const std::string& dir, uint64_t id,
                               const std::string& why) {
  return make_error(errc::corrupt_log,
                    fmt::format("{}: dead letter {} is corrupt ({}); remove "
                                "it, or restore the data directory from a "
                                "backup",
                                dir_prefix(dir), id, why));
}

caf::error dead_letters_write_error(const std::string& dir,
                                    std::string_view what,
                                    const rocksdb::Status& st) {
  return make_error(errc::io_error,
                    fmt::format("{}: cannot {} ({}); free disk space and "
                                "retry",
                                dir_prefix(dir), what, st.ToString()));
}

bool selects(const dead_letter_filter& filter, const dead_letter& dl) {
  return (filter.consumer.empty() || filter.consumer == dl.consumer)
         && (filter.event_type.empty() || filter.event_type == dl.event_type)
         && (filter.key.empty() || filter.key == dl.key);
}

} // namespace

// Writes a change of the dead letters durably. REQUIRES: dead_letters_mtx.
rocksdb::Status
event_log::impl::write_dead_letters(rocksdb::WriteBatch& change) {
  return write(durable_write_options(), change);
}

caf::expected<std::optional<dead_letter>>
event_log::impl::stored_dead_letter(uint64_t id) const {
  rocksdb::PinnableSlice value;
  auto s = db->Get(read_options(), cf_dead_letters, be64{id}.slice(), &value);
  if (s.IsNotFound())
    return std::optional<dead_letter>{};
  if (!s.ok())
    return read_error(opts.dir, s);
  std::string why;
  auto dl = decode_dead_letter(value.ToStringView(), why);
  if (!dl)
    return corrupt_dead_letter(opts.dir, id, why);
  dl->id = id;
  return dl;
}

caf::expected<std::vector<uint64_t>>
event_log::add_dead_letters(std::vector<dead_letter>& letters) {
  auto& self = *impl_;
  std::vector<uint64_t> ids;
  if (letters.empty())
    return ids;
  ids.reserve(letters.size());
  rocksdb::WriteBatch batch;
  std::lock_guard<std::mutex> guard{self.dead_letters_mtx};
  auto id = self.last_dead_letter;
  size_t added = 0;
  for (auto& dl : letters) {
    if (dl.id == 0) {
      ids.push_back(++id);
      ++added;
      batch.Put(self.cf_dead_letters, be64{id}.slice(), encode_dead_letter(dl));
      continue;
    }
    // A redriven letter failed again: its record grows.
    auto stored = self.stored_dead_letter(dl.id);
    if (!stored)
      return std::move(stored.error());
    ids.push_back(dl.id);
    if (!*stored) {
      ++added;
      batch.Put(self.cf_dead_letters, be64{dl.id}.slice(),
                encode_dead_letter(dl));
      continue;
    }
    auto& grown = **stored;
    grown.attempts.insert(grown.attempts.end(), dl.attempts.begin(),
                          dl.attempts.end());
    grown.reason = dl.reason;
    grown.parked = dl.parked;
    batch.Put(self.cf_dead_letters, be64{dl.id}.slice(),
              encode_dead_letter(grown));
  }
  // In the same write: an id is never reused, even once its letter is gone.
  batch.Put(self.cf_meta, meta_last_dead_letter, be64{id}.slice());
  auto s = self.write_dead_letters(batch);
  if (!s.ok())
    return dead_letters_write_error(
      self.opts.dir, fmt::format("store {} dead letter(s)", letters.size()), s);
  self.last_dead_letter = id;
  self.dead_letter_count.fetch_add(added, std::memory_order_release);
  for (size_t i = 0; i < letters.size(); ++i)
    letters[i].id = ids[i];
  return ids;
}

caf::expected<size_t>
event_log::record_redrive(const std::vector<uint64_t>& ids, int64_t time_us,
                          const std::string& by) {
  auto& self = *impl_;
  rocksdb::WriteBatch batch;
  size_t found = 0;
  std::lock_guard<std::mutex> guard{self.dead_letters_mtx};
  for (auto id : ids) {
    auto stored = self.stored_dead_letter(id);
    if (!stored)
      return std::move(stored.error());
    if (!*stored)
      continue;
    (*stored)->redrives.push_back({time_us, by});
    batch.Put(self.cf_dead_letters, be64{id}.slice(),
              encode_dead_letter(**stored));
    ++found;
  }
  if (found == 0)
    return found;
  auto s = self.write_dead_letters(batch);
  if (!s.ok())
    return dead_letters_write_error(
      self.opts.dir,
      fmt::format("record the redrive of {} dead letter(s)", found), s);
  return found;
}

caf::expected<std::vector<dead_letter>>
event_log::dead_letters(const dead_letter_filter& filter) const {
  auto& self = *impl_;
  std::vector<dead_letter> out;
  if (filter.after_id == std::numeric_limits<uint64_t>::max())
    return out;
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(self.read_options(), self.cf_dead_letters)};
  std::string why;
  for (it->Seek(be64{filter.after_id + 1}.slice()); it->Valid(); it->Next()) {
    if (it->key().size() != 8)
      return corrupt_error(self.opts.dir, "a dead_letters key is not 8 bytes");
    auto id = get_be64(it->key().data());
    auto dl = decode_dead_letter(it->value().ToStringView(), why);
    if (!dl)
      return corrupt_dead_letter(self.opts.dir, id, why);
    if (!selects(filter, *dl))
      continue;
    dl->id = id;
    out.push_back(std::move(*dl));
    if (filter.limit != 0 && out.size() >= filter.limit)
      break;
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  return out;
}

caf::expected<std::map<std::string, uint64_t, std::less<>>>
event_log::dead_letter_counts() const {
  auto& self = *impl_;
  std::map<std::string, uint64_t, std::less<>> counts;
  std::unique_ptr<rocksdb::Iterator> it{
    self.db->NewIterator(self.read_options(), self.cf_dead_letters)};
  std::string why;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8)
      return corrupt_error(self.opts.dir, "a dead_letters key is not 8 bytes");
    auto dl = decode_dead_letter(it->value().ToStringView(), why);
    if (!dl)
      return corrupt_dead_letter(self.opts.dir, get_be64(it->key().data()),
                                 why);
    ++counts[dl->consumer];
  }
  if (!it->status().ok())
    return read_error(self.opts.dir, it->status());
  return counts;
}

caf::expected<std::optional<dead_letter>>
event_log::find_dead_letter(uint64_t id) const {
  return impl_->stored_dead_letter(id);
}

caf::expected<size_t>
event_log::remove_dead_letters(const std::vector<uint64_t>& ids) {
  auto& self = *impl_;
  auto unique = ids;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  rocksdb::WriteBatch batch;
  size_t existing = 0;
  // Under the lock: two removes of one id must not both count it.
  std::lock_guard<std::mutex> guard{self.dead_letters_mtx};
  auto ro = self.read_options();
  rocksdb::PinnableSlice value;
  for (auto id : unique) {
    be64 key{id};
    value.Reset();
    auto s = self.db->Get(ro, self.cf_dead_letters, key.slice(), &value);
    if (s.IsNotFound())
      continue;
    if (!s.ok())
      return read_error(self.opts.dir, s);
    batch.Delete(self.cf_dead_letters, key.slice());
    ++existing;
  }
  if (existing == 0)
    return existing;
  auto s = self.write_dead_letters(batch);
  if (!s.ok())
    return dead_letters_write_error(
      self.opts.dir, fmt::format("remove {} dead letter(s)", existing), s);
  self.dead_letter_count.fetch_sub(existing, std::memory_order_release);
  return existing;
}

uint64_t event_log::dead_letter_count() const noexcept {
  return impl_->dead_letter_count.load(std::memory_order_acquire);
}

} // namespace herald::store
