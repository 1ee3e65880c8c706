// Dead letters: their MessagePack encoding and the `event_log` members that
// store, list, find and remove them.
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

// A dead letter's value is a MessagePack map with these keys; the id is the
// key of the value. Unknown keys are ignored, so that a newer version can
// add fields. Added later, and optional when read (letters stored before
// them read back without them): an attempt's `node` (read as the letter's)
// and `redrives`.
constexpr const char* dl_consumer = "consumer";
constexpr const char* dl_node = "node";
constexpr const char* dl_event_type = "event_type";
constexpr const char* dl_event_id = "event_id";
constexpr const char* dl_key = "key";
constexpr const char* dl_stream = "stream";
constexpr const char* dl_seq = "seq";
constexpr const char* dl_envelope = "envelope";
constexpr const char* dl_attempts = "attempts";
constexpr const char* dl_reason = "reason";
constexpr const char* dl_parked = "parked";
constexpr const char* dl_created_us = "created_us";
constexpr const char* dl_time_us = "time_us";
constexpr const char* dl_error = "error";
constexpr const char* dl_error_class = "error_class";
constexpr const char* dl_redrives = "redrives";
constexpr const char* dl_by = "by";

std::string encode_letter(const dead_letter& dl) {
  auto attempts = payload::array();
  for (auto& a : dl.attempts)
    attempts.push_back(payload{{dl_time_us, a.time_us},
                               {dl_error, a.error},
                               {dl_error_class, a.error_class},
                               {dl_node, a.node}});
  auto redrives = payload::array();
  for (auto& r : dl.redrives)
    redrives.push_back(payload{{dl_time_us, r.time_us}, {dl_by, r.by}});
  payload doc{
    {dl_consumer, dl.consumer},
    {dl_node, dl.node},
    {dl_event_type, dl.event_type},
    {dl_event_id, dl.event_id},
    {dl_key, dl.key},
    {dl_stream, dl.stream},
    {dl_seq, dl.seq},
    {dl_envelope, payload::binary(std::vector<uint8_t>(dl.envelope.begin(),
                                                       dl.envelope.end()))},
    {dl_attempts, std::move(attempts)},
    {dl_redrives, std::move(redrives)},
    {dl_reason, dl.reason},
    {dl_parked, dl.parked},
    {dl_created_us, dl.created_us},
  };
  return encode_payload(doc);
}

// The field `name` of the map `obj`; null, saying so in `why`, if missing.
const payload* field_of(const payload& obj, const char* name,
                        std::string& why) {
  auto i = obj.find(name);
  if (i == obj.end()) {
    why = fmt::format("field '{}' is missing", name);
    return nullptr;
  }
  return &*i;
}

// The read_field overloads read the field `name` of the map `obj` into
// `out`; on failure they say what was wrong in `why` and return false.

bool wrong_type(const char* name, const char* expected, std::string& why) {
  why = fmt::format("field '{}' is not {}", name, expected);
  return false;
}

bool read_field(const payload& obj, const char* name, std::string& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_string())
    return wrong_type(name, "a string", why);
  out = v->get_ref<const std::string&>();
  return true;
}

bool read_field(const payload& obj, const char* name, uint64_t& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_number_unsigned())
    return wrong_type(name, "an unsigned integer", why);
  out = v->get<uint64_t>();
  return true;
}

bool read_field(const payload& obj, const char* name, int64_t& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (v->is_number_unsigned()) {
    auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return wrong_type(name, "a 64-bit signed integer", why);
    out = static_cast<int64_t>(u);
    return true;
  }
  if (!v->is_number_integer())
    return wrong_type(name, "an integer", why);
  out = v->get<int64_t>();
  return true;
}

bool read_field(const payload& obj, const char* name, bool& out,
                std::string& why) {
  auto* v = field_of(obj, name, why);
  if (v == nullptr)
    return false;
  if (!v->is_boolean())
    return wrong_type(name, "a boolean", why);
  out = v->get<bool>();
  return true;
}

