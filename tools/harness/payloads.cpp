#include "payloads.hpp"

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald::harness {

namespace {

std::string random_uuid(std::mt19937_64& rng) {
  auto a = rng();
  auto b = rng();
  // Version 4, variant 10.
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}", a >> 32,
                     (a >> 16) & 0xffff, a & 0xfff, 8 + ((b >> 62) & 3),
                     (b >> 48) & 0xfff, b & 0xffffffffffffull);
}

payload value_of(const field_spec& f, std::mt19937_64& rng, int depth = 0) {
  auto n = rng();
  switch (f.type) {
  case field_type::string:
    return fmt::format("s{:x}", n & 0xffffff);
  case field_type::uuid:
    return random_uuid(rng);
  case field_type::email:
    return fmt::format("u{:x}@example.com", n & 0xffffff);
  case field_type::integer:
    return static_cast<int64_t>(n % 100000);
  case field_type::floating:
    return static_cast<double>(n % 100000) / 100.0;
  case field_type::boolean:
    return (n & 1) != 0;
  case field_type::timestamp:
    return fmt::format("2024-{:02}-{:02}T{:02}:{:02}:{:02}Z", 1 + n % 12,
                       1 + (n >> 8) % 28, (n >> 16) % 24, (n >> 24) % 60,
                       (n >> 32) % 60);
  case field_type::enumeration:
    return f.values.empty() ? payload("")
                            : payload(f.values[n % f.values.size()]);
  case field_type::array: {
    auto items = payload::array();
    if (!f.items.empty() && depth < 4)
      for (size_t i = 0, k = n % 3; i < k; ++i)
        items.push_back(value_of(f.items.front(), rng, depth + 1));
    return items;
  }
  case field_type::object: {
    auto obj = payload::object();
    for (auto& sub : f.fields)
      if (!sub.optional || (rng() & 1) != 0)
        obj[sub.name] = value_of(sub, rng, depth + 1);
    return obj;
  }
  }
  return nullptr;
}

} // namespace

caf::expected<field_type> key_type_of(const event_spec& spec) {
  for (auto& f : spec.payload)
    if (f.name == spec.key) {
      if (f.type == field_type::string || f.type == field_type::uuid
          || f.type == field_type::email)
        return f.type;
      return make_error(errc::invalid_config,
                        fmt::format("event '{}': key field '{}' is of type "
                                    "{}; the harness makes keys of type "
                                    "string, uuid or email only",
                                    spec.name, spec.key, to_string(f.type)));
    }
  return make_error(errc::invalid_config,
                    fmt::format("event '{}': key field '{}' is not in its "
                                "payload",
                                spec.name, spec.key));
}

std::string make_key(field_type t, uint64_t seed, size_t i) {
  auto tag = seed & 0xffffffffull;
  switch (t) {
  case field_type::uuid:
    return fmt::format("{:08x}-0000-4000-8000-{:012x}", tag, i);
  case field_type::email:
    return fmt::format("entity{}-{:x}@example.com", i, tag);
  default:
    return fmt::format("entity-{}-{:x}", i, tag);
  }
}

payload make_payload(const event_spec& spec, const std::string& key,
                     std::mt19937_64& rng) {
  auto data = payload::object();
  for (auto& f : spec.payload) {
    if (f.name == spec.key)
      data[f.name] = key;
    else if (!f.optional || (rng() & 1) != 0)
      data[f.name] = value_of(f, rng);
  }
  return data;
}

} // namespace herald::harness
