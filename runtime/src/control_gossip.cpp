// The membership messages of the control protocol: gossip between members
// (`gossip.sync`, `gossip.ping`, `gossip.probe`) and the view as shown
// (`members`). Their layout is in control.hpp's file comment.

#include <array>

#include <fmt/format.h>

#include "control_fields.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"

namespace herald::control {

using namespace detail;

namespace {

constexpr std::array<std::string_view, 5> status_names = {
  "joining", "up", "suspect", "down", "leaving"};

// Fails `f` when the list `name` holds more than `max` entries.
template <class T>
void check_size(fields& f, const char* name, const std::vector<T>& list,
                size_t max) {
  if (!f.failed() && list.size() > max)
    f.fail(fmt::format("field '{}': {} entries; expected at most {}",
                       f.path_of(name), list.size(), max));
}

payload member_json(const cluster_member& m) {
  auto consumers = payload::array();
  for (auto& c : m.consumers)
    consumers.push_back({{key::name, c.name}, {key::patterns, c.patterns}});
  return {{key::name, m.name},
          {key::stream, m.stream},
          {key::incarnation, m.incarnation},
          {key::status, to_string(m.status)},
          {key::service, m.service},
          {key::pub, m.pub},
          {key::control, m.control},
          {key::metrics, m.metrics},
          {key::produces, m.produces},
          {key::consumers, std::move(consumers)}};
}

payload members_json(const std::vector<cluster_member>& list) {
  auto out = payload::array();
  for (auto& m : list)
    out.push_back(member_json(m));
  return out;
}

void read_member_fields(fields& f, cluster_member& out) {
  f.req(key::name, out.name);
  f.req(key::stream, out.stream);
  f.req(key::incarnation, out.incarnation);
  std::string status;
  f.req(key::status, status);
  if (!f.failed()) {
    if (auto s = parse_member_status(status))
      out.status = *s;
    else
      f.fail(fmt::format("field '{}': unknown status '{}'; expected joining, "
                         "up, suspect, down or leaving",
                         f.path_of(key::status), status));
  }
  f.req(key::service, out.service);
  f.req(key::pub, out.pub);
  f.req(key::control, out.control);
  f.req(key::metrics, out.metrics);
  f.req_list(key::produces, out.produces);
  check_size(f, key::produces, out.produces, max_member_list);
  f.req_each(key::consumers, out.consumers,
             [&](payload& c, const std::string& path, member_consumer& one) {
               return read_nested(c, f.where(), path, [&](fields& cf) {
                 cf.req(key::name, one.name);
                 cf.req_list(key::patterns, one.patterns);
                 check_size(cf, key::patterns, one.patterns, max_member_list);
               });
             });
  check_size(f, key::consumers, out.consumers, max_member_list);
}

// Reads the list of member records `name`.
void read_members(fields& f, const char* name,
                  std::vector<cluster_member>& out) {
  f.req_each(name, out,
             [&](payload& m, const std::string& path, cluster_member& one) {
               return read_nested(m, f.where(), path, [&](fields& mf) {
                 read_member_fields(mf, one);
               });
             });
  check_size(f, name, out, max_gossip_members);
}

} // namespace

// --- gossip.sync
// ---------------------------------------------------------------

std::string_view name_of(const gossip_sync_request&) {
  return op::gossip_sync;
}

void write(payload& j, const gossip_sync_request& m) {
  j[key::cluster] = m.cluster;
  j[key::from] = member_json(m.from);
  j[key::members] = members_json(m.members);
}

void read(fields& f, gossip_sync_request& m) {
  f.req(key::cluster, m.cluster);
  f.req_map(key::from, [&](payload& from, const std::string& path) {
    return read_nested(from, f.where(), path, [&](fields& mf) {
      read_member_fields(mf, m.from);
    });
  });
  read_members(f, key::members, m.members);
}

std::string_view name_of(const gossip_sync_reply&) {
  return op::gossip_sync;
}

void write(payload& j, const gossip_sync_reply& m) {
  j[key::cluster] = m.cluster;
  j[key::members] = members_json(m.members);
}

void read(fields& f, gossip_sync_reply& m) {
  f.req(key::cluster, m.cluster);
  read_members(f, key::members, m.members);
}

// --- gossip.ping
// ---------------------------------------------------------------

std::string_view name_of(const gossip_ping&) {
  return op::gossip_ping;
}

std::string_view name_of(const gossip_ack&) {
  return op::gossip_ping;
}

void write(payload& j, const gossip_ping& m) {
  j[key::cluster] = m.cluster;
  j[key::from] = m.from;
  j[key::incarnation] = m.incarnation;
  j[key::target] = m.target;
  j[key::updates] = members_json(m.updates);
}

void read(fields& f, gossip_ping& m) {
  f.req(key::cluster, m.cluster);
  f.req(key::from, m.from);
  f.req(key::incarnation, m.incarnation);
  f.req(key::target, m.target);
  read_members(f, key::updates, m.updates);
}

void write(payload& j, const gossip_ack& m) {
  j[key::cluster] = m.cluster;
  j[key::from] = m.from;
  j[key::incarnation] = m.incarnation;
  j[key::updates] = members_json(m.updates);
}

void read(fields& f, gossip_ack& m) {
  f.req(key::cluster, m.cluster);
  f.req(key::from, m.from);
  f.req(key::incarnation, m.incarnation);
  read_members(f, key::updates, m.updates);
}

// --- gossip.probe
// --------------------------------------------------------------

std::string_view name_of(const gossip_probe&) {
  return op::gossip_probe;
}

std::string_view name_of(const gossip_probe_reply&) {
  return op::gossip_probe;
}

void write(payload& j, const gossip_probe& m) {
  j[key::cluster] = m.cluster;
  j[key::from] = m.from;
  j[key::target] = m.target;
}

void read(fields& f, gossip_probe& m) {
  f.req(key::cluster, m.cluster);
  f.req(key::from, m.from);
  f.req(key::target, m.target);
}

void write(payload& j, const gossip_probe_reply& m) {
  j[key::target] = m.target;
  if (m.heard_ms_ago)
    j[key::heard_ms_ago] = *m.heard_ms_ago;
}

void read(fields& f, gossip_probe_reply& m) {
  f.req(key::target, m.target);
  f.opt(key::heard_ms_ago, m.heard_ms_ago);
}

// --- members
// -------------------------------------------------------------------

std::string_view name_of(const members_request&) {
  return op::members;
}

std::string_view name_of(const members_reply&) {
  return op::members;
}

void write(payload&, const members_request&) {}

void read(fields&, members_request&) {}

void write(payload& j, const members_reply& m) {
  j[key::cluster] = m.cluster;
  j[key::self] = m.self;
  auto members = payload::array();
  for (auto& e : m.members) {
    auto one = member_json(e.member);
    if (e.last_heard_ms)
      one[key::last_heard_ms] = *e.last_heard_ms;
    members.push_back(std::move(one));
  }
  j[key::members] = std::move(members);
}

void read(fields& f, members_reply& m) {
  f.req(key::cluster, m.cluster);
  f.req(key::self, m.self);
  f.req_each(key::members, m.members,
             [&](payload& e, const std::string& path, member_entry& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 read_member_fields(ef, one.member);
                 ef.opt(key::last_heard_ms, one.last_heard_ms);
               });
             });
  check_size(f, key::members, m.members, max_gossip_members);
}

