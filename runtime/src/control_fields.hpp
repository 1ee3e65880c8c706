#pragma once

/// How control messages are written and read, shared by the files that
/// define them (`control.cpp`: replay, dead letters, publish, status, hello,
/// test hooks; `control_gossip.cpp`: membership; `control_group.cpp`:
/// consumer groups): every key and op spelled
/// once, the field reader that names what is wrong, and the framing of
/// requests and replies. Private to the runtime.
///
/// Each message type `M` has, in `herald::control`, `name_of(const M&)` (its
/// op), `write(payload&, const M&)` (its fields out) and
/// `read(detail::fields&, M&)` (its fields in); the templates here find them
/// by argument-dependent lookup, so they must not be in an unnamed
/// namespace.
///
/// Thread safety: everything here is pure.

#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"

namespace herald::control {

namespace detail {

// Every key and op of the protocol, spelled here and nowhere else.
namespace key {
inline constexpr const char* v = "v";
inline constexpr const char* id = "id";
inline constexpr const char* op = "op";
inline constexpr const char* error = "error";
inline constexpr const char* stream = "stream";
inline constexpr const char* from = "from";
inline constexpr const char* max = "max";
inline constexpr const char* patterns = "patterns";
inline constexpr const char* since = "since";
inline constexpr const char* start = "start";
inline constexpr const char* head = "head";
inline constexpr const char* first = "first";
inline constexpr const char* next = "next";
inline constexpr const char* type_heads = "type_heads";
inline constexpr const char* events = "events";
inline constexpr const char* consumer = "consumer";
inline constexpr const char* type = "type";
inline constexpr const char* key = "key";
inline constexpr const char* after = "after";
inline constexpr const char* limit = "limit";
inline constexpr const char* dead_letters = "dead_letters";
inline constexpr const char* more = "more";
inline constexpr const char* dead_letter = "dead_letter";
inline constexpr const char* dry_run = "dry_run";
inline constexpr const char* redriven = "redriven";
inline constexpr const char* all = "all";
inline constexpr const char* purged = "purged";
inline constexpr const char* control = "control";
inline constexpr const char* types = "types";
inline constexpr const char* max_message_size = "max_message_size";
inline constexpr const char* pub = "pub";
// A dead letter's fields, beyond id, consumer, stream and key.
inline constexpr const char* node = "node";
inline constexpr const char* event_type = "event_type";
inline constexpr const char* event_id = "event_id";
inline constexpr const char* seq = "seq";
inline constexpr const char* reason = "reason";
inline constexpr const char* parked = "parked";
inline constexpr const char* created = "created";
inline constexpr const char* attempts = "attempts";
inline constexpr const char* event = "event";
inline constexpr const char* event_error = "event_error";
// An attempt's (and `node`), a redrive's.
inline constexpr const char* time = "time";
inline constexpr const char* error_class = "class";
inline constexpr const char* redrives = "redrives";
inline constexpr const char* by = "by";
// publish's (besides events, type, id, stream and seq).
inline constexpr const char* request_id = "request_id";
inline constexpr const char* data = "data";
inline constexpr const char* acks = "acks";
inline constexpr const char* refused = "refused";
// The status reply's, beyond stream, head, first, consumer and dead_letters.
inline constexpr const char* service = "service";
inline constexpr const char* first_time = "first_time";
inline constexpr const char* health = "health";
inline constexpr const char* consumers = "consumers";
inline constexpr const char* name = "name";
inline constexpr const char* streams = "streams";
inline constexpr const char* offset = "offset";
inline constexpr const char* lag = "lag";
inline constexpr const char* paused = "paused";
// A consumer group member's, in the status reply (besides members, offset,
// lag).
inline constexpr const char* partitions = "partitions";
inline constexpr const char* leases = "leases";
inline constexpr const char* partition = "partition";
inline constexpr const char* epoch = "epoch";
// The test.hooks op's.
inline constexpr const char* fail_keys = "fail_keys";
inline constexpr const char* slow_keys = "slow_keys";
// Membership's (besides id, name, stream, service, pub, control, consumers,
// patterns, from).
inline constexpr const char* cluster = "cluster";
inline constexpr const char* incarnation = "incarnation";
inline constexpr const char* status = "status";
inline constexpr const char* metrics = "metrics";
inline constexpr const char* produces = "produces";
inline constexpr const char* members = "members";
inline constexpr const char* target = "target";
inline constexpr const char* updates = "updates";
inline constexpr const char* heard_ms_ago = "heard_ms_ago";
inline constexpr const char* self = "self";
inline constexpr const char* last_heard_ms = "last_heard_ms";
// Consumer groups' (besides stream, op, offset, reason).
inline constexpr const char* group = "group";
// (besides partitions, epoch)
inline constexpr const char* member = "member";
inline constexpr const char* initial = "initial";
inline constexpr const char* entries = "entries";
inline constexpr const char* p = "p";
inline constexpr const char* ttl_ms = "ttl_ms";
inline constexpr const char* result = "result";
inline constexpr const char* holder = "holder";
inline constexpr const char* wanted = "wanted";
inline constexpr const char* orphans = "orphans";
// A group's dead letters (besides p, epoch, id, result, reason, key,
// dead_letter, redriven, parked).
inline constexpr const char* letters = "letters";
inline constexpr const char* letter = "letter";
inline constexpr const char* redrive = "redrive";
inline constexpr const char* unparked = "unparked";
inline constexpr const char* redrive_more = "redrive_more";
// group.describe's and group.reset's (besides the above, from, head, first,
// leases, partition, lag, dead_letters, dry_run).
inline constexpr const char* known = "known";
inline constexpr const char* expires_in_ms = "expires_in_ms";
inline constexpr const char* lag_exact = "lag_exact";
inline constexpr const char* entities = "entities";
inline constexpr const char* to = "to";
inline constexpr const char* at = "at";
inline constexpr const char* offsets = "offsets";
} // namespace key

namespace op {
inline constexpr std::string_view replay = "replay";
inline constexpr std::string_view dlq_list = "dlq.list";
inline constexpr std::string_view dlq_show = "dlq.show";
inline constexpr std::string_view dlq_redrive = "dlq.redrive";
inline constexpr std::string_view dlq_purge = "dlq.purge";
inline constexpr std::string_view publish = "publish";
inline constexpr std::string_view status = "status";
inline constexpr std::string_view hello = "hello";
inline constexpr std::string_view test_hooks = "test.hooks";
inline constexpr std::string_view gossip_sync = "gossip.sync";
inline constexpr std::string_view gossip_ping = "gossip.ping";
inline constexpr std::string_view gossip_probe = "gossip.probe";
inline constexpr std::string_view members = "members";
inline constexpr std::string_view group_lease = "group.lease";
inline constexpr std::string_view group_describe = "group.describe";
inline constexpr std::string_view group_reset = "group.reset";
} // namespace op

// --- reading fields -------------------------------------------------------

// Each `read` sets `out` from `j`, or returns what was expected instead.
inline const char* read(payload& j, uint64_t& out) {
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

inline const char* read(payload& j, uint32_t& out) {
  uint64_t wide = 0;
  if (read(j, wide) != nullptr || wide > std::numeric_limits<uint32_t>::max())
    return "an unsigned 32-bit integer";
  out = static_cast<uint32_t>(wide);
  return nullptr;
}

inline const char* read(payload& j, std::string& out) {
  if (!j.is_string())
    return "a string";
  out = std::move(j.get_ref<std::string&>());
  return nullptr;
}

inline const char* read(payload& j, bool& out) {
  if (!j.is_boolean())
    return "a boolean";
  out = j.get<bool>();
  return nullptr;
}

inline const char* read(payload& j, std::optional<uint64_t>& out) {
  uint64_t n = 0;
  if (auto* expected = read(j, n))
    return expected;
  out = n;
  return nullptr;
}

inline const char* read(payload& j, std::optional<bool>& out) {
  bool b = false;
  if (auto* expected = read(j, b))
    return expected;
  out = b;
  return nullptr;
}

inline const char* read(payload& j, std::vector<uint8_t>& out) {
  if (!j.is_binary())
    return "binary";
  out = std::move(static_cast<std::vector<uint8_t>&>(j.get_binary()));
  return nullptr;
}

inline const char* read(payload& j, std::optional<payload>& out) {
  out = std::move(j);
  return nullptr;
}

// A map, taken as it is (a publish event's payload).
inline const char* read(payload& j, payload& out) {
  if (!j.is_object())
    return "a map";
  out = std::move(j);
  return nullptr;
}

inline const char* read(payload& j, std::optional<std::string>& out) {
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
    list(name, out, true);
  }

  // Reads the array `name` as `req_list` does, when present; `out` keeps
  // its value otherwise.
  template <class T> void opt_list(const char* name, std::vector<T>& out) {
    list(name, out, false);
  }

  template <class T>
  void list(const char* name, std::vector<T>& out, bool required) {
    each(
      name, out,
      [this](payload& element, const std::string& path, T& one) {
        if (auto* expected = read(element, one))
          return problem(fmt::format("field '{}': expected {}, got {}", path,
                                     expected, element.type_name()));
        return caf::error{};
      },
      required);
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

  // The path of field `name` of this map, as errors name it.
  std::string path_of(std::string_view name) const {
    return full(name);
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
inline caf::error expect_map(const payload& j, std::string_view where) {
  if (j.is_object())
    return {};
  return make_error(errc::decode_error, fmt::format("{}: expected a map, got "
                                                    "{}",
                                                    where, j.type_name()));
}

// The map frame `bytes` holds, read under `limits`, or a decode error
// naming `where` (the message being read).
inline caf::expected<payload> decode_map(std::string_view bytes,
                                         const decode_limits& limits,
                                         std::string_view where) {
  auto j = decode_payload(bytes, limits);
  if (!j)
    return make_error(errc::decode_error,
                      fmt::format("{}: {}", where, message_of(j.error())));
  if (auto err = expect_map(*j, where))
    return err;
  return j;
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
inline std::string served_versions() {
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

/// Reads a membership request (`gossip.sync`, `gossip.ping`,
/// `gossip.probe`, `members`) whose op is `name`; nothing when `name` is
/// none of these. Defined in control_gossip.cpp.
std::optional<caf::expected<request>>
read_gossip_request(std::string_view name, payload& j, uint32_t v);

/// Reads a consumer group request (`group.lease`) whose op is `name`;
/// nothing when `name` is none of these. Defined in control_group.cpp.
std::optional<caf::expected<request>>
read_group_request(std::string_view name, payload& j, uint32_t v);

/// Reads a group operation request (`group.describe`, `group.reset`) whose
/// op is `name`; nothing when `name` is none of these. Defined in
/// control_group_admin.cpp.
std::optional<caf::expected<request>>
read_group_admin_request(std::string_view name, payload& j, uint32_t v);

} // namespace detail

void write(payload& j, const error_reply& m);
void read(detail::fields& f, error_reply& m);

// The membership requests' ops (control_gossip.cpp), for `op_name`.
std::string_view name_of(const gossip_sync_request&);
std::string_view name_of(const gossip_ping&);
std::string_view name_of(const gossip_probe&);
std::string_view name_of(const members_request&);
// The consumer group requests' ops (control_group.cpp).
std::string_view name_of(const group_lease_request&);
// The group operations' ops (control_group_admin.cpp).
std::string_view name_of(const group_describe_request&);
std::string_view name_of(const group_reset_request&);

template <class Reply>
caf::expected<answer<Reply>> decode_reply(std::string_view bytes,
                                          const decode_limits& limits) {
  using namespace detail;
  Reply m;
  auto where = fmt::format("{} reply", name_of(m));
  auto j = decode_map(bytes, limits, where);
  if (!j)
    return j.error();
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

} // namespace herald::control
