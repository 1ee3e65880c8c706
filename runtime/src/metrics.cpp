#include "metrics.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "herald/core/errc.hpp"

namespace herald::metrics {

// -- text exposition format --------------------------------------------------

namespace {

bool is_metric_name(std::string_view name) {
  if (name.empty())
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
              || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

bool is_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__"))
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
              || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

// HELP text: backslash and line feed are escaped.
std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Label values: backslash, double quote and line feed are escaped.
std::string escape_label_value(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

const char* type_name(metric_type type) {
  switch (type) {
  case metric_type::counter:
    return "counter";
  case metric_type::gauge:
    return "gauge";
  case metric_type::histogram:
    return "histogram";
  }
  return "untyped";
}

} // namespace

std::string format_value(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "+Inf" : "-Inf";
  if (value == 0)
    return "0"; // -0 too
  // Like Go's strconv.FormatFloat(v, 'g', -1, 64), which Prometheus' own
  // clients use: the shortest digits that read back exactly, in plain
  // decimals unless the exponent is below -4 or 21 and above.
  char buf[64];
  auto sci =
    std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string_view text{buf, static_cast<size_t>(sci.ptr - buf)};
  auto e = text.find('e');
  auto digits = text.substr(e + 1);
  if (!digits.empty() && digits.front() == '+')
    digits.remove_prefix(1);
  int exponent = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), exponent);
  if (exponent < -4 || exponent >= 21)
    return std::string{text};
  auto fixed =
    std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed);
  return std::string{buf, fixed.ptr};
}

family::family(std::string name, std::string help, metric_type type)
    : name_(std::move(name)), help_(std::move(help)), type_(type) {}

std::string family::label_block(const label_set& labels) {
  std::vector<std::string_view> names;
  names.reserve(labels.size());
  for (const auto& [label, value] : labels) {
    if (!is_label_name(label))
      throw std::invalid_argument(fmt::format(
        "metric '{}': label name '{}' must match [a-zA-Z_][a-zA-Z0-9_]* and "
        "not start with '__'",
        name_, label));
    if (type_ == metric_type::histogram && label == "le")
      throw std::invalid_argument(fmt::format(
        "metric '{}': label 'le' is reserved for the histogram's buckets; "
        "rename it",
        name_));
    names.push_back(label);
  }
  std::sort(names.begin(), names.end());
  if (auto dup = std::adjacent_find(names.begin(), names.end());
      dup != names.end())
    throw std::invalid_argument(fmt::format(
      "metric '{}': label '{}' is given twice; give each label once", name_,
      *dup));
  std::string block;
  for (const auto& [label, value] : labels) {
    block += block.empty() ? "" : ",";
    block += label;
    block += "=\"";
    block += escape_label_value(value);
    block += '"';
  }
  // The same labels in another order are the same series.
  auto sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (const auto& [label, value] : sorted) {
    key += label;
    key += '\0';
    key += value;
    key += '\0';
  }
  if (!seen_.insert(std::move(key)).second)
    throw std::invalid_argument(fmt::format(
      "metric '{}': a sample with the labels {{{}}} was written already; "
      "write each label set once per scrape",
      name_, block));
  return block;
}

void family::add_scalar(const label_set& labels, const std::string& value) {
  if (type_ == metric_type::histogram)
    throw std::invalid_argument(fmt::format(
      "metric '{}' is a histogram: give it a histogram_snapshot", name_));
  auto block = label_block(labels);
  lines_ += name_;
  if (!block.empty()) {
    lines_ += '{';
    lines_ += block;
    lines_ += '}';
  }
  lines_ += ' ';
  lines_ += value;
  lines_ += '\n';
}

void family::sample(const label_set& labels, double value) {
  add_scalar(labels, format_value(value));
}

void family::sample(const label_set& labels, const histogram_snapshot& h) {
  if (type_ != metric_type::histogram)
    throw std::invalid_argument(
      fmt::format("metric '{}' is a {}: give it a number, not a histogram",
                  name_, type_name(type_)));
  auto block = label_block(labels);
  auto prefix = block.empty() ? std::string{} : block + ",";
  auto braces = block.empty() ? std::string{} : "{" + block + "}";
  std::string out;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    uint64_t n = i < h.cumulative.size() ? h.cumulative[i] : h.count;
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name_, prefix,
                       format_value(h.bounds[i]), n);
  }
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name_, prefix, h.count);
  out += fmt::format("{}_sum{} {}\n", name_, braces, format_value(h.sum));
  out += fmt::format("{}_count{} {}\n", name_, braces, h.count);
  lines_ += out;
}

