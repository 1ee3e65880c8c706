#pragma once

// The rules of the catalog's value types: what is one, and its canonical
// spelling. `docs/events.md` ("Values") documents each rule with examples
// and its source; catalog.cpp applies them to payloads, event.cpp reads
// RFC 3339 times with the same parser.
//
// Every check returns a `verdict`: why the text is not a value of its type
// (naming the part that is wrong), or, when it is one spelled otherwise
// than canonically, the canonical spelling. Pure functions: any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald::detail {

/// What a check found out about one value.
struct verdict {
  /// Why the value is not of its type, naming the part that is wrong
  /// (e.g. "the local part 'a..b' has two dots in a row (RFC 5322
  /// §3.4.1)"); empty when it is.
  std::string problem;
  /// The canonical spelling, when valid and spelled otherwise.
  std::optional<std::string> canonical;

  bool ok() const noexcept {
    return problem.empty();
  }
};

/// A UUID: 8-4-4-4-12 hex digits (RFC 4122 §3), any version; canonical in
/// lower case.
verdict check_uuid(std::string_view text);

/// An email address of the subset herald takes of RFC 5321/5322 (see
/// docs/events.md): ASCII, a dot-atom local part of at most 64 characters,
/// a domain of LDH labels of at most 255 characters, at most 254 in all;
/// canonical with the domain in lower case.
verdict check_email(std::string_view text);

/// Why `text` is not valid UTF-8 (RFC 3629), naming the byte; empty when it
/// is.
std::string check_utf8(std::string_view text);

/// An RFC 3339 time, converted to UTC.
struct utc_time {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0;
  /// 0 to 60; 60 only for a leap second.
  int second = 0;
  /// The fraction's digits without trailing zeros; may be empty.
  std::string fraction;
  /// Seconds since the Unix epoch; a leap second counts as the second
  /// after it (the next day's 00:00:00).
  int64_t epoch_seconds = 0;
};

/// Reads an RFC 3339 date-time (§5.6), `t`/`z` accepted for `T`/`Z`, a
/// leap second only where one was inserted (§5.7, the IERS list); the
/// result is in UTC. On failure says which part is wrong in `why`.
std::optional<utc_time> parse_rfc3339(std::string_view text, std::string& why);

/// `t` as herald's canonical timestamp: `YYYY-MM-DDTHH:MM:SS[.F]Z`, UTC,
/// the fraction without trailing zeros.
std::string canonical_timestamp(const utc_time& t);

/// A timestamp (see `parse_rfc3339`), canonical as `canonical_timestamp`.
verdict check_timestamp(std::string_view text);

} // namespace herald::detail
