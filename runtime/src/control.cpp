#include "herald/runtime/control.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald::control {

namespace {

// Every key and op of the protocol, spelled here and nowhere else.
namespace key {
constexpr const char* v = "v";
constexpr const char* id = "id";
constexpr const char* op = "op";
constexpr const char* error = "error";
constexpr const char* stream = "stream";
constexpr const char* from = "from";
constexpr const char* max = "max";
constexpr const char* patterns = "patterns";
constexpr const char* since = "since";
constexpr const char* start = "start";
constexpr const char* head = "head";
constexpr const char* first = "first";
constexpr const char* next = "next";
constexpr const char* type_heads = "type_heads";
constexpr const char* events = "events";
constexpr const char* consumer = "consumer";
constexpr const char* type = "type";
constexpr const char* key = "key";
constexpr const char* after = "after";
constexpr const char* limit = "limit";
constexpr const char* dead_letters = "dead_letters";
constexpr const char* more = "more";
constexpr const char* dead_letter = "dead_letter";
constexpr const char* dry_run = "dry_run";
constexpr const char* redriven = "redriven";
constexpr const char* all = "all";
constexpr const char* purged = "purged";
constexpr const char* control = "control";
constexpr const char* types = "types";
constexpr const char* max_message_size = "max_message_size";
constexpr const char* pub = "pub";
// A dead letter's fields, beyond id, consumer, stream and key.
constexpr const char* node = "node";
constexpr const char* event_type = "event_type";
constexpr const char* event_id = "event_id";
constexpr const char* seq = "seq";
constexpr const char* reason = "reason";
constexpr const char* parked = "parked";
constexpr const char* created = "created";
constexpr const char* attempts = "attempts";
constexpr const char* event = "event";
constexpr const char* event_error = "event_error";
// An attempt's (and `node`), a redrive's.
constexpr const char* time = "time";
constexpr const char* error_class = "class";
constexpr const char* redrives = "redrives";
constexpr const char* by = "by";
// publish's (besides events, type, id, stream and seq).
constexpr const char* request_id = "request_id";
constexpr const char* data = "data";
constexpr const char* acks = "acks";
constexpr const char* refused = "refused";
// The status reply's, beyond stream, head, first, consumer and dead_letters.
constexpr const char* service = "service";
constexpr const char* first_time = "first_time";
constexpr const char* health = "health";
constexpr const char* consumers = "consumers";
constexpr const char* name = "name";
constexpr const char* streams = "streams";
constexpr const char* offset = "offset";
constexpr const char* lag = "lag";
constexpr const char* paused = "paused";
// The test.hooks op's.
constexpr const char* fail_keys = "fail_keys";
constexpr const char* slow_keys = "slow_keys";
} // namespace key

namespace op {
constexpr std::string_view replay = "replay";
constexpr std::string_view dlq_list = "dlq.list";
constexpr std::string_view dlq_show = "dlq.show";
constexpr std::string_view dlq_redrive = "dlq.redrive";
constexpr std::string_view dlq_purge = "dlq.purge";
constexpr std::string_view publish = "publish";
constexpr std::string_view status = "status";
constexpr std::string_view hello = "hello";
constexpr std::string_view test_hooks = "test.hooks";
} // namespace op

// A dead letter's scalar fields in the order the protocol lists them.
constexpr std::array<const char*, 11> record_keys = {
  key::id,       key::consumer, key::node,   key::event_type,
  key::event_id, key::key,      key::stream, key::seq,
  key::reason,   key::parked,   key::created};

// --- reading fields -------------------------------------------------------

// Each `read` sets `out` from `j`, or returns what was expected instead.
const char* read(payload& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return nullptr;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(j.get<int64_t>());
    return nullptr;
  }
  return "an unsigned integer";
}

const char* read(payload& j, uint32_t& out) {
  uint64_t wide = 0;
  if (read(j, wide) != nullptr || wide > std::numeric_limits<uint32_t>::max())
    return "an unsigned 32-bit integer";
  out = static_cast<uint32_t>(wide);
  return nullptr;
}

const char* read(payload& j, std::string& out) {
  if (!j.is_string())
    return "a string";
  out = std::move(j.get_ref<std::string&>());
  return nullptr;
}

const char* read(payload& j, bool& out) {
  if (!j.is_boolean())
    return "a boolean";
  out = j.get<bool>();
  return nullptr;
}

const char* read(payload& j, std::optional<uint64_t>& out) {
  uint64_t n = 0;
  if (auto* expected = read(j, n))
    return expected;
  out = n;
  return nullptr;
}

const char* read(payload& j, std::optional<bool>& out) {
  bool b = false;
  if (auto* expected = read(j, b))
    return expected;
  out = b;
  return nullptr;
}

const char* read(payload& j, std::vector<uint8_t>& out) {
  if (!j.is_binary())
    return "binary";
  out = std::move(static_cast<std::vector<uint8_t>&>(j.get_binary()));
  return nullptr;
}

