#include "herald/core/logging.hpp"

#include <chrono>
#include <cmath>
#include <ctime>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "herald/core/errc.hpp"

namespace herald {

namespace {

constexpr const char* text_pattern = "%Y-%m-%dT%H:%M:%S.%f %^%l%$ node=%n %v";

// The file name of the source location that marks a record of
// `log_fields` in JSON; compared by address, so no message can forge it.
// The location's line is the length of the message; the JSON fields
// (`,"key":value...`) follow the message in the payload.
constexpr char fields_mark[] = "herald-log-fields";

// The keys of a JSON line itself; fields so named get a leading '_'.
bool is_reserved_key(std::string_view key) {
  return key == "time" || key == "level" || key == "node" || key == "msg";
}

// Length of the valid UTF-8 sequence starting at `s[i]`, or 0 if none
// does (stray continuation byte, overlong form, surrogate, beyond
// U+10FFFF, or cut short).
size_t utf8_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) {
    return static_cast<unsigned char>(s[k]);
  };
  auto c = byte(i);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF; // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size() || byte(i + 1) < lo || byte(i + 1) > hi)
    return 0;
  for (size_t k = 2; k < len; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF)
      return 0;
  return len;
}

// Appends `s` to `out` as a JSON string literal, quotes included: '"',
// '\' and control characters escaped, invalid UTF-8 replaced by U+FFFD.
// `Out` is std::string or spdlog's memory buffer.
template <class Out> void append_json_string(Out& out, std::string_view s) {
  auto put = [&](std::string_view text) {
    out.append(text.data(), text.data() + text.size());
  };
  out.push_back('"');
  size_t run = 0; // start of the bytes not yet copied
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (auto len = utf8_length(s, i); len > 0) {
        i += len;
        continue;
      }
    }
    put(s.substr(run, i - run));
    switch (c) {
    case '"':
      put("\\\"");
      break;
    case '\\':
      put("\\\\");
      break;
    case '\n':
      put("\\n");
      break;
    case '\r':
      put("\\r");
      break;
    case '\t':
      put("\\t");
      break;
    case '\b':
      put("\\b");
      break;
    case '\f':
      put("\\f");
      break;
    default:
      if (c < 0x20)
        put(fmt::format("\\u{:04x}", c));
      else
        put("\\ufffd");
    }
    run = ++i;
  }
  put(s.substr(run));
  out.push_back('"');
}

// Whether a text value must be quoted to be read back as one value.
bool needs_quotes(std::string_view v) {
  if (v.empty())
    return true;
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\')
      return true;
  }
  return false;
}

void append_text_value(std::string& out, const log_field::value_type& value) {
  std::visit(
    [&](const auto& v) {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string_view>) {
        if (needs_quotes(v))
          append_json_string(out, v);
        else
          out.append(v);
      } else if constexpr (std::is_same_v<T, bool>) {
        out.append(v ? "true" : "false");
      } else {
        fmt::format_to(std::back_inserter(out), "{}", v);
      }
    },
    value);
}

void append_json_value(std::string& out, const log_field::value_type& value) {
  std::visit(
    [&](const auto& v) {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string_view>) {
        append_json_string(out, v);
      } else if constexpr (std::is_same_v<T, bool>) {
        out.append(v ? "true" : "false");
      } else if constexpr (std::is_same_v<T, double>) {
        if (std::isfinite(v))
          fmt::format_to(std::back_inserter(out), "{}", v);
        else
          out.append("null");
      } else {
        fmt::format_to(std::back_inserter(out), "{}", v);
      }
    },
    value);
}

// Formats every record as one JSON object and a newline. Not thread-safe:
// a sink calls its formatter under its own lock (`_mt`) or from one thread.
class json_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    auto put = [&](std::string_view text) {
      dest.append(text.data(), text.data() + text.size());
    };
    std::string_view payload{msg.payload.data(), msg.payload.size()};
    std::string_view fields;
    if (msg.source.filename == fields_mark && msg.source.line >= 0
        && static_cast<size_t>(msg.source.line) <= payload.size()) {
      fields = payload.substr(static_cast<size_t>(msg.source.line));
      payload = payload.substr(0, static_cast<size_t>(msg.source.line));
    }
    put(R"({"time":")");
    append_time(msg.time, dest);
    put(R"(","level":)");
    auto level = spdlog::level::to_string_view(msg.level);
    append_json_string(dest, std::string_view{level.data(), level.size()});
    put(R"(,"node":)");
    append_json_string(
      dest, std::string_view{msg.logger_name.data(), msg.logger_name.size()});
    put(R"(,"msg":)");
    append_json_string(dest, payload);
    put(fields);
    put("}\n");
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }

