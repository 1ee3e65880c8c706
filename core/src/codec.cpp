#include "herald/core/codec.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "event_state.hpp"
#include "herald/core/errc.hpp"

namespace herald {

namespace {

// Lets msgpack::packer append to a std::string.
struct string_writer {
  std::string& out;
  void write(const char* data, size_t size) {
    out.append(data, size);
  }
};

using packer = msgpack::packer<string_writer>;

void pack_str(packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void pack_json(packer& pk, const payload& j) {
  switch (j.type()) {
  case payload::value_t::object:
    pk.pack_map(static_cast<uint32_t>(j.size()));
    for (auto& [k, v] : j.items()) {
      pack_str(pk, k);
      pack_json(pk, v);
    }
    break;
  case payload::value_t::array:
    pk.pack_array(static_cast<uint32_t>(j.size()));
    for (auto& v : j)
      pack_json(pk, v);
    break;
  case payload::value_t::string:
    pack_str(pk, j.get_ref<const std::string&>());
    break;
  case payload::value_t::boolean:
    if (j.get<bool>())
      pk.pack_true();
    else
      pk.pack_false();
    break;
  case payload::value_t::number_integer:
    pk.pack_int64(j.get<int64_t>());
    break;
  case payload::value_t::number_unsigned:
    pk.pack_uint64(j.get<uint64_t>());
    break;
  case payload::value_t::number_float:
    pk.pack_double(j.get<double>());
    break;
  case payload::value_t::binary: {
    auto& bin = j.get_binary();
    pk.pack_bin(static_cast<uint32_t>(bin.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(bin.data()),
                     static_cast<uint32_t>(bin.size()));
    break;
  }
  default:
    pk.pack_nil();
  }
}

const char* type_name(msgpack::type::object_type t) {
  switch (t) {
  case msgpack::type::NIL:
    return "nil";
  case msgpack::type::BOOLEAN:
    return "bool";
  case msgpack::type::POSITIVE_INTEGER:
  case msgpack::type::NEGATIVE_INTEGER:
    return "int";
  case msgpack::type::FLOAT32:
  case msgpack::type::FLOAT64:
    return "float";
  case msgpack::type::STR:
    return "str";
  case msgpack::type::BIN:
    return "bin";
  case msgpack::type::ARRAY:
    return "array";
  case msgpack::type::MAP:
    return "map";
  default:
    return "ext";
  }
}

caf::error wrong_type(std::string_view field, const char* expected,
                      const msgpack::object& got) {
  return make_error(errc::decode_error,
                    fmt::format("envelope field '{}' must be {}, got {}", field,
                                expected, type_name(got.type)));
}

// Readers return what the field must be when it is not, else null: no
// error object is built on the success path.
const char* read_str(const msgpack::object& o, std::string_view& out) {
  if (o.type != msgpack::type::STR)
    return "a string";
  out = std::string_view{o.via.str.ptr, o.via.str.size};
  return nullptr;
}

const char* read_uint(const msgpack::object& o, uint64_t& out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER)
    return "an unsigned integer";
  out = o.via.u64;
  return nullptr;
}

// Whether every map key in `o` is a string, as JSON's are (and as herald
// writes them). Otherwise `where` names the first other key: its path below
// `o` (e.g. `.a[2]`) and its type. A key that is itself a map or array
// would need text of its own, nested keys' text escaped again at each
// level (a 233-byte frame grew to gigabytes), and the bytes of a non-string
// key need not be UTF-8: such a frame is refused, never converted.
bool string_keys(const msgpack::object& o, std::string& where) {
  if (o.type == msgpack::type::ARRAY) {
    for (uint32_t i = 0; i < o.via.array.size; ++i)
      if (!string_keys(o.via.array.ptr[i], where)) {
        where.insert(0, fmt::format("[{}]", i));
        return false;
      }
    return true;
  }
  if (o.type != msgpack::type::MAP)
    return true;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    auto& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) {
      where = fmt::format(" has a map key of type {} (entry #{}); map keys "
                          "must be strings",
                          type_name(kv.key.type), i);
      return false;
    }
    if (!string_keys(kv.val, where)) {
      where.insert(0,
                   fmt::format(".{}", std::string_view{kv.key.via.str.ptr,
                                                       kv.key.via.str.size}));
      return false;
    }
  }
  return true;
}

} // namespace