metrics::family& text_writer::family(std::string_view name,
                                     std::string_view help, metric_type type) {
  for (auto& f : families_) {
    if (f.name() != name)
      continue;
    if (f.type() != type)
      throw std::invalid_argument(
        fmt::format("metric '{}' is a {} already, not a {}: one name, one type",
                    name, type_name(f.type()), type_name(type)));
    return f;
  }
  if (!is_metric_name(name))
    throw std::invalid_argument(fmt::format(
      "metric name '{}' must match [a-zA-Z_:][a-zA-Z0-9_:]*", name));
  if (type == metric_type::counter && !name.ends_with("_total"))
    throw std::invalid_argument(fmt::format(
      "counter '{}' must be named '*_total', e.g. '{}_total'", name, name));
  families_.push_back(
    metrics::family{std::string{name}, std::string{help}, type});
  return families_.back();
}

void text_writer::counter(std::string_view name, std::string_view help,
                          const label_set& labels, uint64_t value) {
  family(name, help, metric_type::counter).sample(labels, value);
}

void text_writer::gauge(std::string_view name, std::string_view help,
                        const label_set& labels, double value) {
  family(name, help, metric_type::gauge).sample(labels, value);
}

void text_writer::histogram(std::string_view name, std::string_view help,
                            const label_set& labels,
                            const histogram_snapshot& h) {
  family(name, help, metric_type::histogram).sample(labels, h);
}

std::string text_writer::str() const {
  std::string out;
  for (const auto& f : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name_,
                       escape_help(f.help_), f.name_, type_name(f.type_));
    out += f.lines_;
  }
  return out;
}

// -- HTTP endpoint -----------------------------------------------------------

namespace {

constexpr const char* exposition_content_type =
  "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* plain_content_type = "text/plain; charset=utf-8";

// Enough for a scrape and a probe at once, and for a slow client or two
// (each holds a thread for at most the read timeout).
constexpr size_t worker_threads = 4;

// httplib's Server closes its socket only from a running listen loop; this
// gives access to it for the one case where the loop never starts.
class server final : public httplib::Server {
public:
  void close_unused_socket() {
    auto sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock != INVALID_SOCKET)
      ::close(sock);
  }
};

// httplib's default sets SO_REUSEPORT, which lets a second node bind the
// same port and steal half of the scrapes. SO_REUSEADDR alone still allows
// a restart while old connections linger in TIME_WAIT. Close-on-exec keeps
// the port from leaking into child processes.
void set_listen_socket_options(socket_t sock) {
  int yes = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  ::fcntl(sock, F_SETFD, FD_CLOEXEC);
}

struct endpoint {
  std::string host;
  int port = 0;
};

caf::error bad_listen(const std::string& listen, std::string_view rule) {
  return make_error(errc::invalid_config,
                    fmt::format("metrics.listen '{}': {}", listen, rule));
}

caf::expected<endpoint> parse_listen(const std::string& listen) {
  endpoint ep;
  std::string_view text{listen};
  std::string_view port_text;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size()
        || text[close + 1] != ':')
      return bad_listen(listen,
                        "expected [IPV6]:PORT with a port 0-65535, e.g. "
                        "[::1]:9100");
    ep.host = std::string{text.substr(1, close - 1)};
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad_listen(listen, "expected HOST:PORT with a port 0-65535, e.g. "
                                "127.0.0.1:9100");
    ep.host = std::string{text.substr(0, colon)};
    if (ep.host.find(':') != std::string::npos)
      return bad_listen(listen,
                        "an IPv6 host goes in brackets, e.g. [::1]:9100");
    port_text = text.substr(colon + 1);
  }
  if (ep.host.empty())
    return bad_listen(listen, "expected HOST:PORT with a host, e.g. "
                              "127.0.0.1:9100 (0.0.0.0 listens on every "
                              "interface)");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port_text.data(),
                                   port_text.data() + port_text.size(), value);
  if (port_text.empty() || port_text.size() > 5 || ec != std::errc{}
      || end != port_text.data() + port_text.size() || value > 65535)
    return bad_listen(listen, "expected HOST:PORT with a port 0-65535 (0 "
                              "picks a free one)");
  ep.port = static_cast<int>(value);
  // httplib cannot tell a host that does not resolve from a busy port;
  // resolving first gives each its own message.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(ep.host.c_str(), nullptr, &hints, &found); rc != 0)
    return bad_listen(
      listen, fmt::format("host '{}' does not resolve ({}); give an address "
                          "of this machine, e.g. 127.0.0.1",
                          ep.host, ::gai_strerror(rc)));
  ::freeaddrinfo(found);
  return ep;
}

} // namespace

