#include "herald/core/config.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "herald/core/partition.hpp"
#include "yaml_util.hpp"

namespace herald {

namespace {

using detail::entry;
using detail::problems;

constexpr std::array<std::string_view, 7> log_levels = {
  "trace", "debug", "info", "warn", "error", "critical", "off",
};

// The units of a duration, largest first.
constexpr std::pair<std::string_view, int64_t> duration_units[] = {
  {"d", 86'400'000'000}, {"h", 3'600'000'000}, {"m", 60'000'000},
  {"s", 1'000'000},      {"ms", 1'000},        {"us", 1}};

constexpr std::string_view endpoint_forms =
  "use tcp://HOST:PORT, ipc://PATH or inproc://NAME";

/// Whether an endpoint is bound (a port may be `*`) or connected to.
enum class endpoint_use { bind, connect };

/// Why `text` is not a ZeroMQ endpoint for `use` (zmq_tcp(7), zmq_ipc(7),
/// zmq_inproc(7)); empty when it is one.
std::string endpoint_problem(std::string_view text, endpoint_use use) {
  for (std::string_view scheme : {"ipc://", "inproc://"})
    if (text.starts_with(scheme))
      return text.size() > scheme.size()
               ? std::string{}
               : fmt::format("nothing follows '{}'", scheme);
  if (!text.starts_with("tcp://"))
    return "it does not start with tcp://, ipc:// or inproc://";
  auto rest = text.substr(6);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos)
    return "it has no ':PORT'";
  auto host = rest.substr(0, colon);
  auto port = rest.substr(colon + 1);
  if (host.empty())
    return "the host before ':PORT' is empty (use * for every interface)";
  if (host.find_first_of(" \t/") != std::string_view::npos)
    return fmt::format("the host '{}' holds a space or '/'", host);
  if (port == "*")
    return use == endpoint_use::bind
             ? std::string{}
             : std::string{"a port of '*' can be bound, not connected to; "
                           "give the port"};
  bool digits = !port.empty() && port.size() <= 5
                && std::all_of(port.begin(), port.end(), [](char c) {
                     return c >= '0' && c <= '9';
                   });
  if (!digits || std::stoul(std::string{port}) > 65535
      || (use == endpoint_use::connect && std::stoul(std::string{port}) == 0))
    return fmt::format("the port '{}' is not {}", port,
                       use == endpoint_use::bind ? "a number 0-65535 or *"
                                                 : "a number 1-65535");
  return {};
}

/// Returns the endpoint `e` holds, or reports why it is none.
std::optional<std::string> endpoint_of(const entry& e, endpoint_use use,
                                       problems& out) {
  auto text =
    detail::text_of(e, "", fmt::format("an endpoint; {}", endpoint_forms), out);
  if (!text)
    return text;
  if (auto why = endpoint_problem(*text, use); !why.empty()) {
    out.add(e.line, fmt::format("'{}': '{}' is not a ZeroMQ endpoint: {}; {}",
                                e.key, *text, why, endpoint_forms));
    return std::nullopt;
  }
  return text;
}

std::string describe(const YAML::Node& value) {
  return value.IsScalar() ? fmt::format("'{}'", value.Scalar())
                          : std::string{"a list or map"};
}

/// Reads a positive integer into `target`.
template <class T>
void read_positive(const entry& e, std::string_view context,
                   std::string_view unit, problems& out, T& target) {
  if (!e)
    return;
  auto value = detail::int_of(e.value);
  if (value && *value > 0
      && static_cast<uint64_t>(*value) <= std::numeric_limits<T>::max())
    target = static_cast<T>(*value);
  else
    out.add(e.line, fmt::format("{}'{}' must be a positive integer ({}), not "
                                "{}",
                                context, e.key, unit, describe(e.value)));
}

/// Checks that `e` is a map; reports `CONTEXT'KEY' must be a map with
/// KEYS` otherwise.
bool is_map(const entry& e, std::string_view context, std::string_view keys,
            problems& out) {
  if (e.value.IsMap())
    return true;
  out.add(e.line,
          fmt::format("{}'{}' must be a map with {}", context, e.key, keys));
  return false;
}

void read_transport(const entry& e, problems& out, transport_config& cfg) {
  if (!is_map(e, "", "hwm, max_message_size, heartbeat_ms", out))
    return;
  entry hwm{"hwm"}, max_message_size{"max_message_size"},
    heartbeat_ms{"heartbeat_ms"}, stream_heartbeat_ms{"stream_heartbeat_ms"},
    max_control_sockets{"max_control_sockets"},
    control_idle_ms{"control_idle_ms"}, max_peer_streams{"max_peer_streams"},
    control_send_hwm{"control_send_hwm"},
    control_backlog_bytes{"control_backlog_bytes"},
    max_held_bytes_per_stream{"max_held_bytes_per_stream"},
    max_held_bytes{"max_held_bytes"};
  detail::read_map(e.value, "transport: ",
                   {&hwm, &max_message_size, &heartbeat_ms,
                    &stream_heartbeat_ms, &max_control_sockets,
                    &control_idle_ms, &max_peer_streams, &control_send_hwm,
                    &control_backlog_bytes, &max_held_bytes_per_stream,
                    &max_held_bytes},
                   out);
  constexpr std::string_view ctx = "transport: ";
  read_positive(hwm, ctx, "messages", out, cfg.hwm);
  read_positive(max_message_size, ctx, "bytes", out, cfg.max_message_size);
  if (max_message_size && cfg.max_message_size < min_max_message_size)
    out.add(max_message_size.line,
            fmt::format("{}'max_message_size' must be at least {} bytes (64 "
                        "KiB), not {}: a live batch of events is up to 64 KiB "
                        "and every node must take it; use the same value on "
                        "every node",
                        ctx, min_max_message_size, cfg.max_message_size));
  // A positive integer of milliseconds into `target`.
  auto read_ms = [&](const entry& key, std::chrono::milliseconds& target) {
    int64_t ms = target.count();
    read_positive(key, ctx, "milliseconds", out, ms);
    target = std::chrono::milliseconds{ms};
  };
  read_ms(heartbeat_ms, cfg.heartbeat);
  read_ms(stream_heartbeat_ms, cfg.stream_heartbeat);
  read_positive(max_control_sockets, ctx, "sockets", out,
                cfg.max_control_sockets);
  if (max_control_sockets && cfg.max_control_sockets > max_max_control_sockets)
    out.add(max_control_sockets.line,
            fmt::format("{}'max_control_sockets' must be at most {}, not {}: "
                        "each takes two of libzmq's 1,023 sockets and the "
                        "node needs room for its peers' SUB sockets; lower "
                        "it",
                        ctx, max_max_control_sockets, cfg.max_control_sockets));
  read_ms(control_idle_ms, cfg.control_idle);
  read_positive(max_peer_streams, ctx, "streams", out, cfg.max_peer_streams);
  read_positive(control_send_hwm, ctx, "messages", out, cfg.control_send_hwm);
  read_positive(control_backlog_bytes, ctx, "bytes", out,
                cfg.control_backlog_bytes);
  if (control_backlog_bytes
      && cfg.control_backlog_bytes < cfg.max_message_size)
    out.add(control_backlog_bytes.line,
            fmt::format("{}'control_backlog_bytes' must be at least "
                        "max_message_size ({} bytes), not {}: one replay "
                        "reply must fit; raise it",
                        ctx, cfg.max_message_size, cfg.control_backlog_bytes));
  read_positive(max_held_bytes_per_stream, ctx, "bytes", out,
                cfg.max_held_bytes_per_stream);
  read_positive(max_held_bytes, ctx, "bytes", out, cfg.max_held_bytes);
}

void read_duration(const entry& e, problems& out,
                   std::chrono::microseconds& value,
                   std::string_view context = "", bool allow_zero = false) {
  if (!e)
    return;
  auto text = e.value.IsScalar() ? e.value.Scalar() : std::string{};
  if (auto d = parse_duration(text);
      d && (d->count() > 0 || (allow_zero && d->count() == 0)))
    value = *d;
  else
    out.add(e.line, fmt::format("{}'{}': '{}' is not a {} duration; use "
                                "a number and a unit: d, h, m, s, ms or us "
                                "(e.g. 7d, 500ms{})",
                                context, e.key, text,
                                allow_zero ? "non-negative" : "positive",
                                allow_zero ? ", 0s" : ""));
}

/// Reads the keys of a retry map into `policy` (unset keys keep its
/// values).
void read_retry(const YAML::Node& map, const std::string& ctx, problems& out,
                retry_policy& policy, entry* types = nullptr) {
  entry attempts{"attempts"}, initial{"initial"}, max{"max"}, jitter{"jitter"};
  if (types)
    detail::read_map(map, ctx, {&attempts, &initial, &max, &jitter, types},
                     out);
  else
    detail::read_map(map, ctx, {&attempts, &initial, &max, &jitter}, out);
  read_positive(attempts, ctx, "attempts in all, the first included", out,
                policy.attempts);
  read_duration(initial, out, policy.initial, ctx);
  read_duration(max, out, policy.max, ctx);
  if (jitter) {
    double value = -1;
    try {
      value = jitter.value.as<double>();
    } catch (const YAML::Exception&) {
    }
    if (value >= 0 && value < 1)
      policy.jitter = value;
    else
      out.add(jitter.line, fmt::format("{}'jitter' must be a fraction in "
                                       "[0, 1), e.g. 0.2 for ±20 %, not {}",
                                       ctx, describe(jitter.value)));
  }
}

// The most handler threads one consumer may have.
constexpr int64_t max_concurrency = 1024;

// Reads `concurrency`: 0 (handlers on the shards) up to max_concurrency.
void read_concurrency(const entry& e, std::string_view ctx, problems& out,
                      size_t& target) {
  if (!e)
    return;
  auto value = detail::int_of(e.value);
  if (value && *value >= 0 && *value <= max_concurrency)
    target = static_cast<size_t>(*value);
  else
    out.add(e.line, fmt::format("{}'concurrency' must be an integer from 0 "
                                "(handlers on the shards, for handlers that "
                                "never block) to {} (handler calls at once), "
                                "not {}",
                                ctx, max_concurrency, describe(e.value)));
}

void read_restarts(const entry& e, const std::string& ctx, problems& out,
                   restart_policy& policy) {
  if (!e || !is_map(e, ctx, "max, within, e.g. {max: 5, within: 1m}", out))
    return;
  entry max{"max"}, within{"within"};
  auto rctx = ctx + "restarts: ";
  detail::read_map(e.value, rctx, {&max, &within}, out);
  read_positive(max, rctx, "restarts within the period", out, policy.max);
  read_duration(within, out, policy.within, rctx);
}

// The consumer keys besides `subscribe`.
struct consumer_keys {
  entry shards{"shards"}, entity_buffer{"entity_buffer"}, retry{"retry"},
    dead_letter{"dead_letter"}, alert{"alert"}, concurrency{"concurrency"},
    handler_timeout{"handler_timeout"}, restarts{"restarts"},
    stall_after{"stall_after"}, partitions{"partitions"};
};

void read_consumer_policy(const std::string& ctx, consumer_keys& keys,
                          problems& out, consumer_config& c) {
  auto& [shards, entity_buffer, retry, dead_letter, alert, concurrency,
         handler_timeout, restarts, stall_after, partitions] = keys;
  read_positive(shards, ctx, "ordering shards", out, c.shards);
  read_positive(entity_buffer, ctx, "events", out, c.entity_buffer);
  read_concurrency(concurrency, ctx, out, c.concurrency);
  read_duration(handler_timeout, out, c.handler_timeout, ctx);
  read_duration(stall_after, out, c.stall_after, ctx);
  read_restarts(restarts, ctx, out, c.restarts);
  if (partitions) {
    auto value = detail::int_of(partitions.value);
    if (value && *value >= 1 && *value <= max_partitions)
      c.partitions = static_cast<uint32_t>(*value);
    else
      out.add(partitions.line,
              fmt::format("{}'partitions' must be an integer from 1 to {}, "
                          "the same on every node that runs the consumer, "
                          "not {}",
                          ctx, max_partitions, describe(partitions.value)));
  }
  if (retry
      && is_map(retry, ctx, "attempts, initial, max, jitter, types", out)) {
    entry types{"types"};
    read_retry(retry.value, ctx + "retry: ", out, c.retry, &types);
    if (types && is_map(types, ctx + "retry: ", "event types", out))
      for (const auto& kv : types.value) {
        auto type = kv.first.Scalar();
        auto tctx = fmt::format("{}retry: types: '{}': ", ctx, type);
        if (auto valid = validate_event_name(type); valid)
          out.add(detail::line_of(kv.first), tctx + message_of(valid));
        else if (!kv.second.IsMap())
          out.add(detail::line_of(kv.first),
                  tctx + "must be a map like {attempts: 5}");
        else {
          auto policy = c.retry;
          read_retry(kv.second, tctx, out, policy);
          c.retry_by_type.emplace_back(type, policy);
        }
      }
  }
  if (dead_letter) {
    auto text =
      dead_letter.value.IsScalar() ? dead_letter.value.Scalar() : std::string{};
    if (text == "continue")
      c.on_dead_letter = dead_letter_policy::continue_;
    else if (text == "park")
      c.on_dead_letter = dead_letter_policy::park;
    else
      out.add(dead_letter.line, fmt::format("{}'dead_letter': {} is not a "
                                            "policy; use continue or park",
                                            ctx, describe(dead_letter.value)));
  }
  if (alert && is_map(alert, ctx, "dead_letters, window, command", out)) {
    entry threshold{"dead_letters"}, window{"window"}, command{"command"};
    auto actx = ctx + "alert: ";
    detail::read_map(alert.value, actx, {&threshold, &window, &command}, out);
    if (detail::require(threshold, alert.line, actx,
                        "how many dead letters within the window raise it, "
                        "e.g. dead_letters: 10",
                        out))
      read_positive(threshold, actx, "dead letters", out, c.alert.dead_letters);
    read_duration(window, out, c.alert.window, actx);
    if (command)
      c.alert.command =
        detail::text_of(command, actx, "a shell command", out).value_or("");
  }
}

void read_store(const entry& e, problems& out, store_config& cfg) {
  if (!e.value.IsMap()) {
    out.add(e.line, "'store' must be a map with fsync, retention, "
                    "retention_check, max_pending_bytes, publish_timeout");
    return;
  }
  entry fsync{"fsync"}, retention{"retention"},
    retention_check{"retention_check"}, max_pending{"max_pending_bytes"},
    publish_timeout{"publish_timeout"};
  constexpr std::string_view ctx = "store: ";
  detail::read_map(
    e.value, ctx,
    {&fsync, &retention, &retention_check, &max_pending, &publish_timeout},
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
  read_positive(max_pending, ctx, "bytes", out, cfg.max_pending_bytes);
  if (max_pending && cfg.max_pending_bytes < min_max_pending_bytes)
    out.add(max_pending.line,
            fmt::format("{}'max_pending_bytes' must be at least {} bytes, "
                        "not {}: it bounds the events queued for the disk; "
                        "use a few MiB or more (default 64 MiB)",
                        ctx, min_max_pending_bytes, cfg.max_pending_bytes));
  read_duration(publish_timeout, out, cfg.publish_timeout, ctx, true);
}

void read_consumers(const entry& e, problems& out,
                    std::vector<consumer_config>& consumers,
                    config_origin& origin) {
  if (!e.value.IsMap()) {
    out.add(e.line, "'consumers' must be a map from consumer name to "
                    "{subscribe: [patterns]}");
    return;
  }
  detail::for_each_named(
    e.value, "", "consumer", out,
    [&](const std::string& name, int line, const YAML::Node& node) {
      auto ctx = fmt::format("consumer '{}': ", name);
      if (auto err = validate_service_name(name, "consumer")) {
        out.add(line, message_of(err));
        return;
      }
      if (!node.IsMap()) {
        out.add(line, ctx
                        + "must be a map like {subscribe: [user.account."
                          "created]}");
        return;
      }
      entry subscribe{"subscribe"};
      consumer_keys keys;
      detail::read_map(node, ctx,
                       {&subscribe, &keys.shards, &keys.entity_buffer,
                        &keys.retry, &keys.dead_letter, &keys.alert,
                        &keys.concurrency, &keys.handler_timeout,
                        &keys.restarts, &keys.stall_after, &keys.partitions},
                       out);
      consumer_config consumer;
      consumer.name = name;
      read_consumer_policy(ctx, keys, out, consumer);
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
      for (const auto& item : subscribe.value) {
        auto text = item.IsScalar() ? item.Scalar() : std::string{};
        if (auto p = pattern::parse(text)) {
          origin.settings.push_back(
            {fmt::format("consumers.{}.subscribe", name), text,
             detail::line_of(item)});
          consumer.subscribe.push_back(std::move(text));
        } else
          out.add(detail::line_of(item), ctx + message_of(p.error()));
      }
      consumers.push_back(std::move(consumer));
    });
}

void read_test_hooks(const entry& e, problems& out, test_hooks_config& cfg) {
  cfg.enabled = true;
  if (e.value.IsNull())
    return; // `test_hooks:` alone enables the control op
  if (!is_map(e, "", "fail_keys, slow_keys, commit_before_handle", out))
    return;
  entry fail{"fail_keys"}, slow{"slow_keys"}, early{"commit_before_handle"};
  constexpr std::string_view ctx = "test_hooks: ";
  detail::read_map(e.value, ctx, {&fail, &slow, &early}, out);
  if (fail && !fail.value.IsSequence())
    out.add(fail.line, "test_hooks: 'fail_keys' must be a list of entity "
                       "keys, e.g. [00000000-0000-4000-8000-000000000001]");
  else if (fail)
    for (const auto& item : fail.value)
      if (auto key = detail::text_of({"fail_keys", detail::line_of(item), item},
                                     ctx, "an entity key", out))
        cfg.fail_keys.push_back(std::move(*key));
  if (slow
      && is_map(slow, ctx, "entity keys and delays, e.g. {KEY: 200ms}", out))
    for (const auto& kv : slow.value) {
      auto key = kv.first.Scalar();
      entry one{key, detail::line_of(kv.first), kv.second};
      std::chrono::microseconds d{0};
      read_duration(one, out, d, "test_hooks: slow_keys: ");
      if (d.count() > 0)
        cfg.slow_keys.emplace_back(key, d);
    }
  if (early) {
    try {
      cfg.commit_before_handle = early.value.as<bool>();
    } catch (const YAML::Exception&) {
      out.add(early.line, fmt::format("test_hooks: 'commit_before_handle' "
                                      "must be true or false, not {}",
                                      describe(early.value)));
    }
  }
}

void read_cluster(const entry& e, problems& out, config_origin& origin,
                  cluster_config& cfg) {
  if (!is_map(e, "",
              "name, seeds, suspect_after, down_after, probe_interval, "
              "sync_interval, reconnect_window",
              out))
    return;
  entry name{"name"}, seeds{"seeds"}, suspect_after{"suspect_after"},
    down_after{"down_after"}, probe_interval{"probe_interval"},
    sync_interval{"sync_interval"}, reconnect_window{"reconnect_window"};
  constexpr std::string_view ctx = "cluster: ";
  detail::read_map(e.value, ctx,
                   {&name, &seeds, &suspect_after, &down_after, &probe_interval,
                    &sync_interval, &reconnect_window},
                   out);
  if (name)
    if (auto text = detail::text_of(name, ctx, "a name", out)) {
      auto ok = !text->empty() && text->size() <= 64
                && std::all_of(text->begin(), text->end(), [](char c) {
                     return std::isalnum(static_cast<unsigned char>(c))
                            || c == '.' || c == '_' || c == '-';
                   });
      if (ok)
        cfg.name = *text;
      else
        out.add(name.line,
                fmt::format("{}'name': '{}' is not a cluster name; use 1 to "
                            "64 letters, digits, '.', '_' or '-', the same on "
                            "every node of the cluster",
                            ctx, *text));
    }
  if (seeds && !seeds.value.IsSequence())
    out.add(seeds.line, "cluster: 'seeds' must be a list of control "
                        "endpoints of members, e.g. [tcp://10.0.0.1:7001]");
  else if (seeds)
    for (const auto& item : seeds.value)
      if (auto seed = endpoint_of({"seeds", detail::line_of(item), item},
                                  endpoint_use::connect, out)) {
        origin.settings.push_back(
          {"cluster.seeds", *seed, detail::line_of(item)});
        cfg.seeds.push_back(std::move(*seed));
      }
  read_duration(suspect_after, out, cfg.suspect_after, ctx);
  read_duration(down_after, out, cfg.down_after, ctx);
  read_duration(probe_interval, out, cfg.probe_interval, ctx);
  read_duration(sync_interval, out, cfg.sync_interval, ctx);
  read_duration(reconnect_window, out, cfg.reconnect_window, ctx);
  if (cfg.down_after <= cfg.suspect_after)
    out.add(down_after ? down_after.line : e.line,
            fmt::format("{}'down_after' ({}) must be more than "
                        "'suspect_after' ({}): a member is suspected before "
                        "it is taken down",
                        ctx, format_duration(cfg.down_after),
                        format_duration(cfg.suspect_after)));
  if (cfg.probe_interval >= cfg.suspect_after)
    out.add(probe_interval ? probe_interval.line : e.line,
            fmt::format("{}'probe_interval' ({}) must be less than "
                        "'suspect_after' ({}): a member is pinged several "
                        "times before it is suspected",
                        ctx, format_duration(cfg.probe_interval),
                        format_duration(cfg.suspect_after)));
}

void read_groups(const entry& e, problems& out, groups_config& cfg) {
  if (!is_map(e, "", "lease_ttl, lease_margin, rejoin_grace, dead_letter_quota",
              out))
    return;
  entry ttl{"lease_ttl"}, margin{"lease_margin"}, grace{"rejoin_grace"},
    quota{"dead_letter_quota"};
  constexpr std::string_view ctx = "groups: ";
  detail::read_map(e.value, ctx, {&ttl, &margin, &grace, &quota}, out);
  read_positive(quota, ctx, "bytes", out, cfg.dead_letter_quota);
  read_duration(ttl, out, cfg.lease_ttl, ctx);
  read_duration(margin, out, cfg.lease_margin, ctx);
  read_duration(grace, out, cfg.rejoin_grace, ctx);
  using namespace std::chrono_literals;
  if (cfg.lease_ttl < 1s || cfg.lease_ttl > 10min)
    out.add(ttl ? ttl.line : e.line,
            fmt::format("{}'lease_ttl' must be from 1s to 10m, not {}", ctx,
                        format_duration(cfg.lease_ttl)));
  else if (cfg.lease_margin <= 0us || cfg.lease_margin * 2 >= cfg.lease_ttl)
    out.add(margin ? margin.line : e.line,
            fmt::format("{}'lease_margin' ({}) must be positive and less "
                        "than half of 'lease_ttl' ({}): a member stops "
                        "that long before its lease can expire",
                        ctx, format_duration(cfg.lease_margin),
                        format_duration(cfg.lease_ttl)));
  if (cfg.rejoin_grace < 0us)
    out.add(grace.line,
            fmt::format("{}'rejoin_grace' must not be negative", ctx));
}

void read_log_level(const entry& e, std::string_view context, problems& out,
                    node_config& cfg) {
  if (!e)
    return;
  auto levels = fmt::format("one of {}", fmt::join(log_levels, ", "));
  auto level = detail::text_of(e, context, levels, out);
  if (level
      && std::find(log_levels.begin(), log_levels.end(), *level)
           != log_levels.end())
    cfg.log_level = *level;
  else if (level)
    out.add(e.line, fmt::format("{}'{}': '{}' is not a level; use {}", context,
                                e.key, *level, levels));
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
    control{"control"}, store{"store"}, log{"log"}, metrics{"metrics"},
    record{"record"}, test_hooks{"test_hooks"}, cluster{"cluster"},
    groups{"groups"};
  detail::read_map(root, "",
                   {&node, &service, &bind, &advertise, &peers, &catalog,
                    &log_level, &transport, &consumers, &data_dir, &control,
                    &store, &log, &metrics, &record, &test_hooks, &cluster,
                    &groups},
                   out);
  auto top = detail::line_of(root);
  if (detail::require(node, top, "", "the node's name, e.g. node: email-node",
                      out))
    cfg.name = detail::text_of(node, "", "a name", out).value_or("");
  cfg.service = service
                  ? detail::text_of(service, "", "a name", out).value_or("")
                  : cfg.name;
  // Records where a setting the node uses only at start was read.
  auto remember = [&](std::string_view key, const std::string& value,
                      int line) {
    cfg.origin.settings.push_back({std::string{key}, value, line});
  };
  if (bind)
    if (auto ep = endpoint_of(bind, endpoint_use::bind, out)) {
      cfg.bind = *ep;
      remember("bind", *ep, bind.line);
    }
  if (advertise)
    if (auto ep = endpoint_of(advertise, endpoint_use::connect, out)) {
      cfg.advertise = *ep;
      remember("advertise", *ep, advertise.line);
    }
  if (peers && !peers.value.IsSequence())
    out.add(peers.line, "'peers' must be a list of endpoints, e.g. "
                        "[tcp://127.0.0.1:5600]");
  else if (peers)
    for (const auto& item : peers.value)
      if (auto peer = endpoint_of({"peers", detail::line_of(item), item},
                                  endpoint_use::connect, out)) {
        remember("peers", *peer, detail::line_of(item));
        cfg.peers.push_back(std::move(*peer));
      }
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
      remember("catalog", cfg.catalog, catalog.line);
    }
  read_log_level(log_level, "", out, cfg);
  if (log && is_map(log, "", "level, format", out)) {
    entry level{"level"}, format{"format"};
    detail::read_map(log.value, "log: ", {&level, &format}, out);
    read_log_level(level, "log: ", out, cfg);
    if (auto text = format
                      ? detail::text_of(format, "log: ", "text or json", out)
                      : std::nullopt) {
      if (*text == "text" || *text == "json")
        cfg.log_format = *text;
      else
        out.add(format.line, fmt::format("log: 'format': '{}' is not a log "
                                         "format; use text or json",
                                         *text));
    }
  }
  if (metrics && is_map(metrics, "", "listen", out)) {
    entry listen{"listen"};
    detail::read_map(metrics.value, "metrics: ", {&listen}, out);
    if (detail::require(listen, metrics.line, "metrics: ",
                        "HOST:PORT to serve /metrics on, e.g. "
                        "127.0.0.1:9464",
                        out))
      if (auto text = detail::text_of(listen, "metrics: ", "HOST:PORT", out)) {
        cfg.metrics_listen = *text;
        remember("metrics.listen", *text, listen.line);
      }
  }
  if (data_dir)
    if (auto dir = detail::text_of(data_dir, "", "a path", out)) {
      cfg.data_dir = *dir;
      remember("data_dir", *dir, data_dir.line);
    }
  if (control)
    if (auto ep = endpoint_of(control, endpoint_use::bind, out)) {
      cfg.control = *ep;
      remember("control", *ep, control.line);
    }
  if (cluster)
    read_cluster(cluster, out, cfg.origin, cfg.cluster);
  if (groups)
    read_groups(groups, out, cfg.groups);
  if (store)
    read_store(store, out, cfg.store);
  if (transport)
    read_transport(transport, out, cfg.transport);
  if (consumers)
    read_consumers(consumers, out, cfg.consumers, cfg.origin);
  if (record)
    cfg.record =
      detail::text_of(record, "", "the path of the history file", out)
        .value_or("");
  if (test_hooks)
    read_test_hooks(test_hooks, out, cfg.test_hooks);
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
  if (ok)
    for (auto& [name, micros] : duration_units)
      if (unit == name)
        return microseconds{static_cast<int64_t>(n) * micros};
  return make_error(errc::invalid_config,
                    fmt::format("'{}' is not a duration; use a number and a "
                                "unit: d, h, m, s, ms or us (e.g. 7d, 500ms)",
                                text));
}

std::chrono::microseconds retry_policy::delay(int next, double unit) const {
  // initial * 2^(next-2), without overflow: past 2^40 the cap rules anyway.
  auto doublings = std::clamp(next - 2, 0, 40);
  auto base = static_cast<double>(initial.count())
              * static_cast<double>(uint64_t{1} << doublings);
  auto spread = 1.0 + jitter * (2.0 * unit - 1.0);
  auto micros = std::min(base * spread, static_cast<double>(max.count()));
  return std::chrono::microseconds{static_cast<int64_t>(micros)};
}

const retry_policy& consumer_config::retry_for(std::string_view type) const {
  for (auto& [name, policy] : retry_by_type)
    if (name == type)
      return policy;
  return retry;
}

std::string format_duration(std::chrono::microseconds d) {
  auto n = d.count();
  for (auto& [name, micros] : duration_units)
    if (n % micros == 0 && (n != 0 || micros == 1))
      return fmt::format("{}{}", n / micros, name);
  return fmt::format("{}us", n);
}

std::string config_origin::place(std::string_view key,
                                 std::string_view value) const {
  if (file.empty())
    return {};
  for (auto& s : settings)
    if (s.key == key && s.value == value)
      return fmt::format("{}:{}: ", file, s.line);
  return fmt::format("{}: ", file);
}

caf::error config_origin::locate(std::string_view key, std::string_view value,
                                 const caf::error& err) const {
  auto code = err.category() == error_category ? static_cast<errc>(err.code())
                                               : errc::invalid_config;
  auto message = message_of(err);
  // A message that starts with the key already names it.
  bool named = message.starts_with(key) && message.size() > key.size()
               && (message[key.size()] == ' ' || message[key.size()] == ':');
  return make_error(
    code, named ? place(key, value) + message
                : fmt::format("{}{}: {}", place(key, value), key, message));
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
  cfg.origin.file = source_name;
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
