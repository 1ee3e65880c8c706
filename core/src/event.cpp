#include "herald/core/event.hpp"

#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "event_state.hpp"
#include "values.hpp"

namespace herald {

std::string_view event::type() const noexcept {
  return state_->type;
}

std::string_view event::id() const noexcept {
  return state_->id;
}

std::string_view event::source() const noexcept {
  return state_->source;
}

std::string_view event::key() const noexcept {
  return state_->key;
}

std::string_view event::stream() const noexcept {
  return state_->stream;
}

uint64_t event::seq() const noexcept {
  return state_->seq;
}

uint64_t event::type_seq() const noexcept {
  return state_->type_seq;
}

uint32_t event::schema_version() const noexcept {
  return state_->schema_version;
}

std::string_view event::traceparent() const noexcept {
  return state_->traceparent;
}

std::string_view event::envelope() const noexcept {
  return state_->envelope;
}

int64_t event::timestamp_us() const noexcept {
  return state_->timestamp_us;
}

std::string event::timestamp() const {
  return format_timestamp(state_->timestamp_us);
}

const payload& event::data() const {
  std::call_once(state_->once, [this] {
    state_->data = detail::to_json(state_->data_obj);
  });
  return state_->data;
}

nlohmann::ordered_json event::to_json() const {
  nlohmann::ordered_json j;
  j["event_type"] = type();
  j["timestamp"] = timestamp();
  j["data"] = data();
  j["id"] = id();
  j["source"] = source();
  j["key"] = key();
  j["stream"] = stream();
  j["seq"] = seq();
  j["type_seq"] = type_seq();
  j["schema_version"] = schema_version();
  if (!traceparent().empty())
    j["traceparent"] = traceparent();
  return j;
}

nlohmann::ordered_json event::to_cloudevent() const {
  nlohmann::ordered_json j;
  j["specversion"] = "1.0";
  j["id"] = id();
  j["source"] = source();
  j["type"] = type();
  j["time"] = timestamp();
  j["subject"] = key();
  j["datacontenttype"] = "application/json";
  j["heraldstream"] = stream();
  j["heraldseq"] = std::to_string(seq());
  j["heraldtypeseq"] = std::to_string(type_seq());
  j["heraldschemaversion"] = schema_version();
  if (!traceparent().empty())
    j["traceparent"] = traceparent();
  j["data"] = data();
  return j;
}

std::optional<int64_t> parse_timestamp(std::string_view s) {
  // One reading of RFC 3339 for payloads and for times given to tools.
  std::string why;
  auto t = detail::parse_rfc3339(s, why);
  if (!t)
    return std::nullopt;
  int64_t micros = 0, scale = 100'000;
  for (size_t i = 0; i < t->fraction.size() && i < 6; ++i, scale /= 10)
    micros += (t->fraction[i] - '0') * scale;
  return t->epoch_seconds * 1'000'000 + micros;
}

std::string format_timestamp(int64_t micros) {
  auto secs = static_cast<std::time_t>(micros / 1'000'000);
  auto frac = micros % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, frac);
}

int64_t now_us() noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch())
    .count();
}

namespace {

// splitmix64: fast, good enough for the random bits of ids; seeded per
// thread from the OS.
uint64_t next_random() noexcept {
  thread_local uint64_t state = [] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd()
           ^ std::hash<std::thread::id>{}(std::this_thread::get_id());
  }();
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string format_uuid(uint64_t hi, uint64_t lo) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t pos = 0;
  auto put = [&](uint64_t word) {
    for (int shift = 60; shift >= 0; shift -= 4) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23)
        ++pos;
      out[pos++] = hex[(word >> shift) & 0xf];
    }
  };
  put(hi);
  put(lo);
  return out;
}

} // namespace

std::string make_uuid_v7() {
  return make_uuid_v7(now_us());
}

std::string make_uuid_v7(int64_t micros_since_epoch) {
  // RFC 9562 UUIDv7 with method 3: the 12 bits of rand_a hold the fraction
  // of the millisecond, so ids made on one node sort by time to ~0.25 µs.
  auto us = static_cast<uint64_t>(micros_since_epoch);
  uint64_t ms = us / 1000;
  uint64_t sub = ((us % 1000) << 12) / 1000;
  uint64_t hi = (ms << 16) | (uint64_t{7} << 12) | sub;
  uint64_t lo = (next_random() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return format_uuid(hi, lo);
}

std::string make_uuid_v4() {
  uint64_t hi = (next_random() & 0xffffffffffff0fffULL) | 0x4000ULL;
  uint64_t lo = (next_random() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return format_uuid(hi, lo);
}

} // namespace herald
