// The control messages that operate consumer groups: `group.describe` (a
// group as a stream's owner keeps it) and `group.reset` (setting its
// committed offsets). Their layout is in control.hpp's file comment.

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

// The wire names of `reset_to`, in the order of the enum.
constexpr std::array<std::string_view, 3> reset_names = {"earliest", "time",
                                                         "seq"};

// Fails `f` when the list `name` holds more than `max_partitions` entries.
template <class T>
void check_size(fields& f, const char* name, const std::vector<T>& list) {
  if (!f.failed() && list.size() > max_partitions)
    f.fail(fmt::format("field '{}': {} entries; expected at most {} (the "
                       "most partitions a group may have)",
                       f.path_of(name), list.size(), max_partitions));
}

} // namespace

std::string_view to_string(reset_to t) noexcept {
  auto i = static_cast<size_t>(t);
  return i < reset_names.size() ? reset_names[i] : "unknown";
}

// --- group.describe
// ------------------------------------------------------------

std::string_view name_of(const group_describe_request&) {
  return op::group_describe;
}

std::string_view name_of(const group_describe_reply&) {
  return op::group_describe;
}

void write(payload& j, const group_describe_request& m) {
  j[key::group] = m.group;
  if (!m.patterns.empty())
    j[key::patterns] = m.patterns;
}

void read(fields& f, group_describe_request& m) {
  f.req(key::group, m.group);
  f.opt_each(key::patterns, m.patterns,
             [&](payload& p, const std::string& path, std::string& out) {
               if (read(p, out) != nullptr)
                 return f.problem(fmt::format("field '{}': expected a "
                                              "string, got {}",
                                              path, p.type_name()));
               return caf::error{};
             });
}

void write(payload& j, const group_describe_reply& m) {
  j[key::stream] = m.stream;
  j[key::group] = m.group;
  j[key::known] = m.known;
  j[key::partitions] = m.partitions;
  j[key::head] = m.head;
  j[key::first] = m.first;
  auto leases = payload::array();
  for (auto& l : m.leases) {
    payload one{{key::partition, l.partition},
                {key::epoch, l.epoch},
                {key::expires_in_ms, l.expires_in_ms},
                {key::offset, l.offset},
                {key::lag, l.lag},
                {key::lag_exact, l.lag_exact}};
    if (!l.holder.empty())
      one[key::holder] = l.holder;
    leases.push_back(std::move(one));
  }
  j[key::leases] = std::move(leases);
  j[key::dead_letters] = m.dead_letters;
  j[key::entities] = m.entities;
}

void read(fields& f, group_describe_reply& m) {
  f.req(key::stream, m.stream);
  f.req(key::group, m.group);
  f.req(key::known, m.known);
  f.req(key::partitions, m.partitions);
  f.req(key::head, m.head);
  f.req(key::first, m.first);
  f.req_each(
    key::leases, m.leases,
    [&](payload& e, const std::string& path, group_partition_state& one) {
      return read_nested(e, f.where(), path, [&](fields& ef) {
        ef.req(key::partition, one.partition);
        ef.req(key::epoch, one.epoch);
        ef.req(key::expires_in_ms, one.expires_in_ms);
        ef.req(key::offset, one.offset);
        ef.req(key::lag, one.lag);
        ef.req(key::lag_exact, one.lag_exact);
        ef.opt(key::holder, one.holder);
      });
    });
  check_size(f, key::leases, m.leases);
  f.req(key::dead_letters, m.dead_letters);
  f.req(key::entities, m.entities);
}

// --- group.reset
// ---------------------------------------------------------------

std::string_view name_of(const group_reset_request&) {
  return op::group_reset;
}

std::string_view name_of(const group_reset_reply&) {
  return op::group_reset;
}

void write(payload& j, const group_reset_request& m) {
  j[key::group] = m.group;
  j[key::to] = to_string(m.to);
  if (m.to != reset_to::earliest)
    j[key::at] = m.at;
  j[key::dry_run] = m.dry_run;
}

void read(fields& f, group_reset_request& m) {
  f.req(key::group, m.group);
  std::string to;
  f.req(key::to, to);
  if (f.failed())
    return;
  auto known = false;
  for (size_t i = 0; i < reset_names.size(); ++i)
    if (reset_names[i] == to) {
      m.to = static_cast<reset_to>(i);
      known = true;
    }
  if (!known) {
    f.fail(fmt::format("field '{}': unknown target '{}'; expected earliest, "
                       "time or seq",
                       key::to, to));
    return;
  }
  if (m.to == reset_to::earliest)
    f.opt(key::at, m.at);
  else
    f.req(key::at, m.at);
  f.opt(key::dry_run, m.dry_run);
}

void write(payload& j, const group_reset_reply& m) {
  j[key::stream] = m.stream;
  j[key::group] = m.group;
  j[key::known] = m.known;
  auto offsets = payload::array();
  for (auto& c : m.offsets)
    offsets.push_back(
      {{key::partition, c.partition}, {key::from, c.from}, {key::to, c.to}});
  j[key::offsets] = std::move(offsets);
  j[key::dry_run] = m.dry_run;
}

void read(fields& f, group_reset_reply& m) {
  f.req(key::stream, m.stream);
  f.req(key::group, m.group);
  f.req(key::known, m.known);
  f.req_each(
    key::offsets, m.offsets,
    [&](payload& e, const std::string& path, group_offset_change& one) {
      return read_nested(e, f.where(), path, [&](fields& ef) {
        ef.req(key::partition, one.partition);
        ef.req(key::from, one.from);
        ef.req(key::to, one.to);
      });
    });
  check_size(f, key::offsets, m.offsets);
  f.req(key::dry_run, m.dry_run);
}

// --- encode, decode
// ------------------------------------------------------------

std::string encode(const group_describe_request& m) {
  return encode_request(m);
}

std::string encode(const group_describe_reply& m) {
  return encode_reply(m);
}

std::string encode(const group_reset_request& m) {
  return encode_request(m);
}

std::string encode(const group_reset_reply& m) {
  return encode_reply(m);
}

std::optional<caf::expected<request>>
detail::read_group_admin_request(std::string_view name, payload& j,
                                 uint32_t v) {
  if (name == op::group_describe)
    return read_request<group_describe_request>(j, v);
  if (name == op::group_reset)
    return read_request<group_reset_request>(j, v);
  return std::nullopt;
}

template caf::expected<answer<group_describe_reply>>
decode_reply<group_describe_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<group_reset_reply>>
decode_reply<group_reset_reply>(std::string_view, const decode_limits&);

} // namespace herald::control
