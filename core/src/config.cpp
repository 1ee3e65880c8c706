#include "herald/core/config.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "yaml_util.hpp"

namespace herald {

namespace {

using detail::entry;
using detail::problems;

constexpr std::array<std::string_view, 7> log_levels = {
  "trace", "debug", "info", "warn", "error", "critical", "off",
};

constexpr std::string_view endpoint_forms =
  "use tcp://HOST:PORT, ipc://PATH or inproc://NAME";

bool is_endpoint(std::string_view text) {
  for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"})
    if (text.starts_with(scheme) && text.size() > scheme.size())
      return true;
  return false;
}

/// Returns the endpoint `e` holds, or reports why it is none.
std::optional<std::string> endpoint_of(const entry& e, problems& out) {
  auto text =
    detail::text_of(e, "", fmt::format("an endpoint; {}", endpoint_forms), out);
  if (text && !is_endpoint(*text)) {
    out.add(e.line, fmt::format("'{}': '{}' is not a ZeroMQ endpoint; {}",
                                e.key, *text, endpoint_forms));
    return std::nullopt;
  }
  return text;
}

/// Reads a positive integer of `transport` into `target`.
template <class T>
void read_positive(const entry& e, std::string_view unit, problems& out,
                   T& target) {
  if (!e)
    return;
  auto value = detail::int_of(e.value);
  if (value && *value > 0
      && static_cast<uint64_t>(*value) <= std::numeric_limits<T>::max())
    target = static_cast<T>(*value);
  else
    out.add(e.line, fmt::format("transport: '{}' must be a positive integer "
                                "({}), not {}",
                                e.key, unit,
                                e.value.IsScalar()
                                  ? fmt::format("'{}'", e.value.Scalar())
                                  : std::string{"a list or map"}));
}

void read_transport(const entry& e, problems& out, transport_config& cfg) {
  if (!e.value.IsMap()) {
    out.add(e.line, "'transport' must be a map with hwm, max_message_size, "
                    "heartbeat_ms");
    return;
  }
  entry hwm{"hwm"}, max_message_size{"max_message_size"},
    heartbeat_ms{"heartbeat_ms"}, stream_heartbeat_ms{"stream_heartbeat_ms"};
  detail::read_map(
    e.value, "transport: ",
    {&hwm, &max_message_size, &heartbeat_ms, &stream_heartbeat_ms}, out);
  read_positive(hwm, "messages", out, cfg.hwm);
  read_positive(max_message_size, "bytes", out, cfg.max_message_size);
  int64_t ms = cfg.heartbeat.count();
  read_positive(heartbeat_ms, "milliseconds", out, ms);
  cfg.heartbeat = std::chrono::milliseconds{ms};
  ms = cfg.stream_heartbeat.count();
  read_positive(stream_heartbeat_ms, "milliseconds", out, ms);
  cfg.stream_heartbeat = std::chrono::milliseconds{ms};
}

void read_duration(const entry& e, problems& out,
                   std::chrono::microseconds& value) {
  if (!e)
    return;
  auto text = e.value.IsScalar() ? e.value.Scalar() : std::string{};
  if (auto d = parse_duration(text); d && d->count() > 0)
    value = *d;
  else
    out.add(e.line, fmt::format("'{}': '{}' is not a positive duration; use "
                                "a number and a unit: d, h, m, s, ms or us "
                                "(e.g. 7d, 500ms)",
                                e.key, text));
}

void read_store(const entry& e, problems& out, store_config& cfg) {
  if (!e.value.IsMap()) {
    out.add(e.line, "'store' must be a map with fsync, retention, "
                    "retention_check");
    return;
  }
  entry fsync{"fsync"}, retention{"retention"},
    retention_check{"retention_check"};
  detail::read_map(e.value, "store: ", {&fsync, &retention, &retention_check},
                   out);
  if (fsync) {
    auto text = fsync.value.IsScalar() ? fsync.value.Scalar() : std::string{};
    if (text == "always" || text == "batch" || text == "os")
      cfg.fsync = text;
    else
      out.add(fsync.line, fmt::format("'fsync': '{}' is not a policy; use "
                                      "always, batch or os",
                                      text));
  }
  read_duration(retention, out, cfg.retention);
  read_duration(retention_check, out, cfg.retention_check);
}

void read_consumers(const entry& e, problems& out,
                    std::vector<consumer_config>& consumers) {
  if (!e.value.IsMap()) {
    out.add(e.line, "'consumers' must be a map from consumer name to "
                    "{subscribe: [patterns]}");
    return;
  }
  detail::for_each_named(
    e.value, "", "consumer", out,
    [&](const std::string& name, int line, const YAML::Node& node) {
      auto ctx = fmt::format("consumer '{}': ", name);
      if (!node.IsMap()) {
        out.add(line, ctx
                        + "must be a map like {subscribe: [user.account."
                          "created]}");
        return;
      }
      entry subscribe{"subscribe"};
      detail::read_map(node, ctx, {&subscribe}, out);
      if (!detail::require(subscribe, line, ctx,
                           "a list of patterns, e.g. [user.account.created]",
                           out))
        return;
      if (!subscribe.value.IsSequence()) {
        out.add(subscribe.line, ctx
                                  + "'subscribe' must be a list of "
                                    "patterns, e.g. [user.account.created]");
        return;
      }
      consumer_config consumer{name, {}};
      for (const auto& item : subscribe.value) {
        auto text = item.IsScalar() ? item.Scalar() : std::string{};
        if (auto p = pattern::parse(text))
          consumer.subscribe.push_back(std::move(text));
        else
          out.add(detail::line_of(item), ctx + message_of(p.error()));
      }
      consumers.push_back(std::move(consumer));
    });
}

void read_config(const YAML::Node& root, const std::string& base_dir,
                 problems& out, node_config& cfg) {
  if (!root.IsMap()) {
    out.add(detail::line_of(root),
            "a node configuration must be a map with at least 'node' and "
            "'catalog'");
    return;
  }
  entry node{"node"}, service{"service"}, bind{"bind"}, advertise{"advertise"},
    peers{"peers"}, catalog{"catalog"}, log_level{"log_level"},
    transport{"transport"}, consumers{"consumers"}, data_dir{"data_dir"},
    control{"control"}, store{"store"};
  detail::read_map(root, "",
                   {&node, &service, &bind, &advertise, &peers, &catalog,
                    &log_level, &transport, &consumers, &data_dir, &control,
                    &store},
                   out);
  auto top = detail::line_of(root);
  if (detail::require(node, top, "", "the node's name, e.g. node: email-node",
                      out))
    cfg.name = detail::text_of(node, "", "a name", out).value_or("");
  cfg.service = service
                  ? detail::text_of(service, "", "a name", out).value_or("")
                  : cfg.name;
  if (bind)
    cfg.bind = endpoint_of(bind, out).value_or(cfg.bind);
  if (advertise)
    cfg.advertise = endpoint_of(advertise, out).value_or("");
  if (peers && !peers.value.IsSequence())
    out.add(peers.line, "'peers' must be a list of endpoints, e.g. "
                        "[tcp://127.0.0.1:5600]");
  else if (peers)
    for (const auto& item : peers.value)
      if (auto peer = endpoint_of({"peers", detail::line_of(item), item}, out))
        cfg.peers.push_back(std::move(*peer));
  if (detail::require(catalog, top, "",
                      "the path of the event catalog, e.g. catalog: "
                      "events.yaml",
                      out))
    if (auto path = detail::text_of(catalog, "", "a path", out)) {
      std::filesystem::path p{*path};
      cfg.catalog =
        p.is_relative() && !base_dir.empty()
          ? (std::filesystem::path{base_dir} / p).lexically_normal().string()
          : *path;
    }
  if (log_level) {
    auto levels = fmt::format("one of {}", fmt::join(log_levels, ", "));
    auto level = detail::text_of(log_level, "", levels, out);
    if (level
        && std::find(log_levels.begin(), log_levels.end(), *level)
             != log_levels.end())
      cfg.log_level = *level;
    else if (level)
      out.add(log_level.line, fmt::format("'log_level': '{}' is not a level; "
                                          "use {}",
                                          *level, levels));
  }
  if (data_dir)
    cfg.data_dir = detail::text_of(data_dir, "", "a path", out).value_or("");
  if (control)
    cfg.control = endpoint_of(control, out).value_or(cfg.control);
  if (store)
    read_store(store, out, cfg.store);
  if (transport)
    read_transport(transport, out, cfg.transport);
  if (consumers)
    read_consumers(consumers, out, cfg.consumers);
}

} // namespace

caf::expected<std::chrono::microseconds> parse_duration(std::string_view text) {
  using namespace std::chrono;
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  auto unit = text.substr(digits);
  uint64_t n = 0;
  bool ok = digits > 0 && digits <= 12;
  for (size_t i = 0; ok && i < digits; ++i)
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
  static constexpr std::pair<std::string_view, int64_t> units[] = {
    {"d", 86'400'000'000}, {"h", 3'600'000'000}, {"m", 60'000'000},
    {"s", 1'000'000},      {"ms", 1'000},        {"us", 1}};
  if (ok)
    for (auto& [name, micros] : units)
      if (unit == name)
        return microseconds{static_cast<int64_t>(n) * micros};
  return make_error(errc::invalid_config,
                    fmt::format("'{}' is not a duration; use a number and a "
                                "unit: d, h, m, s, ms or us (e.g. 7d, 500ms)",
                                text));
}

caf::expected<node_config> node_config::load_file(const std::string& path) {
  auto text = detail::read_file(path, "config file");
  if (!text)
    return std::move(text.error());
  return parse(*text, path, std::filesystem::path{path}.parent_path().string());
}

caf::expected<node_config> node_config::parse(std::string_view yaml,
                                              const std::string& source_name,
                                              const std::string& base_dir) {
  problems out{source_name};
  node_config cfg;
  try {
    if (auto root = detail::load(yaml, out))
      read_config(*root, base_dir, out, cfg);
  } catch (const std::exception& ex) {
    out.add(0, fmt::format("cannot load the configuration: {}", ex.what()));
  }
  if (!out.empty())
    return out.to_error(errc::invalid_config);
  return cfg;
}

} // namespace herald
