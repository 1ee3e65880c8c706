// Dead letters: their MessagePack encoding, apart from the store so that
// what reads a letter off the wire (control_group.cpp) needs no RocksDB.

#include "herald/store/dead_letter.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"

namespace herald::store {

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

} // namespace

std::string encode_dead_letter(const dead_letter& dl) {
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

namespace {

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

} // namespace

std::optional<dead_letter> decode_dead_letter(std::string_view value,
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

} // namespace herald::store