private:
  // RFC 3339 in UTC with microseconds: 2026-03-01T09:00:00.123456Z. The
  // part up to the seconds is cached: most lines share it with the last.
  void append_time(spdlog::log_clock::time_point t,
                   spdlog::memory_buf_t& dest) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                t.time_since_epoch())
                .count();
    auto secs = us / 1'000'000;
    auto frac = us % 1'000'000;
    if (frac < 0) {
      frac += 1'000'000;
      --secs;
    }
    if (secs != cached_secs_ || cached_.empty()) {
      std::time_t tt = static_cast<std::time_t>(secs);
      std::tm tm{};
      ::gmtime_r(&tt, &tm);
      cached_ = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                            tm.tm_hour, tm.tm_min, tm.tm_sec);
      cached_secs_ = secs;
    }
    dest.append(cached_.data(), cached_.data() + cached_.size());
    fmt::format_to(std::back_inserter(dest), ".{:06}Z", frac);
  }

  int64_t cached_secs_ = 0;
  std::string cached_;
};

// A logger that knows its format, so that `log_fields` renders the fields
// for it. Its sinks' formatters do the rest.
class herald_logger final : public spdlog::logger {
public:
  herald_logger(std::string name, spdlog::sink_ptr sink, log_format format)
      : spdlog::logger(std::move(name), std::move(sink)), format_(format) {}

  log_format format() const noexcept {
    return format_;
  }

  std::shared_ptr<spdlog::logger> clone(std::string name) override {
    auto copy = std::make_shared<herald_logger>(*this);
    copy->name_ = std::move(name);
    return copy;
  }

private:
  log_format format_;
};

} // namespace

caf::expected<log_format> parse_log_format(std::string_view text) {
  if (text == "text")
    return log_format::text;
  if (text == "json")
    return log_format::json;
  return make_error(errc::invalid_config,
                    fmt::format("unknown log format '{}'; use 'text' or "
                                "'json'",
                                text));
}

const char* to_string(log_format format) {
  return format == log_format::json ? "json" : "text";
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& name,
                                            log_format format,
                                            spdlog::level::level_enum level,
                                            spdlog::sink_ptr sink) {
  if (!sink)
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto log = std::make_shared<herald_logger>(name, std::move(sink), format);
  if (format == log_format::json)
    log->set_formatter(std::make_unique<json_formatter>());
  else
    log->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      text_pattern, spdlog::pattern_time_type::local));
  log->set_level(level);
  return log;
}

void log_fields(spdlog::logger& log, spdlog::level::level_enum level,
                std::string_view message,
                std::initializer_list<log_field> fields) noexcept {
  if (!log.should_log(level))
    return;
  try {
    auto* own = dynamic_cast<herald_logger*>(&log);
    bool json = own != nullptr && own->format() == log_format::json;
    // The mark carries the message's length in an int.
    if (json && message.size() > std::numeric_limits<int>::max())
      message = message.substr(0, std::numeric_limits<int>::max());
    std::string payload{message};
    for (auto& f : fields) {
      if (json) {
        payload.push_back(',');
        if (is_reserved_key(f.key))
          append_json_string(payload, "_" + std::string{f.key});
        else
          append_json_string(payload, f.key);
        payload.push_back(':');
        append_json_value(payload, f.value);
      } else {
        payload.push_back(' ');
        payload.append(f.key);
        payload.push_back('=');
        append_text_value(payload, f.value);
      }
    }
    spdlog::source_loc loc;
    if (json)
      loc = {fields_mark, static_cast<int>(message.size()), nullptr};
    log.log(loc, level, spdlog::string_view_t{payload.data(), payload.size()});
  } catch (...) {
    // Logging never throws into the caller; a line that cannot be built
    // (out of memory) is lost. spdlog handles failures of its own sinks.
  }
}

} // namespace herald