const char* read(payload& j, std::optional<payload>& out) {
  out = std::move(j);
  return nullptr;
}

// A map, taken as it is (a publish event's payload).
const char* read(payload& j, payload& out) {
  if (!j.is_object())
    return "a map";
  out = std::move(j);
  return nullptr;
}

const char* read(payload& j, std::optional<std::string>& out) {
  std::string s;
  if (auto* expected = read(j, s))
    return expected;
  out = std::move(s);
  return nullptr;
}

// Reads the fields of one map. The first problem is kept and names the
// message and the path of the field in it; later reads do nothing.
class fields {
public:
  fields(payload& j, std::string where, std::string path = {})
      : j_(j), where_(std::move(where)), path_(std::move(path)) {}

  // Reads `name` into `out`; a missing field is a problem.
  template <class T> void req(const char* name, T& out) {
    if (auto* value = find(name, true))
      if (auto* expected = read(*value, out))
        mismatch(full(name), expected, *value);
  }

  // Reads `name` into `out` when present; `out` keeps its value otherwise.
  template <class T> void opt(const char* name, T& out) {
    if (auto* value = find(name, false))
      if (auto* expected = read(*value, out))
        mismatch(full(name), expected, *value);
  }

  // Reads the array `name` of strings or unsigned integers.
  template <class T> void req_list(const char* name, std::vector<T>& out) {
    req_each(
      name, out, [this](payload& element, const std::string& path, T& one) {
        if (auto* expected = read(element, one))
          return problem(fmt::format("field '{}': expected {}, got {}", path,
                                     expected, element.type_name()));
        return caf::error{};
      });
  }

  // Reads the array `name`, each element with `read_one(element, path,
  // out.emplace_back())`, which returns a problem or none.
  template <class T, class F>
  void req_each(const char* name, std::vector<T>& out, F read_one) {
    each(name, out, std::move(read_one), true);
  }

  // Reads the array `name` as `req_each` does, when present; `out` keeps
  // its value otherwise.
  template <class T, class F>
  void opt_each(const char* name, std::vector<T>& out, F read_one) {
    each(name, out, std::move(read_one), false);
  }

  template <class T, class F>
  void each(const char* name, std::vector<T>& out, F read_one, bool required) {
    auto* value = find(name, required);
    if (value == nullptr)
      return;
    if (!value->is_array())
      return mismatch(full(name), "an array", *value);
    out.clear();
    out.reserve(value->size());
    size_t i = 0;
    for (auto& element : *value)
      if (auto err = read_one(element, fmt::format("{}[{}]", full(name), i++),
                              out.emplace_back())) {
        problem_ = std::move(err);
        return;
      }
  }

  // Reads the map `name` with `read_one(value, path)`.
  template <class F> void req_map(const char* name, F read_one) {
    auto* value = find(name, true);
    if (value == nullptr)
      return;
    if (!value->is_object())
      return mismatch(full(name), "a map", *value);
    problem_ = read_one(*value, full(name));
  }

  // Reads the map `name` of unsigned counters, e.g. per-type heads.
  void req_counters(const char* name,
                    std::unordered_map<std::string, uint64_t>& out) {
    req_map(name, [&](payload& map, const std::string& path) {
      out.clear();
      for (auto& [k, value] : map.items()) {
        uint64_t n = 0;
        if (read(value, n) != nullptr)
          return problem(fmt::format("field '{}.{}': expected an unsigned "
                                     "integer, got {}",
                                     path, k, value.type_name()));
        out.emplace(k, n);
      }
      return caf::error{};
    });
  }

  bool failed() const noexcept {
    return static_cast<bool>(problem_);
  }

  // Records `detail` as the problem, unless there is one already.
  void fail(std::string_view detail) {
    if (!failed())
      problem_ = problem(detail);
  }

  // The first problem, or none.
  caf::error take() {
    return std::move(problem_);
  }

  // The message being read, as errors name it.
  const std::string& where() const noexcept {
    return where_;
  }

  // A problem naming the message and `detail`.
  caf::error problem(std::string_view detail) const {
    return make_error(errc::decode_error,
                      fmt::format("{}: {}", where_, detail));
  }

private:
  // The field `name`, or null when absent (a problem if `required`) or
  // when an earlier read failed.
  payload* find(const char* name, bool required) {
    if (failed())
      return nullptr;
    auto it = j_.find(name);
    if (it != j_.end())
      return &*it;
    if (required)
      problem_ = problem(fmt::format("field '{}' is missing", full(name)));
    return nullptr;
  }

  std::string full(std::string_view name) const {
    return path_.empty() ? std::string{name}
                         : fmt::format("{}.{}", path_, name);
  }

  void mismatch(const std::string& path, const char* expected,
                const payload& got) {
    problem_ = problem(fmt::format("field '{}': expected {}, got {}", path,
                                   expected, got.type_name()));
  }

  payload& j_;
  std::string where_;
  std::string path_;
  caf::error problem_;
};