struct http_server::impl {
  server srv;
  std::thread listener;
  // Set once listen_after_bind has returned.
  std::atomic<bool> done{false};
  uint16_t port = 0;
  std::mutex stop_mtx;
  std::mutex metrics_mtx;
  metrics_fn metrics;
  std::mutex health_mtx;
  health_fn health;
};

http_server::http_server(std::unique_ptr<impl> state)
    : impl_(std::move(state)) {}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const noexcept {
  return impl_->port;
}

caf::expected<std::unique_ptr<http_server>>
http_server::start(std::string listen, metrics_fn metrics, health_fn health) {
  auto ep = parse_listen(listen);
  if (!ep)
    return std::move(ep.error());
  auto st = std::make_unique<impl>();
  st->metrics = std::move(metrics);
  st->health = std::move(health);
  auto* raw = st.get();
  auto& srv = st->srv;
  srv.set_socket_options(set_listen_socket_options);
  srv.set_keep_alive_max_count(1);
  srv.new_task_queue = [] {
    return new httplib::ThreadPool(worker_threads);
  };
  srv.Get("/metrics", [raw](const httplib::Request&, httplib::Response& res) {
    try {
      std::string body;
      if (raw->metrics) {
        std::lock_guard<std::mutex> guard{raw->metrics_mtx};
        body = raw->metrics();
      }
      res.set_content(body, exposition_content_type);
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(fmt::format("metrics failed: {}\n", e.what()),
                      plain_content_type);
    } catch (...) {
      res.status = 500;
      res.set_content("metrics failed: unknown exception\n",
                      plain_content_type);
    }
  });
  srv.Get("/healthz", [raw](const httplib::Request&, httplib::Response& res) {
    try {
      std::pair<bool, std::string> verdict{true, {}};
      if (raw->health) {
        std::lock_guard<std::mutex> guard{raw->health_mtx};
        verdict = raw->health();
      }
      if (verdict.first) {
        res.set_content("ok\n", plain_content_type);
        return;
      }
      res.status = 503;
      auto reason = verdict.second.empty() ? "unhealthy" : verdict.second;
      res.set_content(reason + "\n", plain_content_type);
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(fmt::format("health check failed: {}\n", e.what()),
                      plain_content_type);
    } catch (...) {
      res.status = 500;
      res.set_content("health check failed: unknown exception\n",
                      plain_content_type);
    }
  });
  srv.set_error_handler(
    [](const httplib::Request& req, httplib::Response& res) {
      if (res.status == 404 && res.body.empty())
        res.set_content(
          fmt::format("{} not found; try /metrics or /healthz\n", req.path),
          plain_content_type);
    });
  errno = 0;
  int port = ep->port;
  bool bound = false;
  if (port == 0) {
    port = srv.bind_to_any_port(ep->host);
    bound = port > 0;
  } else {
    bound = srv.bind_to_port(ep->host, port);
  }
  if (!bound) {
    int err = errno;
    return bad_listen(
      listen, fmt::format("cannot listen there: {}; choose a free port (0 "
                          "picks one) or another address of this machine",
                          err != 0 ? std::system_category().message(err)
                                   : "bind failed"));
  }
  st->port = static_cast<uint16_t>(port);
  try {
    st->listener = std::thread{[raw] {
      raw->srv.listen_after_bind();
      raw->done = true;
    }};
  } catch (const std::system_error& e) {
    st->srv.close_unused_socket();
    return make_error(errc::io_error,
                      fmt::format("metrics.listen '{}': cannot start the "
                                  "server's thread: {}",
                                  listen, e.what()));
  }
  return std::unique_ptr<http_server>{new http_server{std::move(st)}};
}

void http_server::stop() {
  std::lock_guard<std::mutex> guard{impl_->stop_mtx};
  if (!impl_->listener.joinable())
    return;
  // httplib's stop() acts only once the listen loop runs: wait for it to
  // begin (it does at once) so that a quick stop is not lost.
  while (!impl_->srv.is_running() && !impl_->done)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  if (!impl_->done)
    impl_->srv.stop();
  impl_->listener.join();
}

} // namespace herald::metrics