void encode(const envelope_header& h, const payload& data, std::string& out) {
  string_writer w{out};
  packer pk{w};
  pk.pack_map(h.traceparent.empty() ? 10 : 11);
  pack_str(pk, "event_type");
  pack_str(pk, h.event_type);
  pack_str(pk, "timestamp");
  pk.pack_uint64(static_cast<uint64_t>(h.timestamp_us));
  pack_str(pk, "id");
  pack_str(pk, h.id);
  pack_str(pk, "source");
  pack_str(pk, h.source);
  pack_str(pk, "key");
  pack_str(pk, h.key);
  pack_str(pk, "stream");
  pack_str(pk, h.stream);
  pack_str(pk, "seq");
  pk.pack_uint64(h.seq);
  pack_str(pk, "type_seq");
  pk.pack_uint64(h.type_seq);
  pack_str(pk, "schema_version");
  pk.pack_uint32(h.schema_version);
  if (!h.traceparent.empty()) {
    pack_str(pk, "traceparent");
    pack_str(pk, h.traceparent);
  }
  pack_str(pk, "data");
  pack_json(pk, data);
}

std::string encode_payload(const payload& data) {
  std::string out;
  string_writer w{out};
  packer pk{w};
  pack_json(pk, data);
  return out;
}

caf::expected<event> decode(std::string_view frame,
                            const decode_limits& limits) {
  size_t off = 0;
  if (frame.size() > limits.max_frame || frame.empty())
    return decode_next(frame, off, nullptr, limits); // reports the error
  auto owner = std::make_shared<std::string>(frame);
  auto ev = decode_next(*owner, off, owner, limits);
  if (ev && off != frame.size())
    return make_error(errc::decode_error,
                      fmt::format("{} bytes of trailing garbage after the "
                                  "envelope",
                                  frame.size() - off));
  return ev;
}

caf::expected<payload> decode_payload(std::string_view frame,
                                      const decode_limits& limits) {
  if (frame.size() > limits.max_frame)
    return make_error(errc::frame_too_large,
                      fmt::format("frame of {} bytes exceeds the maximum of {} "
                                  "bytes",
                                  frame.size(), limits.max_frame));
  auto cap = [&](size_t limit) {
    return std::min(limit, frame.size());
  };
  msgpack::unpack_limit lim{cap(limits.max_array), cap(limits.max_map),
                            cap(limits.max_str),   cap(limits.max_str),
                            cap(limits.max_str),   limits.max_depth};
  try {
    size_t off = 0;
    msgpack::zone zone;
    auto obj = msgpack::unpack(zone, frame.data(), frame.size(), off, nullptr,
                               nullptr, lim);
    if (off != frame.size())
      return make_error(
        errc::decode_error,
        fmt::format("{} bytes of trailing garbage", frame.size() - off));
    if (std::string where; !string_keys(obj, where))
      return make_error(errc::decode_error,
                        fmt::format("the value at (root){}", where));
    return detail::to_json(obj);
  } catch (const std::exception& e) {
    return make_error(errc::decode_error,
                      fmt::format("malformed MessagePack: {}", e.what()));
  }
}