// Fails unless `j` is a map; `where` names the message.
caf::error expect_map(const payload& j, std::string_view where) {
  if (j.is_object())
    return {};
  return make_error(errc::decode_error, fmt::format("{}: expected a map, got "
                                                    "{}",
                                                    where, j.type_name()));
}

// Reads the map `j` at `path` of the message `where` with `read_fields`.
template <class F>
caf::error read_nested(payload& j, const std::string& where,
                       const std::string& path, F read_fields) {
  if (!j.is_object())
    return make_error(errc::decode_error,
                      fmt::format("{}: field '{}': expected a map, got {}",
                                  where, path, j.type_name()));
  fields f{j, where, path};
  read_fields(f);
  return f.take();
}

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

// --- each message: its name, its fields out, its fields in -----------------

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

template <class Hello> void write_hello(payload& j, const Hello& m) {
  j[key::stream] = m.stream;
  j[key::max_message_size] = m.max_message_size;
}

template <class Hello> void read_hello(fields& f, Hello& m) {
  f.req(key::stream, m.stream);
  f.req(key::max_message_size, m.max_message_size);
}

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

template <class Hooks> void write_hooks(payload& j, const Hooks& m) {
  j[key::fail_keys] = m.fail_keys;
  j[key::slow_keys] = m.slow_keys;
}

template <class Hooks> void read_hooks(fields& f, Hooks& m) {
  f.req_list(key::fail_keys, m.fail_keys);
  f.req_counters(key::slow_keys, m.slow_keys);
}

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

payload status_stream_json(const status_stream& s) {
  return {{key::stream, s.stream},
          {key::offset, s.offset},
          {key::head, s.head},
          {key::lag, s.lag},
          {key::paused, s.paused}};
}

payload status_consumer_json(const status_consumer& c) {
  auto streams = payload::array();
  for (auto& s : c.streams)
    streams.push_back(status_stream_json(s));
  return {{key::name, c.name},
          {key::patterns, c.patterns},
          {key::streams, std::move(streams)},
          {key::dead_letters, c.dead_letters},
          {key::health, c.health}};
}

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
            });
          });
        cf.req(key::dead_letters, out.dead_letters);
        cf.req_list(key::health, out.health);
      });
    });
}

// --- publish ---------------------------------------------------------------

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

// The frame of request `m`: v, id, op, then its fields.
template <class Request> std::string encode_request(const Request& m) {
  payload j{{key::v, m.v}, {key::id, m.id}, {key::op, name_of(m)}};
  write(j, m);
  return encode_payload(j);
}

// The frame of reply `m`: v, id, then its fields.
template <class Reply> std::string encode_reply(const Reply& m) {
  payload j{{key::v, m.v}, {key::id, m.id}};
  write(j, m);
  return encode_payload(j);
}

// The versions a node serves, as a phrase.
std::string served_versions() {
  if (min_version == version)
    return fmt::format("version {}", version);
  return fmt::format("versions {} to {}", min_version, version);
}

// Reads the rest of a request whose op and version are known.
template <class Request>
caf::expected<request> read_request(payload& j, uint32_t v) {
  Request m;
  m.v = v;
  fields f{j, fmt::format("malformed {} request", name_of(m))};
  f.req(key::id, m.id);
  read(f, m);
  if (f.failed())
    return f.take();
  return request{std::move(m)};
}

} // namespace

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
  auto j = decode_payload(bytes, limits);
  if (!j)
    return make_error(errc::decode_error,
                      fmt::format("{}: {}", where, message_of(j.error())));
  if (auto err = expect_map(*j, where))
    return err;
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
  return make_error(errc::decode_error,
                    fmt::format("unknown operation '{}'; expected {}, {}, {}, "
                                "{}, {}, {}, {}, {} or {}",
                                name, op::replay, op::dlq_list, op::dlq_show,
                                op::dlq_redrive, op::dlq_purge, op::publish,
                                op::status, op::hello, op::test_hooks));
}

template <class Reply>
caf::expected<answer<Reply>> decode_reply(std::string_view bytes,
                                          const decode_limits& limits) {
  Reply m;
  auto where = fmt::format("{} reply", name_of(m));
  auto j = decode_payload(bytes, limits);
  if (!j)
    return make_error(errc::decode_error,
                      fmt::format("{}: {}", where, message_of(j.error())));
  if (auto err = expect_map(*j, where))
    return err;
  auto read_answer = [&](auto& out) -> caf::error {
    fields f{*j, where};
    f.opt(key::v, out.v);
    f.opt(key::id, out.id);
    read(f, out);
    return f.take();
  };
  if (j->contains(key::error)) {
    error_reply e;
    if (auto err = read_answer(e))
      return err;
    return answer<Reply>{std::move(e)};
  }
  if (auto err = read_answer(m))
    return err;
  return answer<Reply>{std::move(m)};
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
  auto j = decode_payload(bytes, limits);
  if (!j)
    return make_error(errc::decode_error,
                      fmt::format("{}: {}", where, message_of(j.error())));
  if (auto err = expect_map(*j, where))
    return err;
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
