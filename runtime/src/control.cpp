#include "herald/runtime/control.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "control_fields.hpp"
#include "herald/core/errc.hpp"

namespace herald::control {

using namespace detail;

namespace {

// A dead letter's scalar fields in the order the protocol lists them.
constexpr std::array<const char*, 11> record_keys = {
  key::id,       key::consumer, key::node,   key::event_type,
  key::event_id, key::key,      key::stream, key::seq,
  key::reason,   key::parked,   key::created};

caf::error read_attempt(payload& j, const std::string& where,
                        const std::string& path, dead_letter_attempt& out) {
  return read_nested(j, where, path, [&](fields& f) {
    f.req(key::time, out.time);
    f.req(key::error, out.error);
    f.req(key::error_class, out.error_class);
    f.opt(key::node, out.node);
  });
}

caf::error read_redrive(payload& j, const std::string& where,
                        const std::string& path, dead_letter_redrive& out) {
  return read_nested(j, where, path, [&](fields& f) {
    f.req(key::time, out.time);
    f.req(key::by, out.by);
  });
}

caf::error read_record(payload& j, const std::string& where,
                       const std::string& path, dead_letter_record& out) {
  if (!j.is_object())
    return make_error(errc::decode_error,
                      fmt::format("{}: field '{}': expected a map, got {}",
                                  where, path, j.type_name()));
  fields f{j, where, path};
  f.req(key::id, out.id);
  f.req(key::consumer, out.consumer);
  f.req(key::node, out.node);
  f.req(key::event_type, out.event_type);
  f.req(key::event_id, out.event_id);
  f.req(key::key, out.key);
  f.req(key::stream, out.stream);
  f.req(key::seq, out.seq);
  f.req(key::reason, out.reason);
  f.req(key::parked, out.parked);
  f.req(key::created, out.created);
  f.req_each(key::attempts, out.attempts,
             [&](payload& a, const std::string& p, dead_letter_attempt& o) {
               return read_attempt(a, where, p, o);
             });
  f.opt_each(key::redrives, out.redrives,
             [&](payload& r, const std::string& p, dead_letter_redrive& o) {
               return read_redrive(r, where, p, o);
             });
  f.opt(key::event, out.event);
  f.opt(key::event_error, out.event_error);
  if (f.failed())
    return f.take();
  // Whatever a newer node added, kept to be shown.
  out.extra = payload::object();
  for (auto& [k, value] : j.items()) {
    bool known = k == key::attempts || k == key::redrives || k == key::event
                 || k == key::event_error
                 || std::find(record_keys.begin(), record_keys.end(), k)
                      != record_keys.end();
    if (!known)
      out.extra[k] = value;
  }
  return {};
}

} // namespace

// --- each message: its name, its fields out, its fields in -----------------

namespace {

void write_filter(payload& j, const dlq_filter& f) {
  if (!f.consumer.empty())
    j[key::consumer] = f.consumer;
  if (!f.type.empty())
    j[key::type] = f.type;
  if (!f.key.empty())
    j[key::key] = f.key;
}

void read_filter(fields& f, dlq_filter& out) {
  f.opt(key::consumer, out.consumer);
  f.opt(key::type, out.type);
  f.opt(key::key, out.key);
}

} // namespace

std::string_view name_of(const replay_request&) {
  return op::replay;
}

void write(payload& j, const replay_request& m) {
  j[key::stream] = m.stream;
  j[key::from] = m.from;
  j[key::max] = m.max;
  j[key::patterns] = m.patterns;
  if (m.since)
    j[key::since] = *m.since;
}

void read(fields& f, replay_request& m) {
  f.req(key::stream, m.stream);
  f.req(key::from, m.from);
  f.req(key::max, m.max);
  f.req_list(key::patterns, m.patterns);
  f.opt(key::since, m.since);
}

std::string_view name_of(const replay_reply&) {
  return op::replay;
}

std::string_view name_of(const hello_request&) {
  return op::hello;
}

std::string_view name_of(const hello_reply&) {
  return op::hello;
}

namespace {

template <class Hello> void write_hello(payload& j, const Hello& m) {
  j[key::stream] = m.stream;
  j[key::max_message_size] = m.max_message_size;
}

template <class Hello> void read_hello(fields& f, Hello& m) {
  f.req(key::stream, m.stream);
  f.req(key::max_message_size, m.max_message_size);
}

} // namespace

void write(payload& j, const hello_request& m) {
  write_hello(j, m);
}

void read(fields& f, hello_request& m) {
  read_hello(f, m);
}

void write(payload& j, const hello_reply& m) {
  write_hello(j, m);
}

void read(fields& f, hello_reply& m) {
  read_hello(f, m);
}

void write(payload& j, const replay_reply& m) {
  j[key::stream] = m.stream;
  j[key::head] = m.head;
  j[key::first] = m.first;
  j[key::next] = m.next;
  j[key::type_heads] = m.type_heads;
  j[key::events] = payload::binary(m.events);
  if (m.start)
    j[key::start] = *m.start;
}

void read(fields& f, replay_reply& m) {
  f.req(key::stream, m.stream);
  f.req(key::head, m.head);
  f.req(key::first, m.first);
  f.req(key::next, m.next);
  f.req_counters(key::type_heads, m.type_heads);
  f.req(key::events, m.events);
  f.opt(key::start, m.start);
}

std::string_view name_of(const dlq_list_request&) {
  return op::dlq_list;
}

void write(payload& j, const dlq_list_request& m) {
  write_filter(j, m.filter);
  if (m.after != 0)
    j[key::after] = m.after;
  j[key::limit] = m.limit;
}

void read(fields& f, dlq_list_request& m) {
  read_filter(f, m.filter);
  f.opt(key::after, m.after);
  f.opt(key::limit, m.limit);
}

std::string_view name_of(const dlq_list_reply&) {
  return op::dlq_list;
}

void write(payload& j, const dlq_list_reply& m) {
  auto list = payload::array();
  for (auto& r : m.dead_letters)
    list.push_back(to_json(r));
  j[key::dead_letters] = std::move(list);
  j[key::more] = m.more;
}

void read(fields& f, dlq_list_reply& m) {
  f.req_each(key::dead_letters, m.dead_letters,
             [&](payload& r, const std::string& path, dead_letter_record& out) {
               return read_record(r, f.where(), path, out);
             });
  f.req(key::more, m.more);
}

std::string_view name_of(const dlq_show_request&) {
  return op::dlq_show;
}

void write(payload& j, const dlq_show_request& m) {
  j[key::dead_letter] = m.dead_letter;
}

void read(fields& f, dlq_show_request& m) {
  f.req(key::dead_letter, m.dead_letter);
}

std::string_view name_of(const dlq_show_reply&) {
  return op::dlq_show;
}

void write(payload& j, const dlq_show_reply& m) {
  j[key::dead_letter] = to_json(m.dead_letter);
}

void read(fields& f, dlq_show_reply& m) {
  f.req_map(key::dead_letter, [&](payload& r, const std::string& path) {
    return read_record(r, f.where(), path, m.dead_letter);
  });
}

std::string_view name_of(const dlq_redrive_request&) {
  return op::dlq_redrive;
}

void write(payload& j, const dlq_redrive_request& m) {
  write_filter(j, m.filter);
  j[key::dry_run] = m.dry_run;
  if (!m.by.empty())
    j[key::by] = m.by;
}

void read(fields& f, dlq_redrive_request& m) {
  read_filter(f, m.filter);
  f.opt(key::dry_run, m.dry_run);
  f.opt(key::by, m.by);
}

std::string_view name_of(const dlq_redrive_reply&) {
  return op::dlq_redrive;
}

void write(payload& j, const dlq_redrive_reply& m) {
  j[key::redriven] = m.redriven;
  if (m.dry_run)
    j[key::dry_run] = *m.dry_run;
}

void read(fields& f, dlq_redrive_reply& m) {
  f.req_list(key::redriven, m.redriven);
  f.opt(key::dry_run, m.dry_run);
}

std::string_view name_of(const dlq_purge_request&) {
  return op::dlq_purge;
}

void write(payload& j, const dlq_purge_request& m) {
  if (m.dead_letter != 0)
    j[key::dead_letter] = m.dead_letter;
  write_filter(j, m.filter);
  if (m.all)
    j[key::all] = true;
  j[key::dry_run] = m.dry_run;
}

void read(fields& f, dlq_purge_request& m) {
  f.opt(key::dead_letter, m.dead_letter);
  read_filter(f, m.filter);
  f.opt(key::all, m.all);
  f.opt(key::dry_run, m.dry_run);
}

std::string_view name_of(const dlq_purge_reply&) {
  return op::dlq_purge;
}

void write(payload& j, const dlq_purge_reply& m) {
  j[key::purged] = m.purged;
  if (m.dry_run)
    j[key::dry_run] = *m.dry_run;
}

void read(fields& f, dlq_purge_reply& m) {
  f.req_list(key::purged, m.purged);
  f.opt(key::dry_run, m.dry_run);
}

// --- test.hooks
// ---------------------------------------------------------------

std::string_view name_of(const test_hooks_request&) {
  return op::test_hooks;
}

std::string_view name_of(const test_hooks_reply&) {
  return op::test_hooks;
}

namespace {

template <class Hooks> void write_hooks(payload& j, const Hooks& m) {
  j[key::fail_keys] = m.fail_keys;
  j[key::slow_keys] = m.slow_keys;
}

template <class Hooks> void read_hooks(fields& f, Hooks& m) {
  f.req_list(key::fail_keys, m.fail_keys);
  f.req_counters(key::slow_keys, m.slow_keys);
}

} // namespace

void write(payload& j, const test_hooks_request& m) {
  write_hooks(j, m);
}

void read(fields& f, test_hooks_request& m) {
  read_hooks(f, m);
}

void write(payload& j, const test_hooks_reply& m) {
  write_hooks(j, m);
}

void read(fields& f, test_hooks_reply& m) {
  read_hooks(f, m);
}

// --- status ------------------------------------------------------------------

std::string_view name_of(const status_request&) {
  return op::status;
}

void write(payload&, const status_request&) {}

void read(fields&, status_request&) {}

std::string_view name_of(const status_reply&) {
  return op::status;
}

namespace {

payload status_lease_json(const status_lease& l) {
  return {{key::partition, l.partition},
          {key::epoch, l.epoch},
          {key::offset, l.offset},
          {key::lag, l.lag}};
}

// A consumer group member's fields go out only for a member (`grouped`):
// added without a new version, so that a reply of a consumer outside
// groups is what it was.
payload status_stream_json(const status_stream& s, bool grouped) {
  payload j{{key::stream, s.stream},
            {key::offset, s.offset},
            {key::head, s.head},
            {key::lag, s.lag},
            {key::paused, s.paused}};
  if (grouped) {
    auto leases = payload::array();
    for (auto& l : s.leases)
      leases.push_back(status_lease_json(l));
    j[key::leases] = std::move(leases);
  }
  return j;
}

payload status_consumer_json(const status_consumer& c) {
  auto streams = payload::array();
  for (auto& s : c.streams)
    streams.push_back(status_stream_json(s, c.grouped()));
  payload j{{key::name, c.name},
            {key::patterns, c.patterns},
            {key::streams, std::move(streams)},
            {key::dead_letters, c.dead_letters},
            {key::health, c.health}};
  if (c.grouped()) {
    j[key::members] = c.members;
    j[key::partitions] = c.partitions;
  }
  return j;
}

caf::error read_status_lease(payload& j, const std::string& where,
                             const std::string& path, status_lease& out) {
  return read_nested(j, where, path, [&](fields& f) {
    f.req(key::partition, out.partition);
    f.req(key::epoch, out.epoch);
    f.req(key::offset, out.offset);
    f.req(key::lag, out.lag);
  });
}

} // namespace

void write(payload& j, const status_reply& m) {
  j[key::node] = m.node;
  j[key::service] = m.service;
  j[key::stream] = m.stream;
  j[key::head] = m.head;
  j[key::first] = m.first;
  if (m.first_time)
    j[key::first_time] = *m.first_time;
  j[key::health] = m.health;
  auto consumers = payload::array();
  for (auto& c : m.consumers)
    consumers.push_back(status_consumer_json(c));
  j[key::consumers] = std::move(consumers);
}

void read(fields& f, status_reply& m) {
  f.req(key::node, m.node);
  f.req(key::service, m.service);
  f.req(key::stream, m.stream);
  f.req(key::head, m.head);
  f.req(key::first, m.first);
  f.opt(key::first_time, m.first_time);
  f.req_list(key::health, m.health);
  f.req_each(
    key::consumers, m.consumers,
    [&](payload& c, const std::string& path, status_consumer& out) {
      return read_nested(c, f.where(), path, [&](fields& cf) {
        cf.req(key::name, out.name);
        cf.req_list(key::patterns, out.patterns);
        cf.req_each(
          key::streams, out.streams,
          [&](payload& s, const std::string& spath, status_stream& so) {
            return read_nested(s, f.where(), spath, [&](fields& sf) {
              sf.req(key::stream, so.stream);
              sf.req(key::offset, so.offset);
              sf.req(key::head, so.head);
              sf.req(key::lag, so.lag);
              sf.req(key::paused, so.paused);
              sf.opt_each(
                key::leases, so.leases,
                [&](payload& l, const std::string& lpath, status_lease& lo) {
                  return read_status_lease(l, f.where(), lpath, lo);
                });
            });
          });
        cf.req(key::dead_letters, out.dead_letters);
        cf.req_list(key::health, out.health);
        cf.opt_each(key::members, out.members,
                    [&](payload& m, const std::string& mpath, std::string& mo) {
                      if (read(m, mo) != nullptr)
                        return cf.problem(
                          fmt::format("field '{}': expected a string, got {}",
                                      mpath, m.type_name()));
                      return caf::error{};
                    });
        cf.opt(key::partitions, out.partitions);
      });
    });
}

// --- publish ---------------------------------------------------------------

namespace {

caf::error read_publish_event(payload& j, const std::string& where,
                              const std::string& path, publish_event& out) {
  return read_nested(j, where, path, [&](fields& f) {
    f.req(key::type, out.type);
    f.req(key::data, out.data);
  });
}

caf::error read_publish_ack(payload& j, const std::string& where,
                            const std::string& path, publish_ack& out) {
  return read_nested(j, where, path, [&](fields& f) {
    f.req(key::id, out.id);
    f.req(key::stream, out.stream);
    f.req(key::seq, out.seq);
  });
}

} // namespace

std::string_view name_of(const publish_request&) {
  return op::publish;
}

void write(payload& j, const publish_request& m) {
  j[key::request_id] = m.request_id;
  auto events = payload::array();
  for (auto& ev : m.events)
    events.push_back({{key::type, ev.type}, {key::data, ev.data}});
  j[key::events] = std::move(events);
}

void read(fields& f, publish_request& m) {
  f.req(key::request_id, m.request_id);
  f.req_each(key::events, m.events,
             [&](payload& ev, const std::string& path, publish_event& out) {
               return read_publish_event(ev, f.where(), path, out);
             });
  if (f.failed())
    return;
  if (m.request_id.empty() || m.request_id.size() > max_request_id)
    f.fail(fmt::format("field '{}': {} bytes; expected 1 to {}",
                       key::request_id, m.request_id.size(), max_request_id));
  else if (m.events.empty() || m.events.size() > max_publish_events)
    f.fail(fmt::format("field '{}': {} events; expected 1 to {} per request",
                       key::events, m.events.size(), max_publish_events));
}

std::string_view name_of(const publish_reply&) {
  return op::publish;
}

void write(payload& j, const publish_reply& m) {
  j[key::request_id] = m.request_id;
  auto acks = payload::array();
  for (auto& a : m.acks)
    acks.push_back(
      {{key::id, a.id}, {key::stream, a.stream}, {key::seq, a.seq}});
  j[key::acks] = std::move(acks);
  if (m.refused) {
    j[key::refused] = *m.refused;
    j[key::reason] = m.reason;
  }
}

void read(fields& f, publish_reply& m) {
  f.req(key::request_id, m.request_id);
  f.req_each(key::acks, m.acks,
             [&](payload& a, const std::string& path, publish_ack& out) {
               return read_publish_ack(a, f.where(), path, out);
             });
  f.opt(key::refused, m.refused);
  f.opt(key::reason, m.reason);
}

// --- errors ------------------------------------------------------------------

void write(payload& j, const error_reply& m) {
  j[key::stream] = m.stream;
  j[key::error] = m.error;
}

void read(fields& f, error_reply& m) {
  f.opt(key::stream, m.stream);
  f.req(key::error, m.error);
}

// --- dead letters as shown ---------------------------------------------------

dead_letter_record to_record(const store::dead_letter& l, bool with_event) {
  dead_letter_record r;
  r.id = l.id;
  r.consumer = l.consumer;
  r.node = l.node;
  r.event_type = l.event_type;
  r.event_id = l.event_id;
  r.key = l.key;
  r.stream = l.stream;
  r.seq = l.seq;
  r.reason = l.reason;
  r.parked = l.parked;
  r.created = format_timestamp(l.created_us);
  for (auto& a : l.attempts)
    r.attempts.push_back(
      {format_timestamp(a.time_us), a.error, a.error_class, a.node});
  for (auto& rd : l.redrives)
    r.redrives.push_back({format_timestamp(rd.time_us), rd.by});
  if (with_event) {
    if (auto ev = decode(l.envelope))
      r.event = payload(ev->to_json());
    else
      r.event_error = message_of(ev.error());
  }
  return r;
}

payload to_json(const dead_letter_record& r) {
  auto j = r.extra.is_object() ? r.extra : payload::object();
  j[key::id] = r.id;
  j[key::consumer] = r.consumer;
  j[key::node] = r.node;
  j[key::event_type] = r.event_type;
  j[key::event_id] = r.event_id;
  j[key::key] = r.key;
  j[key::stream] = r.stream;
  j[key::seq] = r.seq;
  j[key::reason] = r.reason;
  j[key::parked] = r.parked;
  j[key::created] = r.created;
  auto attempts = payload::array();
  for (auto& a : r.attempts) {
    payload one{{key::time, a.time},
                {key::error, a.error},
                {key::error_class, a.error_class}};
    if (!a.node.empty())
      one[key::node] = a.node;
    attempts.push_back(std::move(one));
  }
  j[key::attempts] = std::move(attempts);
  // Optional fields are sent only when there is something to say: a record
  // from a node that kept no history reads back (and prints) as it came.
  if (!r.redrives.empty()) {
    auto redrives = payload::array();
    for (auto& rd : r.redrives)
      redrives.push_back({{key::time, rd.time}, {key::by, rd.by}});
    j[key::redrives] = std::move(redrives);
  }
  if (r.event)
    j[key::event] = *r.event;
  if (r.event_error)
    j[key::event_error] = *r.event_error;
  return j;
}

std::vector<std::pair<std::string, payload>>
shown_fields(const dead_letter_record& r) {
  auto j = to_json(r);
  std::vector<std::pair<std::string, payload>> out;
  for (auto* k : record_keys)
    out.emplace_back(k, j[k]);
  for (auto& [k, value] : j.items())
    if (k != key::attempts && k != key::redrives && k != key::event
        && std::find(record_keys.begin(), record_keys.end(), k)
             == record_keys.end())
      out.emplace_back(k, value);
  return out;
}

// --- status as shown
// ----------------------------------------------------------

payload to_json(const status_reply& r) {
  auto j = payload::object();
  write(j, r);
  return j;
}

// --- encode
// -------------------------------------------------------------------

std::string encode(const replay_request& m) {
  return encode_request(m);
}
std::string encode(const replay_reply& m) {
  return encode_reply(m);
}
std::string encode(const dlq_list_request& m) {
  return encode_request(m);
}
std::string encode(const dlq_list_reply& m) {
  return encode_reply(m);
}
std::string encode(const dlq_show_request& m) {
  return encode_request(m);
}
std::string encode(const dlq_show_reply& m) {
  return encode_reply(m);
}
std::string encode(const dlq_redrive_request& m) {
  return encode_request(m);
}
std::string encode(const dlq_redrive_reply& m) {
  return encode_reply(m);
}
std::string encode(const dlq_purge_request& m) {
  return encode_request(m);
}
std::string encode(const dlq_purge_reply& m) {
  return encode_reply(m);
}
std::string encode(const publish_request& m) {
  return encode_request(m);
}
std::string encode(const publish_reply& m) {
  return encode_reply(m);
}
std::string encode(const status_request& m) {
  return encode_request(m);
}
std::string encode(const status_reply& m) {
  return encode_reply(m);
}
std::string encode(const hello_request& m) {
  return encode_request(m);
}
std::string encode(const hello_reply& m) {
  return encode_reply(m);
}
std::string encode(const test_hooks_request& m) {
  return encode_request(m);
}
std::string encode(const test_hooks_reply& m) {
  return encode_reply(m);
}
std::string encode(const error_reply& m) {
  return encode_reply(m);
}

std::string encode(const heartbeat& m) {
  payload j{{key::v, m.v},
            {key::stream, m.stream},
            {key::head, m.head},
            {key::control, m.control},
            {key::types, m.types}};
  if (m.max_message_size != 0)
    j[key::max_message_size] = m.max_message_size;
  if (!m.pub.empty())
    j[key::pub] = m.pub;
  return encode_payload(j);
}

std::string encode(const request& m) {
  return std::visit(
    [](const auto& r) {
      return encode(r);
    },
    m);
}

// --- decode
// -------------------------------------------------------------------

caf::expected<request> decode_request(std::string_view bytes,
                                      const decode_limits& limits) {
  constexpr std::string_view where = "malformed control request";
  auto j = decode_map(bytes, limits, where);
  if (!j)
    return j.error();
  // The version first: a request of a later version may have an op this
  // node does not know.
  fields f{*j, std::string{where}};
  uint32_t v = 1;
  f.opt(key::v, v);
  if (f.failed())
    return f.take();
  if (v < min_version || v > version)
    return make_error(errc::decode_error,
                      fmt::format("control request of protocol version {}, "
                                  "which this node does not serve: it serves "
                                  "{}; send a request of that version or "
                                  "upgrade the node",
                                  v, served_versions()));
  std::string name;
  f.req(key::op, name);
  if (f.failed())
    return f.take();
  if (name == op::replay)
    return read_request<replay_request>(*j, v);
  if (name == op::dlq_list)
    return read_request<dlq_list_request>(*j, v);
  if (name == op::dlq_show)
    return read_request<dlq_show_request>(*j, v);
  if (name == op::dlq_redrive)
    return read_request<dlq_redrive_request>(*j, v);
  if (name == op::status)
    return read_request<status_request>(*j, v);
  if (name == op::hello)
    return read_request<hello_request>(*j, v);
  if (name == op::test_hooks)
    return read_request<test_hooks_request>(*j, v);
  if (name == op::dlq_purge) {
    auto r = read_request<dlq_purge_request>(*j, v);
    if (!r)
      return r;
    auto& purge = std::get<dlq_purge_request>(*r);
    if (purge.dead_letter == 0 && purge.filter.empty() && !purge.all)
      return make_error(errc::invalid_argument,
                        fmt::format("{} needs a dead letter id ({}), a filter "
                                    "({}, {}, {}) or {}: true",
                                    op::dlq_purge, key::dead_letter,
                                    key::consumer, key::type, key::key,
                                    key::all));
    return r;
  }
  if (name == op::publish)
    return read_request<publish_request>(*j, v);
  if (auto gossip = read_gossip_request(name, *j, v))
    return std::move(*gossip);
  if (auto group = read_group_request(name, *j, v))
    return std::move(*group);
  if (auto admin = read_group_admin_request(name, *j, v))
    return std::move(*admin);
  return make_error(
    errc::decode_error,
    fmt::format("unknown operation '{}'; expected {}, {}, {}, {}, {}, {}, {}, "
                "{}, {}, {}, {}, {}, {}, {}, {} or {}",
                name, op::replay, op::dlq_list, op::dlq_show, op::dlq_redrive,
                op::dlq_purge, op::publish, op::status, op::hello,
                op::test_hooks, op::gossip_sync, op::gossip_ping,
                op::gossip_probe, op::members, op::group_lease,
                op::group_describe, op::group_reset));
}

template caf::expected<answer<replay_reply>>
decode_reply<replay_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<dlq_list_reply>>
decode_reply<dlq_list_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<dlq_show_reply>>
decode_reply<dlq_show_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<dlq_redrive_reply>>
decode_reply<dlq_redrive_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<dlq_purge_reply>>
decode_reply<dlq_purge_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<publish_reply>>
decode_reply<publish_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<status_reply>>
decode_reply<status_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<hello_reply>>
decode_reply<hello_reply>(std::string_view, const decode_limits&);
template caf::expected<answer<test_hooks_reply>>
decode_reply<test_hooks_reply>(std::string_view, const decode_limits&);

caf::expected<heartbeat> decode_heartbeat(std::string_view bytes,
                                          const decode_limits& limits) {
  constexpr std::string_view where = "heartbeat";
  auto j = decode_map(bytes, limits, where);
  if (!j)
    return j.error();
  heartbeat hb;
  fields f{*j, std::string{where}};
  f.opt(key::v, hb.v);
  f.req(key::stream, hb.stream);
  f.req(key::head, hb.head);
  f.req(key::control, hb.control);
  f.req_counters(key::types, hb.types);
  f.opt(key::max_message_size, hb.max_message_size);
  f.opt(key::pub, hb.pub);
  if (f.failed())
    return f.take();
  return hb;
}

uint64_t message_id(std::string_view bytes, const decode_limits& limits) {
  auto j = decode_payload(bytes, limits);
  if (!j || !j->is_object())
    return 0;
  uint64_t id = 0;
  if (auto it = j->find(key::id); it != j->end())
    read(*it, id);
  return id;
}

std::string_view op_name(const request& m) {
  return std::visit(
    [](const auto& r) {
      return name_of(r);
    },
    m);
}

} // namespace herald::control
