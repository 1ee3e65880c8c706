#pragma once

/// Metrics of a node in Prometheus' text format, and the HTTP endpoint that
/// serves them.
///
/// The pieces, each usable alone:
///
/// - `histogram` (herald/core/histogram.hpp) counts latencies on the hot
///   path; a scrape merges snapshots.
/// - `text_writer` renders counters, gauges and histograms in the text
///   exposition format 0.0.4, one `# HELP`/`# TYPE` pair per family however
///   many label sets it has, escaping as the format requires.
/// - `http_server` answers `GET /metrics` and `GET /healthz` on its own
///   thread, calling back into the node for the text and the health.
///
/// ```cpp
/// metrics::text_writer w;
/// auto& handled = w.family("herald_events_handled_total",
///                          "Events handled by a consumer.",
///                          metrics::metric_type::counter);
/// handled.sample({{"consumer", "EmailService"},
///                 {"type", "user.account.created"}}, 42);
/// w.histogram("herald_handler_duration_seconds", "Handler run time.",
///             {{"consumer", "EmailService"}}, merged_snapshot);
/// std::string text = w.str();
/// ```
///
/// Why a hand-written writer rather than a client library: Debian ships no
/// Prometheus client for C++, and the node already owns its counters (in
/// its actors and shards); it only needs to render them on a scrape.
///
/// This header is private to the runtime; it keeps the HTTP library out of
/// its interface.

#include <atomic>
#include <concepts>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "herald/core/histogram.hpp"

namespace herald::metrics {

using herald::histogram;
using herald::histogram_snapshot;

// -- text exposition format --------------------------------------------------

/// The metric types a family can have.
enum class metric_type {
  /// A value that only goes up (restarts at 0); named `*_total`.
  counter,
  /// A value that goes up and down.
  gauge,
  /// Bucketed observations: `_bucket{le=...}`, `_sum`, `_count`.
  histogram,
};

/// Label names and values of one sample, in the order they are written.
using label_set = std::vector<std::pair<std::string, std::string>>;

/// Formats `value` as the text format expects a sample value: integers in
/// full without exponent ("42", "100000"), other numbers in their shortest
/// exact form ("0.0001", "2.5e-05"), and "+Inf", "-Inf", "NaN".
std::string format_value(double value);

/// One metric family of a `text_writer`: a name, a help text, a type, and
/// the samples written so far. Obtained from `text_writer::family`.
///
/// Thread safety: none; use a writer and its families from one thread.
class family {
public:
  /// Adds the sample `value` with `labels` to a counter or gauge family.
  /// REQUIRES: the family is not a histogram; label names match
  /// `[a-zA-Z_][a-zA-Z0-9_]*` and do not start with `__`; no label name twice;
  /// no other sample of this family has the same labels. Throws
  /// `std::invalid_argument` otherwise, writing nothing.
  void sample(const label_set& labels, double value);

  /// As above, for an integer value, written exactly.
  template <std::integral Int> void sample(const label_set& labels, Int value) {
    add_scalar(labels, std::to_string(value));
  }

  /// Adds the histogram `h` with `labels` to a histogram family: one
  /// `_bucket` line per bound and one for `+Inf`, then `_sum` and `_count`.
  /// REQUIRES: the family is a histogram; the labels as above, without `le`.
  void sample(const label_set& labels, const histogram_snapshot& h);

  /// The family's name.
  [[nodiscard]] const std::string& name() const noexcept {
    return name_;
  }

  /// The family's type.
  [[nodiscard]] metric_type type() const noexcept {
    return type_;
  }

private:
  friend class text_writer;

  family(std::string name, std::string help, metric_type type);

  void add_scalar(const label_set& labels, const std::string& value);

  // Renders `{a="x",b="y"}` (empty without labels) after checking the
  // names; throws on a duplicate label set.
  std::string label_block(const label_set& labels);

  std::string name_;
  std::string help_;
  metric_type type_;
  std::string lines_;
  std::set<std::string> seen_;
};

/// Builds a scrape in the Prometheus text exposition format 0.0.4.
///
/// Families come out in the order they were first asked for, each with
/// its `# HELP` and `# TYPE` lines once, then all its samples.
///
/// Thread safety: none; build one writer per scrape.
class text_writer {
public:
  text_writer() = default;
  text_writer(text_writer&&) noexcept = default;
  text_writer& operator=(text_writer&&) noexcept = default;
  text_writer(const text_writer&) = delete;
  text_writer& operator=(const text_writer&) = delete;
  ~text_writer() = default;

  /// The family `name`, created on first use. The reference stays valid as
  /// long as the writer. Asking again for a name returns the same family.
  /// REQUIRES: `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters end in
  /// `_total`; a name asked for again has the same type. Throws
  /// `std::invalid_argument` otherwise.
  metrics::family& family(std::string_view name, std::string_view help,
                          metric_type type);

  /// Shorthand for `family(name, help, metric_type::counter)
  /// .sample(labels, value)`.
  void counter(std::string_view name, std::string_view help,
               const label_set& labels, uint64_t value);

  /// Shorthand for `family(name, help, metric_type::gauge)
  /// .sample(labels, value)`.
  void gauge(std::string_view name, std::string_view help,
             const label_set& labels, double value);

  /// Shorthand for `family(name, help, metric_type::histogram)
  /// .sample(labels, h)`.
  void histogram(std::string_view name, std::string_view help,
                 const label_set& labels, const histogram_snapshot& h);

  /// The exposition text so far; every line ends in `\n`.
  [[nodiscard]] std::string str() const;

private:
  // A deque keeps references to families valid as more are added.
  std::deque<metrics::family> families_;
};

// -- HTTP endpoint -----------------------------------------------------------

/// Serves `GET /metrics` and `GET /healthz` over HTTP/1.1 on its own
/// threads; every other path is 404.
///
/// - `/metrics`: 200 with the text of the `metrics` callback, Content-Type
///   `text/plain; version=0.0.4; charset=utf-8`.
/// - `/healthz`: 200 `ok\n` when the `health` callback says healthy, 503
///   with its reason otherwise.
/// - A callback that throws gives 500 with the exception's message.
///
/// Each callback is called one call at a time (never concurrently with
/// itself), on one of the server's threads; the two may run concurrently
/// with each other. Connections are not kept alive: scrapes are seconds
/// apart, and an idle connection would hold a thread a health probe needs.
///
/// Thread safety: every member is safe to call from any thread.
class http_server {
public:
  /// Returns the text of a scrape.
  using metrics_fn = std::function<std::string()>;
  /// Returns whether the node is healthy and, if not, why.
  using health_fn = std::function<std::pair<bool, std::string>()>;

  /// Binds to `listen` ("HOST:PORT"; "[v6addr]:PORT" for IPv6; port 0 picks
  /// a free one, see `port()`) and starts serving. When this returns, the
  /// port is bound and connections are accepted.
  /// Fails with `errc::invalid_config` when `listen` is malformed, its host
  /// is not an address of this machine, or the port cannot be bound (e.g.
  /// another process uses it); with `errc::io_error` when no thread can be
  /// started.
  static caf::expected<std::unique_ptr<http_server>>
  start(std::string listen, metrics_fn metrics, health_fn health);

  /// Stops, as `stop()`.
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// The bound port (the chosen one if `listen` asked for port 0).
  [[nodiscard]] uint16_t port() const noexcept;

  /// Closes the port and waits for the requests in progress to finish.
  /// Idempotent.
  void stop();

private:
  struct impl;

  explicit http_server(std::unique_ptr<impl> state);

  std::unique_ptr<impl> impl_;
};

} // namespace herald::metrics