caf::expected<event> decode_next(std::string_view frame, size_t& offset,
                                 std::shared_ptr<const void> owner,
                                 const decode_limits& limits) {
  if (frame.size() > limits.max_frame)
    return make_error(errc::frame_too_large,
                      fmt::format("frame of {} bytes exceeds the maximum of {} "
                                  "bytes (transport.max_message_size)",
                                  frame.size(), limits.max_frame));
  if (offset >= frame.size())
    return make_error(errc::decode_error, "empty frame");
  // No container can hold more elements than the frame has bytes left: a
  // header claiming billions of elements fails before anything is
  // allocated.
  auto left = frame.size() - offset;
  auto cap = [&](size_t limit) {
    return std::min(limit, left);
  };
  msgpack::unpack_limit lim{cap(limits.max_array), cap(limits.max_map),
                            cap(limits.max_str),   cap(limits.max_str),
                            cap(limits.max_str),   limits.max_depth};
  auto st = std::make_shared<detail::event_state>(1024);
  st->owner = std::move(owner);
  auto start = offset;
  msgpack::object root;
  try {
    // Strings are referenced in place, never copied.
    root = msgpack::unpack(
      st->zone, frame.data(), frame.size(), offset,
      [](msgpack::type::object_type, size_t, void*) {
        return true;
      },
      nullptr, lim);
  } catch (const msgpack::insufficient_bytes&) {
    return make_error(errc::decode_error,
                      fmt::format("truncated frame: {} bytes end inside a "
                                  "MessagePack value",
                                  frame.size()));
  } catch (const msgpack::size_overflow& e) {
    return make_error(errc::decode_error,
                      fmt::format("frame exceeds a decoding limit ({}): "
                                  "a container, string or nesting too large",
                                  e.what()));
  } catch (const std::exception& e) {
    return make_error(errc::decode_error,
                      fmt::format("malformed MessagePack: {}", e.what()));
  }
  st->envelope = frame.substr(start, offset - start);
  if (root.type != msgpack::type::MAP)
    return wrong_type("(envelope)", "a map", root);
  bool have_type = false, have_ts = false, have_id = false, have_data = false;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    auto& kv = root.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR)
      return make_error(errc::decode_error,
                        fmt::format("envelope key #{} must be a string, got {}",
                                    i, type_name(kv.key.type)));
    std::string_view k{kv.key.via.str.ptr, kv.key.via.str.size};
    auto& v = kv.val;
    const char* bad = nullptr;
    uint64_t u = 0;
    if (k == "event_type") {
      bad = read_str(v, st->type);
      have_type = true;
    } else if (k == "timestamp") {
      bad = read_uint(v, u);
      st->timestamp_us = static_cast<int64_t>(u);
      have_ts = true;
    } else if (k == "id") {
      bad = read_str(v, st->id);
      have_id = true;
    } else if (k == "source") {
      bad = read_str(v, st->source);
    } else if (k == "key") {
      bad = read_str(v, st->key);
    } else if (k == "stream") {
      bad = read_str(v, st->stream);
    } else if (k == "seq") {
      bad = read_uint(v, st->seq);
    } else if (k == "type_seq") {
      bad = read_uint(v, st->type_seq);
    } else if (k == "schema_version") {
      bad = read_uint(v, u);
      st->schema_version = static_cast<uint32_t>(u);
    } else if (k == "traceparent") {
      bad = read_str(v, st->traceparent);
    } else if (k == "data") {
      if (v.type != msgpack::type::MAP)
        bad = "a map";
      else if (std::string where; !string_keys(v, where))
        return make_error(errc::decode_error,
                          fmt::format("envelope field 'data'{}", where));
      st->data_obj = v;
      have_data = true;
    }
    // Unknown keys are skipped: newer producers may add fields.
    if (bad != nullptr)
      return wrong_type(k, bad, v);
  }
  const char* missing = !have_type   ? "event_type"
                        : !have_ts   ? "timestamp"
                        : !have_id   ? "id"
                        : !have_data ? "data"
                                     : nullptr;
  if (missing != nullptr)
    return make_error(
      errc::decode_error,
      fmt::format("envelope lacks the required field '{}'", missing));
  return event{std::move(st)};
}

namespace detail {

payload to_json(const msgpack::object& o) {
  switch (o.type) {
  case msgpack::type::BOOLEAN:
    return o.via.boolean;
  case msgpack::type::POSITIVE_INTEGER:
    return o.via.u64;
  case msgpack::type::NEGATIVE_INTEGER:
    return o.via.i64;
  case msgpack::type::FLOAT32:
  case msgpack::type::FLOAT64:
    return o.via.f64;
  case msgpack::type::STR:
    return std::string{o.via.str.ptr, o.via.str.size};
  case msgpack::type::BIN:
    return payload::binary(std::vector<uint8_t>(
      reinterpret_cast<const uint8_t*>(o.via.bin.ptr),
      reinterpret_cast<const uint8_t*>(o.via.bin.ptr) + o.via.bin.size));
  case msgpack::type::ARRAY: {
    auto arr = payload::array();
    for (uint32_t i = 0; i < o.via.array.size; ++i)
      arr.push_back(to_json(o.via.array.ptr[i]));
    return arr;
  }
  case msgpack::type::MAP: {
    auto obj = payload::object();
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      // Decoding refused maps with other keys (string_keys).
      auto& kv = o.via.map.ptr[i];
      obj[std::string{kv.key.via.str.ptr, kv.key.via.str.size}] =
        to_json(kv.val);
    }
    return obj;
  }
  default:
    return nullptr;
  }
}

} // namespace detail

} // namespace herald
