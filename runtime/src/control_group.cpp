// The consumer group messages of the control protocol: `group.lease`, a
// member's acquires, commits and releases of partitions of the receiver's
// stream (actors/group.hpp). Their layout is in control.hpp's file comment.

#include <array>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "control_fields.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
#include "herald/runtime/control.hpp"

namespace herald::control {

using namespace detail;

namespace {

// The wire names, in the order of the enums.
constexpr std::array<std::string_view, 4> op_names = {"acquire", "standby",
                                                      "renew", "release"};
constexpr std::array<std::string_view, 5> result_names = {
  "granted", "renewed", "released", "refused", "stale"};

template <class Enum, size_t N>
std::string_view wire_name(const std::array<std::string_view, N>& names,
                           Enum value) {
  auto i = static_cast<size_t>(value);
  return i < N ? names[i] : "unknown";
}

// Reads the enum field `name` of `f` from its wire name; `expected` lists
// them for the error.
template <class Enum, size_t N>
void read_name(fields& f, const char* name,
               const std::array<std::string_view, N>& names, Enum& out,
               std::string_view expected) {
  std::string text;
  f.req(name, text);
  if (f.failed())
    return;
  for (size_t i = 0; i < N; ++i)
    if (names[i] == text) {
      out = static_cast<Enum>(i);
      return;
    }
  f.fail(fmt::format("field '{}': unknown {} '{}'; expected {}",
                     f.path_of(name), name, text, expected));
}

// Fails `f` when the list `name` holds more than `max_partitions` entries.
template <class T>
void check_partitions_size(fields& f, const char* name,
                           const std::vector<T>& list) {
  if (!f.failed() && list.size() > max_partitions)
    f.fail(fmt::format("field '{}': {} entries; expected at most {} (the "
                       "most partitions a group may have)",
                       f.path_of(name), list.size(), max_partitions));
}

} // namespace

// --- group.lease
// ----------------------------------------------------------------

std::string_view name_of(const group_lease_request&) {
  return op::group_lease;
}

std::string_view name_of(const group_lease_reply&) {
  return op::group_lease;
}

void write(payload& j, const group_lease_request& m) {
  auto& b = m.body;
  j[key::stream] = b.stream;
  j[key::group] = b.group;
  j[key::member] = b.member;
  j[key::partitions] = b.partitions;
  if (b.initial != 0)
    j[key::initial] = b.initial;
  auto entries = payload::array();
  for (auto& e : b.entries) {
    payload one{{key::p, e.partition}, {key::op, wire_name(op_names, e.op)}};
    if (e.epoch != 0)
      one[key::epoch] = e.epoch;
    if (e.offset != 0)
      one[key::offset] = e.offset;
    entries.push_back(std::move(one));
  }
  j[key::entries] = std::move(entries);
}

void read(fields& f, group_lease_request& m) {
  auto& b = m.body;
  f.req(key::stream, b.stream);
  f.req(key::group, b.group);
  f.req(key::member, b.member);
  f.req(key::partitions, b.partitions);
  if (!f.failed() && (b.partitions == 0 || b.partitions > max_partitions))
    f.fail(fmt::format("field '{}': {}; expected 1 to {}",
                       f.path_of(key::partitions), b.partitions,
                       max_partitions));
  f.opt(key::initial, b.initial);
  f.req_each(key::entries, b.entries,
             [&](payload& e, const std::string& path, lease_entry& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 read_name(ef, key::op, op_names, one.op,
                           "acquire, standby, renew or release");
                 ef.opt(key::epoch, one.epoch);
                 ef.opt(key::offset, one.offset);
               });
             });
  check_partitions_size(f, key::entries, b.entries);
}

void write(payload& j, const group_lease_reply& m) {
  auto& b = m.body;
  j[key::stream] = b.stream;
  j[key::group] = b.group;
  j[key::ttl_ms] = b.ttl_ms;
  auto entries = payload::array();
  for (auto& e : b.entries) {
    payload one{{key::p, e.partition},
                {key::result, wire_name(result_names, e.result)},
                {key::epoch, e.epoch},
                {key::offset, e.offset}};
    if (!e.holder.empty())
      one[key::holder] = e.holder;
    if (e.wanted)
      one[key::wanted] = true;
    if (!e.reason.empty())
      one[key::reason] = e.reason;
    entries.push_back(std::move(one));
  }
  j[key::entries] = std::move(entries);
  j[key::orphans] = b.orphans;
}

void read(fields& f, group_lease_reply& m) {
  auto& b = m.body;
  f.req(key::stream, b.stream);
  f.req(key::group, b.group);
  f.req(key::ttl_ms, b.ttl_ms);
  f.req_each(key::entries, b.entries,
             [&](payload& e, const std::string& path, lease_entry_reply& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 read_name(ef, key::result, result_names, one.result,
                           "granted, renewed, released, refused or stale");
                 ef.req(key::epoch, one.epoch);
                 ef.req(key::offset, one.offset);
                 ef.opt(key::holder, one.holder);
                 ef.opt(key::wanted, one.wanted);
                 ef.opt(key::reason, one.reason);
               });
             });
  check_partitions_size(f, key::entries, b.entries);
  f.req_list(key::orphans, b.orphans);
  check_partitions_size(f, key::orphans, b.orphans);
  b.id = m.id;
}

// --- encode, decode
// ------------------------------------------------------------

std::string encode(const group_lease_request& m) {
  return encode_request(m);
}

std::string encode(const group_lease_reply& m) {
  return encode_reply(m);
}

std::optional<caf::expected<request>>
detail::read_group_request(std::string_view name, payload& j, uint32_t v) {
  if (name == op::group_lease)
    return read_request<group_lease_request>(j, v);
  return std::nullopt;
}

template caf::expected<answer<group_lease_reply>>
decode_reply<group_lease_reply>(std::string_view, const decode_limits&);

} // namespace herald::control