// Decodes a dead letter's value; on failure says what was wrong in `why`.
std::optional<dead_letter> decode_letter(std::string_view value,
                                         std::string& why) {
  // An envelope may be as big as a frame: the letter holding it is bigger.
  decode_limits limits;
  limits.max_frame = std::max(limits.max_frame, value.size());
  limits.max_str = limits.max_frame;
  auto doc = decode_payload(value, limits);
  if (!doc) {
    why = message_of(doc.error());
    return std::nullopt;
  }
  if (!doc->is_object()) {
    why = "not a map";
    return std::nullopt;
  }
  dead_letter dl;
  if (!read_field(*doc, dl_consumer, dl.consumer, why)
      || !read_field(*doc, dl_node, dl.node, why)
      || !read_field(*doc, dl_event_type, dl.event_type, why)
      || !read_field(*doc, dl_event_id, dl.event_id, why)
      || !read_field(*doc, dl_key, dl.key, why)
      || !read_field(*doc, dl_stream, dl.stream, why)
      || !read_field(*doc, dl_seq, dl.seq, why)
      || !read_field(*doc, dl_reason, dl.reason, why)
      || !read_field(*doc, dl_parked, dl.parked, why)
      || !read_field(*doc, dl_created_us, dl.created_us, why))
    return std::nullopt;
  auto* env = field_of(*doc, dl_envelope, why);
  if (env == nullptr)
    return std::nullopt;
  if (!env->is_binary()) {
    wrong_type(dl_envelope, "binary", why);
    return std::nullopt;
  }
  auto& bytes = env->get_binary();
  dl.envelope.assign(bytes.begin(), bytes.end());
  auto* attempts = field_of(*doc, dl_attempts, why);
  if (attempts == nullptr)
    return std::nullopt;
  if (!attempts->is_array()) {
    wrong_type(dl_attempts, "an array", why);
    return std::nullopt;
  }
  dl.attempts.reserve(attempts->size());
  for (auto& a : *attempts) {
    if (!a.is_object()) {
      why = "an attempt is not a map";
      return std::nullopt;
    }
    auto& out = dl.attempts.emplace_back();
    out.node = dl.node;
    if (!read_field(a, dl_time_us, out.time_us, why)
        || !read_field(a, dl_error, out.error, why)
        || !read_field(a, dl_error_class, out.error_class, why)
        || (a.contains(dl_node) && !read_field(a, dl_node, out.node, why))) {
      why = "attempt " + std::to_string(dl.attempts.size()) + ": " + why;
      return std::nullopt;
    }
  }
  if (!doc->contains(dl_redrives))
    return dl;
  auto& redrives = (*doc)[dl_redrives];
  if (!redrives.is_array()) {
    wrong_type(dl_redrives, "an array", why);
    return std::nullopt;
  }
  for (auto& r : redrives) {
    auto& out = dl.redrives.emplace_back();
    if (!r.is_object() || !read_field(r, dl_time_us, out.time_us, why)
        || !read_field(r, dl_by, out.by, why)) {
      why = fmt::format("redrive {}: {}", dl.redrives.size(),
                        r.is_object() ? why : "not a map");
      return std::nullopt;
    }
  }
  return dl;
}

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

std::string encode_dead_letter(const dead_letter& dl) {
  return encode_letter(dl);
}

std::optional<dead_letter> decode_dead_letter(std::string_view value,
                                              std::string& why) {
  return decode_letter(value, why);
}

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
  auto dl = decode_letter(value.ToStringView(), why);
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
      batch.Put(self.cf_dead_letters, be64{id}.slice(), encode_letter(dl));
      continue;
    }
    // A redriven letter failed again: its record grows.
    auto stored = self.stored_dead_letter(dl.id);
    if (!stored)
      return std::move(stored.error());
    ids.push_back(dl.id);
    if (!*stored) {
      ++added;
      batch.Put(self.cf_dead_letters, be64{dl.id}.slice(), encode_letter(dl));
      continue;
    }
    auto& grown = **stored;
    grown.attempts.insert(grown.attempts.end(), dl.attempts.begin(),
                          dl.attempts.end());
    grown.reason = dl.reason;
    grown.parked = dl.parked;
    batch.Put(self.cf_dead_letters, be64{dl.id}.slice(), encode_letter(grown));
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
    batch.Put(self.cf_dead_letters, be64{id}.slice(), encode_letter(**stored));
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
    auto dl = decode_letter(it->value().ToStringView(), why);
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
    auto dl = decode_letter(it->value().ToStringView(), why);
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
