#include "herald/core/catalog.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "values.hpp"
#include "yaml_util.hpp"

namespace herald {

namespace {

// -- field types --------------------------------------------------------------

// Indexed by field_type.
constexpr std::array<const char*, 10> type_names = {
  "string", "uuid",      "email", "int",   "float",
  "bool",   "timestamp", "enum",  "array", "object",
};

std::optional<field_type> parse_type(std::string_view name) {
  for (size_t i = 0; i < type_names.size(); ++i)
    if (name == type_names[i])
      return static_cast<field_type>(i);
  return std::nullopt;
}

// -- loading ------------------------------------------------------------------

using detail::entry;
using detail::problems;

std::vector<field_spec> parse_fields(const YAML::Node& map,
                                     std::string_view parent,
                                     std::string_view event_ctx, problems& out);

field_spec parse_field(std::string name, const std::string& path, int line,
                       const YAML::Node& node, std::string_view event_ctx,
                       problems& out) {
  field_spec f;
  f.name = std::move(name);
  auto ctx = fmt::format("{}field '{}': ", event_ctx, path);
  if (!node.IsMap()) {
    out.add(line, ctx + "must be a map like {type: string}");
    return f;
  }
  entry type{"type"}, optional{"optional"}, values{"values"}, items{"items"},
    fields{"fields"}, description{"description"};
  detail::read_map(
    node, ctx, {&type, &optional, &values, &items, &fields, &description}, out);
  auto types = fmt::format("{}", fmt::join(type_names, ", "));
  if (optional && !YAML::convert<bool>::decode(optional.value, f.optional))
    out.add(optional.line, ctx + "'optional' must be true or false");
  if (description)
    f.description =
      detail::text_of(description, ctx, "a text", out).value_or("");
  if (!detail::require(type, line, ctx, "one of " + types, out))
    return f;
  auto type_name = detail::text_of(type, ctx, "one of " + types, out);
  if (!type_name)
    return f;
  if (auto t = parse_type(*type_name)) {
    f.type = *t;
  } else {
    out.add(type.line, fmt::format("{}unknown type '{}' (use one of {})", ctx,
                                   *type_name, types));
    return f;
  }
  // values, items and fields belong to one type each.
  auto check = [&](const entry& e, field_type owner, std::string_view example) {
    if (e && f.type != owner)
      out.add(e.line, fmt::format("{}'{}' is only for {} fields", ctx, e.key,
                                  to_string(owner)));
    if (!e && f.type == owner)
      out.add(type.line, fmt::format("{}{} without '{}' (add {})", ctx,
                                     to_string(owner), e.key, example));
    return e && f.type == owner;
  };
  if (check(values, field_type::enumeration, "values: [a, b]")) {
    if (!values.value.IsSequence() || values.value.size() == 0)
      out.add(values.line, ctx
                             + "'values' must be a non-empty list, e.g. "
                               "[web, api]");
    else
      for (const auto& v : values.value) {
        if (v.IsScalar() && !v.Scalar().empty())
          f.values.push_back(v.Scalar());
        else
          out.add(detail::line_of(v),
                  ctx + "each of 'values' must be a plain text");
      }
  }
  if (check(items, field_type::array, "items: {type: string}"))
    f.items.push_back(
      parse_field("", path + "[]", items.line, items.value, event_ctx, out));
  if (check(fields, field_type::object, "fields: {name: {type: string}}")) {
    if (fields.value.IsMap())
      f.fields = parse_fields(fields.value, path, event_ctx, out);
    else
      out.add(fields.line, ctx
                             + "'fields' must be a map from field name to "
                               "its schema");
  }
  return f;
}

std::vector<field_spec> parse_fields(const YAML::Node& map,
                                     std::string_view parent,
                                     std::string_view event_ctx,
                                     problems& out) {
  std::vector<field_spec> result;
  detail::for_each_named(
    map, event_ctx, "field", out,
    [&](const std::string& name, int line, const YAML::Node& value) {
      auto path = parent.empty() ? name : fmt::format("{}.{}", parent, name);
      result.push_back(parse_field(name, path, line, value, event_ctx, out));
    });
  return result;
}

void check_key(const event_spec& ev, int line, std::string_view ctx,
               problems& out) {
  auto f = std::find_if(ev.payload.begin(), ev.payload.end(),
                        [&](const field_spec& x) {
                          return x.name == ev.key;
                        });
  auto rule = fmt::format("{}key '{}' must name a required payload field of "
                          "type string or uuid",
                          ctx, ev.key);
  if (f == ev.payload.end())
    out.add(line, rule + "; the payload has no such field");
  else if (f->optional)
    out.add(line, rule + fmt::format("; '{}' is optional", ev.key));
  else if (f->type != field_type::string && f->type != field_type::uuid)
    out.add(line,
            rule
              + fmt::format("; '{}' has type {}", ev.key, to_string(f->type)));
}

std::optional<event_spec> parse_event(const std::string& name, int line,
                                      const YAML::Node& node, problems& out) {
  if (auto err = validate_event_name(name))
    out.add(line, message_of(err));
  auto ctx = fmt::format("event '{}': ", name);
  if (!node.IsMap()) {
    out.add(line, ctx
                    + "must be a map with trigger, producer, key, payload "
                      "and consumers");
    return std::nullopt;
  }
  event_spec ev;
  ev.name = name;
  ev.line = line;
  entry trigger{"trigger"}, producer{"producer"}, key{"key"},
    payload_entry{"payload"}, consumers{"consumers"};
  detail::read_map(
    node, ctx, {&trigger, &producer, &key, &payload_entry, &consumers}, out);
  auto read_text = [&](const entry& e, std::string_view hint,
                       std::string& target) {
    if (detail::require(e, line, ctx, hint, out))
      target = detail::text_of(e, ctx, "a text", out).value_or("");
  };
  read_text(trigger, "when the event fires", ev.trigger);
  read_text(producer, "the service that publishes it", ev.producer);
  if (!ev.producer.empty())
    if (auto err = validate_service_name(ev.producer, "producer"))
      out.add(producer.line, ctx + message_of(err));
  read_text(key, "the payload field holding the entity id", ev.key);
  if (detail::require(payload_entry, line, ctx,
                      "a map from field name to its schema", out)) {
    if (payload_entry.value.IsMap())
      ev.payload = parse_fields(payload_entry.value, "", ctx, out);
    else
      out.add(payload_entry.line, ctx
                                    + "'payload' must be a map from field "
                                      "name to its schema");
  }
  if (!ev.key.empty() && payload_entry.value.IsMap())
    check_key(ev, key.line, ctx, out);
  if (detail::require(consumers, line, ctx, "a map from consumer to its action",
                      out)) {
    if (consumers.value.IsMap())
      detail::for_each_named(
        consumers.value, ctx, "consumer", out,
        [&](const std::string& consumer, int at, const YAML::Node& action) {
          if (auto err = validate_service_name(consumer, "consumer"))
            out.add(at, ctx + message_of(err));
          else if (action.IsScalar() && !action.Scalar().empty())
            ev.consumers.emplace_back(consumer, action.Scalar());
          else
            out.add(at, fmt::format("{}consumer '{}': the action must be a "
                                    "text, e.g. {}: Send welcome email",
                                    ctx, consumer, consumer));
        });
    else
      out.add(consumers.line, ctx
                                + "'consumers' must be a map from consumer "
                                  "to its action, e.g. EmailService: Send "
                                  "welcome email");
  }
  return ev;
}

// -- validation ---------------------------------------------------------------

// The path to a value in a payload, kept on the stack while walking it and
// rendered (`address.city`, `tags[2]`) only when reporting a problem.
struct path_node {
  const path_node* parent;
  std::string_view name; // empty for an array element
  size_t index;
};

void render(const path_node* p, std::string& out) {
  if (p == nullptr)
    return;
  render(p->parent, out);
  if (p->name.empty()) {
    out += fmt::format("[{}]", p->index);
    return;
  }
  if (!out.empty())
    out.push_back('.');
  out.append(p->name);
}

std::string render(const path_node* p) {
  std::string result;
  render(p, result);
  return result;
}

/// Renders `value` for a message, shortened when long.
std::string show(const payload& value) {
  constexpr size_t max = 60;
  auto text = value.dump(-1, ' ', false, payload::error_handler_t::replace);
  if (text.size() > max)
    text = text.substr(0, max) + "...";
  return text;
}

/// What a value of `f` must be, e.g. "an email address".
std::string describe(const field_spec& f) {
  switch (f.type) {
  case field_type::string:
    return "a string";
  case field_type::uuid:
    return "a UUID (8-4-4-4-12 hex digits)";
  case field_type::email:
    return "an email address";
  case field_type::integer:
    return "an integer";
  case field_type::floating:
    return "a number";
  case field_type::boolean:
    return "true or false";
  case field_type::timestamp:
    return "an RFC 3339 timestamp (e.g. 2024-01-01T00:00:00Z)";
  case field_type::enumeration:
    return fmt::format("one of {}", fmt::join(f.values, ", "));
  case field_type::array:
    return "an array";
  case field_type::object:
    return "an object";
  }
  return "valid";
}

caf::error invalid(const event_spec& ev, std::string_view problem) {
  return make_error(errc::invalid_payload,
                    fmt::format("event '{}': {}", ev.name, problem));
}

// A payload is walked twice at most: checked as given (`P` is `const
// payload`); then, only when some value is spelled otherwise than
// canonically, walked again over a copy whose values are rewritten (`P` is
// `payload`), which cannot fail. A canonical payload costs no copy.
struct walk {
  const event_spec& ev;
  /// Some value differs from its canonical form.
  bool changed = false;
};

template <class P> constexpr bool rewrites = !std::is_const_v<P>;

caf::error bad_value(const walk& w, const field_spec& f, const payload& value,
                     const path_node* path, std::string_view why = {}) {
  return invalid(w.ev, fmt::format("field '{}': {} is not {}{}{}", render(path),
                                   show(value), describe(f),
                                   why.empty() ? "" : ": ", why));
}

// Rewrites `value` to `canonical` (on the second walk).
template <class P, class T>
void canonicalize(walk& w, P& value, T&& canonical) {
  w.changed = true;
  if constexpr (rewrites<P>)
    value = std::forward<T>(canonical);
}

// A text type's rule (uuid, email, timestamp) applied to `value`.
template <class P>
caf::error check_text(walk& w, const field_spec& f, P& value,
                      const path_node* path,
                      detail::verdict (*rule)(std::string_view)) {
  if (!value.is_string())
    return bad_value(w, f, value, path);
  auto v = rule(value.template get_ref<const std::string&>());
  if (!v.ok())
    return bad_value(w, f, value, path, v.problem);
  if (v.canonical)
    canonicalize(w, value, std::move(*v.canonical));
  return {};
}

// The bounds of int, a signed 64-bit integer, as doubles: -2^63 and 2^63;
// and 2^64, past the largest unsigned 64-bit integer.
constexpr double int_low = -9223372036854775808.0;
constexpr double int_high = 9223372036854775808.0;
constexpr double uint_high = 18446744073709551616.0;

template <class P>
caf::error check_integer(walk& w, const field_spec& f, P& value,
                         const path_node* path) {
  // One message for out of range, however the number came: MessagePack
  // (herald publish --control) carries an integral 1e19 as an integer.
  constexpr std::string_view out_of_range =
    "it is outside -9223372036854775808 to 9223372036854775807 (a signed "
    "64-bit integer)";
  if (value.is_number_unsigned()) {
    if (value.template get<uint64_t>()
        > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return bad_value(w, f, value, path, out_of_range);
    return {};
  }
  if (value.is_number_integer())
    return {};
  if (!value.is_number_float())
    return bad_value(w, f, value, path);
  auto d = value.template get<double>();
  if (!std::isfinite(d))
    return bad_value(w, f, value, path, "it is not a finite number");
  if (std::trunc(d) != d)
    return bad_value(w, f, value, path,
                     "it has a fractional part (a number without one, like "
                     "1.0 or 1e3, is taken as that integer)");
  if (d < int_low || d >= int_high)
    return bad_value(w, f, value, path, out_of_range);
  canonicalize(w, value, static_cast<int64_t>(d));
  return {};
}

// A float's one form: an integral value in the 64-bit integer range is
// that integer, as MessagePack carries it (msgpack-c packs an integral
// double as an integer, so a handler could not tell 2.0 from 2 anyway);
// any other finite number is a double.
template <class P>
caf::error check_floating(walk& w, const field_spec& f, P& value,
                          const path_node* path) {
  if (value.is_number_integer())
    return {};
  if (!value.is_number_float())
    return bad_value(w, f, value, path);
  auto d = value.template get<double>();
  if (!std::isfinite(d))
    return bad_value(w, f, value, path,
                     "it is not a finite number (JSON has no NaN or "
                     "infinity)");
  if (std::trunc(d) != d)
    return {};
  if (d >= 0 && d < uint_high)
    canonicalize(w, value, static_cast<uint64_t>(d));
  else if (d < 0 && d >= int_low)
    canonicalize(w, value, static_cast<int64_t>(d));
  return {};
}

template <class P>
caf::error check_object(walk& w, const std::vector<field_spec>& fields,
                        P& object, const path_node* parent);

// For an enum value that is one of `f`'s values but for case: says so.
std::string case_hint(const field_spec& f, std::string_view value) {
  auto same = [&](const std::string& v) {
    return std::equal(v.begin(), v.end(), value.begin(), value.end(),
                      [](char x, char y) {
                        return std::tolower(static_cast<unsigned char>(x))
                               == std::tolower(static_cast<unsigned char>(y));
                      });
  };
  auto it = std::find_if(f.values.begin(), f.values.end(), same);
  if (it == f.values.end())
    return {};
  return fmt::format("enum values are exact, case included (did you mean "
                     "'{}'?)",
                     *it);
}

template <class P>
caf::error check_value(walk& w, const field_spec& f, P& value,
                       const path_node* path) {
  switch (f.type) {
  case field_type::string:
    if (!value.is_string())
      return bad_value(w, f, value, path);
    if (auto why =
          detail::check_utf8(value.template get_ref<const std::string&>());
        !why.empty())
      return bad_value(w, f, value, path, why);
    return {};
  case field_type::uuid:
    return check_text(w, f, value, path, detail::check_uuid);
  case field_type::email:
    return check_text(w, f, value, path, detail::check_email);
  case field_type::integer:
    return check_integer(w, f, value, path);
  case field_type::floating:
    return check_floating(w, f, value, path);
  case field_type::boolean:
    if (!value.is_boolean())
      return bad_value(w, f, value, path);
    return {};
  case field_type::timestamp:
    return check_text(w, f, value, path, detail::check_timestamp);
  case field_type::enumeration:
    if (!value.is_string())
      return bad_value(w, f, value, path);
    if (std::find(f.values.begin(), f.values.end(),
                  value.template get_ref<const std::string&>())
        == f.values.end())
      return bad_value(
        w, f, value, path,
        case_hint(f, value.template get_ref<const std::string&>()));
    return {};
  case field_type::array:
    if (!value.is_array())
      return bad_value(w, f, value, path);
    if (f.items.empty())
      return {};
    for (size_t i = 0; i < value.size(); ++i) {
      path_node element{path, {}, i};
      auto& item = value[i];
      if (item.is_null())
        return invalid(w.ev,
                       fmt::format("field '{}': null, which herald takes as "
                                   "an absent value, and an array element "
                                   "cannot be absent; remove it",
                                   render(&element)));
      if (auto err = check_value(w, f.items.front(), item, &element))
        return err;
    }
    return {};
  case field_type::object:
    if (!value.is_object())
      return bad_value(w, f, value, path);
    return check_object(w, f.fields, value, path);
  }
  return bad_value(w, f, value, path);
}

template <class P>
caf::error check_object(walk& w, const std::vector<field_spec>& fields,
                        P& object, const path_node* parent) {
  size_t known = 0;
  for (const auto& f : fields) {
    path_node here{parent, f.name, 0};
    auto i = object.find(f.name);
    if (i == object.end()) {
      if (!f.optional)
        return invalid(
          w.ev, fmt::format("missing required field '{}'", render(&here)));
      continue;
    }
    ++known;
    // null is absent, for every type: an optional field is dropped, a
    // required one missing.
    if (i->is_null()) {
      if (!f.optional)
        return invalid(w.ev, fmt::format("missing required field '{}': it is "
                                         "null, which herald takes as "
                                         "absent; send a value",
                                         render(&here)));
      w.changed = true;
      if constexpr (rewrites<P>)
        object.erase(i);
      continue;
    }
    if (auto err = check_value(w, f, *i, &here))
      return err;
  }
  // The first walk checked for fields the schema does not name.
  if (rewrites<P> || known == object.size())
    return {};
  for (const auto& item : object.items()) {
    // A named key, not a structured binding: clang 14 (the fuzz build)
    // cannot capture those.
    const auto& name = item.key();
    auto declared =
      std::any_of(fields.begin(), fields.end(), [&](const field_spec& f) {
        return f.name == name;
      });
    if (!declared) {
      path_node here{parent, name, 0};
      return invalid(w.ev, fmt::format("unexpected field '{}' (the catalog's "
                                       "schema has no such field; add it to "
                                       "config/events.yaml or remove it)",
                                       render(&here)));
    }
  }
  return {};
}

} // namespace

const char* to_string(field_type t) {
  auto i = static_cast<size_t>(t);
  return i < type_names.size() ? type_names[i] : "unknown";
}

bool event_spec::has_consumer(std::string_view consumer) const noexcept {
  return builtin
         || std::any_of(consumers.begin(), consumers.end(), [&](const auto& c) {
              return c.first == consumer;
            });
}

caf::expected<catalog> catalog::load_file(const std::string& path) {
  auto text = detail::read_file(path, "catalog");
  if (!text)
    return std::move(text.error());
  return parse(*text, path);
}

namespace {

// herald's own events, in every catalog. Any service may subscribe to them.
constexpr std::string_view builtin_events = R"(
herald.alert.raised:
  trigger: A consumer's dead letters within a window reached its alert rule's threshold, or a consumer group's dead letters at a stream's owner reached the owner's quota (groups.dead_letter_quota)
  producer: herald
  key: consumer
  payload:
    alert_id: {type: uuid}
    consumer: {type: string}
    node: {type: string}
    rule: {type: string, description: "e.g. dead_letters >= 10 within 5m, or dead_letter_quota 268435456 bytes at the owner of stream S"}
    dead_letters: {type: int, description: "dead letters within the window; for a quota, the group's dead letters at the owner"}
    threshold: {type: int, description: "the rule's threshold; for a quota, the quota in bytes"}
    window_seconds: {type: int, description: "the rule's window; 0 for a quota"}
    raised_at: {type: timestamp}
  consumers:
    any: Any service may subscribe
)";

} // namespace

caf::expected<catalog> catalog::parse(std::string_view yaml,
                                      const std::string& source_name) {
  problems out{source_name};
  catalog result;
  result.source_ = source_name;
  try {
    auto root = detail::load(yaml, out);
    if (root && !root->IsMap()) {
      out.add(detail::line_of(*root),
              "a catalog must be a map with 'events' (and optionally "
              "'version')");
    } else if (root) {
      entry version{"version"}, events{"events"};
      detail::read_map(*root, "", {&version, &events}, out);
      uint32_t schema_version = 1;
      if (version) {
        auto v = detail::int_of(version.value);
        if (v && *v >= 1 && *v <= std::numeric_limits<uint32_t>::max())
          schema_version = static_cast<uint32_t>(*v);
        else
          out.add(version.line, "'version' must be a positive integer");
      }
      if (detail::require(events, detail::line_of(*root), "",
                          "a map from event name to its definition", out)) {
        if (events.value.IsMap())
          detail::for_each_named(
            events.value, "", "event", out,
            [&](const std::string& name, int line, const YAML::Node& node) {
              if (name.starts_with("herald."))
                out.add(line, fmt::format("event '{}': the domain 'herald' is "
                                          "reserved for herald's own events; "
                                          "pick another domain",
                                          name));
              else if (auto ev = parse_event(name, line, node, out)) {
                ev->schema_version = schema_version;
                result.events_.push_back(std::move(*ev));
              }
            });
        else
          out.add(events.line, "'events' must be a map from event name to "
                               "its definition");
      }
    }
  } catch (const std::exception& ex) {
    out.add(0, fmt::format("cannot load the catalog: {}", ex.what()));
  }
  if (!out.empty())
    return out.to_error(errc::invalid_catalog);
  problems internal{"(herald's own events)"};
  auto root = YAML::Load(std::string{builtin_events});
  for (const auto& kv : root)
    if (auto ev = parse_event(kv.first.Scalar(), 0, kv.second, internal)) {
      ev->builtin = true;
      ev->consumers.clear();
      result.events_.push_back(std::move(*ev));
    }
  for (size_t i = 0; i < result.events_.size(); ++i)
    result.index_.emplace(result.events_[i].name, i);
  return result;
}

const event_spec* catalog::find(std::string_view type) const noexcept {
  auto i = index_.find(type);
  return i == index_.end() ? nullptr : &events_[i->second];
}

caf::error catalog::validate(std::string_view type, const payload& data) const {
  if (const auto* spec = find(type))
    return validate(*spec, data);
  return make_error(errc::unknown_event,
                    fmt::format("unknown event type '{}': not in the catalog "
                                "{}; add it there first",
                                type, source_));
}

caf::error catalog::validate(const event_spec& spec, const payload& data) {
  auto canonical = canonical_form(spec, data);
  return canonical ? caf::error{} : std::move(canonical.error());
}

caf::expected<std::optional<payload>>
catalog::canonical_form(const event_spec& spec, const payload& data) {
  if (!data.is_object())
    return invalid(spec, fmt::format("the payload must be a JSON object, not "
                                     "{}",
                                     show(data)));
  walk w{spec};
  if (auto err = check_object(w, spec.payload, data, nullptr))
    return err;
  if (!w.changed)
    return std::optional<payload>{};
  auto copy = data;
  walk again{spec};
  check_object(again, spec.payload, copy, nullptr); // checked above
  return std::optional<payload>{std::move(copy)};
}

} // namespace herald
