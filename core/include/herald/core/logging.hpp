#pragma once

/// A node's log: one line per record on stderr (or any spdlog sink), as
/// text for people or as JSON for log collectors, with structured fields.
///
/// ```cpp
/// auto log = herald::make_logger("email-node", herald::log_format::json,
///                                spdlog::level::info);
/// log->info("started: {} consumers", 2);
/// herald::log_fields(*log, spdlog::level::err, "handler failed",
///                    {{"consumer", "EmailService"}, {"attempt", 2},
///                     {"error", "boom: bad thing"}});
/// ```
///
/// Text (the layout the node always had; time in local time; the second
/// record is one line):
///
/// ```text
/// 2026-03-01T10:00:00.123456 info node=email-node started: 2 consumers
/// 2026-03-01T10:00:00.123789 error node=email-node handler failed
///   consumer=EmailService attempt=2 error="boom: bad thing"
/// ```
///
/// JSON, one object per line (time in UTC; level names as in text:
/// trace, debug, info, warning, error, critical):
///
/// ```text
/// {"time":"2026-03-01T09:00:00.123456Z","level":"info","node":"email-node",
///  "msg":"started: 2 consumers"}
/// {"time":"2026-03-01T09:00:00.123789Z","level":"error","node":"email-node",
///  "msg":"handler failed","consumer":"EmailService","attempt":2,
///  "error":"boom: bad thing"}
/// ```
///
/// Why the fields are not marked inside the message text (say, behind a
/// marker byte): a message may hold anything a user sent (an exception
/// text, a payload), and nothing in it may be able to pose as fields.
/// `log_fields` renders the JSON fields after the message in the record's
/// payload and marks the record through its source location, whose file name
/// points at a private constant; the JSON formatter splices fields only from
/// records so marked. Every line of a JSON logger is therefore one valid JSON
/// object, whatever the messages hold (invalid UTF-8 becomes U+FFFD). The mark
/// is copied with the record, so backtraces and asynchronous sinks keep
/// working.
///
/// Thread safety: the loggers `make_logger` returns may be used from any
/// thread (the default sink is `stderr_sink_mt`; pass a `_mt` sink too).
/// `log_fields` is thread-safe for such loggers.

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include <caf/expected.hpp>
#include <spdlog/common.h>
#include <spdlog/logger.h>

namespace herald {

/// How a node writes its log lines.
enum class log_format {
  /// `<local time> <level> node=<name> <message> key=value...`.
  text,
  /// One JSON object per line: time (UTC), level, node, msg, fields.
  json,
};

/// Parses "text" or "json". Fails with `errc::invalid_config` naming the
/// text otherwise.
caf::expected<log_format> parse_log_format(std::string_view text);

/// Returns "text" or "json".
const char* to_string(log_format format);

/// Returns a logger named `name` (the node's name) that writes records of
/// `level` and above to `sink` in `format`. Default sink: stderr, thread-safe
/// (`stderr_sink_mt`). The logger is not registered with spdlog; the caller
/// owns it. Changing its pattern or formatter afterwards is not supported:
/// in JSON, `log_fields` would then print raw fields.
std::shared_ptr<spdlog::logger> make_logger(const std::string& name,
                                            log_format format,
                                            spdlog::level::level_enum level,
                                            spdlog::sink_ptr sink = nullptr);

/// One field of a structured log line: a key and a string, integer,
/// boolean or floating-point value. Refers to its key and string value
/// without copying: build fields in the call to `log_fields`.
///
/// REQUIRES: `key` is not empty and holds no spaces, quotes or '=' (keys are
/// names in the code, not data). In JSON, a key equal to one of the line's
/// own keys (time, level, node, msg) is written with a leading '_'.
struct log_field {
  /// The value types a field may hold; numbers stay numbers in JSON.
  using value_type =
    std::variant<std::string_view, int64_t, uint64_t, bool, double>;

  /// The field's name.
  std::string_view key;
  /// The field's value.
  value_type value;

  /// A string field.
  log_field(std::string_view k, std::string_view v) : key(k), value(v) {}
  /// A string field (without this, a literal would convert to bool).
  log_field(std::string_view k, const char* v)
      : key(k), value(std::string_view{v}) {}
  /// A string field.
  log_field(std::string_view k, const std::string& v)
      : key(k), value(std::string_view{v}) {}
  /// An integer field.
  template <std::integral T>
  requires(!std::same_as<T, bool>) log_field(std::string_view k, T v)
      : key(k), value(widen(v)) {}
  /// A boolean field: `true` or `false`.
  template <std::same_as<bool> T>
  log_field(std::string_view k, T v) : key(k), value(v) {}
  /// A floating-point field; NaN and infinities are `null` in JSON.
  template <std::floating_point T>
  log_field(std::string_view k, T v) : key(k), value(static_cast<double>(v)) {}

private:
  template <std::integral T> static value_type widen(T v) {
    if constexpr (std::is_signed_v<T>)
      return static_cast<int64_t>(v);
    else
      return static_cast<uint64_t>(v);
  }
};

/// Logs `message` with `fields` at `level` through `log`. In text, the
/// line ends in `message key=value key="quoted value"`: a value that is
/// empty or holds spaces, quotes, '=', '\' or control characters is quoted
/// and escaped as a JSON string. In JSON, the fields follow `msg` as keys
/// of the line's object, numbers and booleans unquoted. A logger not made
/// by `make_logger` gets the text form. Never throws: a line that cannot
/// be built (out of memory) is lost, and sink failures go to the logger's
/// error handler, like those of any spdlog call.
void log_fields(spdlog::logger& log, spdlog::level::level_enum level,
                std::string_view message,
                std::initializer_list<log_field> fields) noexcept;

} // namespace herald