// --- status names, the view as shown
// -------------------------------------------

std::string_view to_string(member_status s) noexcept {
  auto i = static_cast<size_t>(s);
  return i < status_names.size() ? status_names[i] : "unknown";
}

std::optional<member_status> parse_member_status(std::string_view text) {
  for (size_t i = 0; i < status_names.size(); ++i)
    if (status_names[i] == text)
      return static_cast<member_status>(i);
  return std::nullopt;
}

payload to_json(const members_reply& r) {
  auto j = payload::object();
  write(j, r);
  return j;
}

// --- encode, decode
// ------------------------------------------------------------

std::string encode(const gossip_sync_request& m) {
  return encode_request(m);
}
std::string encode(const gossip_sync_reply& m) {
  return encode_reply(m);
}
std::string encode(const gossip_ping& m) {
  return encode_request(m);
}
std::string encode(const gossip_ack& m) {
  return encode_reply(m);
}
std::string encode(const gossip_probe& m) {
  return encode_request(m);
}
std::string encode(const gossip_probe_reply& m) {
  return encode_reply(m);
}
std::string encode(const members_request& m) {
  return encode_request(m);
}
std::string encode(const members_reply& m) {
  return encode_reply(m);
}

std::optional<caf::expected<request>>
detail::read_gossip_request(std::string_view name, payload& j, uint32_t v) {
  if (name == op::gossip_sync)
    return read_request<gossip_sync_request>(j, v);
  if (name == op::gossip_ping)
    return read_request<gossip_ping>(j, v);
  if (name == op::gossip_probe)
    return read_request<gossip_probe>(j, v);
  if (name == op::members)
    return read_request<members_request>(j, v);
  return std::nullopt;
}

template caf::expected<answer<gossip_sync_reply>>
decode_reply<gossip_sync_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<gossip_ack>>
decode_reply<gossip_ack>(std::string_view, const decode_limits&);
template caf::expected<answer<gossip_probe_reply>>
decode_reply<gossip_probe_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<members_reply>>
decode_reply<members_reply>(std::string_view, const decode_limits&);

} // namespace herald::control
