#include "values.hpp"

#include <algorithm>
#include <array>
#include <chrono>

#include <fmt/format.h>

namespace herald::detail {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// A character as a message shows it: printable ASCII in quotes, else its
// code.
std::string shown(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7f)
    return fmt::format("'{}'", c);
  return fmt::format("byte 0x{:02x}", u);
}

verdict fail(std::string problem) {
  return {std::move(problem), std::nullopt};
}

// Returns `text` in lower case when that differs from it.
std::optional<std::string> lowered(std::string_view text) {
  if (std::none_of(text.begin(), text.end(), [](char c) {
        return c >= 'A' && c <= 'Z';
      }))
    return std::nullopt;
  std::string out{text};
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

// -- email
// ----------------------------------------------------------------------

// RFC 5322 §3.2.3 atext: what a dot-atom holds besides its dots.
bool is_atext(char c) {
  return is_alpha(c) || is_digit(c)
         || std::string_view{"!#$%&'*+-/=?^_`{|}~"}.find(c)
              != std::string_view::npos;
}

std::string check_local_part(std::string_view local) {
  auto where = [&] {
    return fmt::format("the local part '{}'", local);
  };
  if (local.empty())
    return "nothing comes before the '@'";
  if (local.size() > 64)
    return fmt::format("the local part has {} characters; at most 64 (RFC "
                       "5321 §4.5.3.1.1)",
                       local.size());
  if (local.front() == '.')
    return where() + " starts with a dot (RFC 5322 §3.4.1 dot-atom)";
  if (local.back() == '.')
    return where() + " ends with a dot (RFC 5322 §3.4.1 dot-atom)";
  if (local.find("..") != std::string_view::npos)
    return where() + " has two dots in a row (RFC 5322 §3.4.1 dot-atom)";
  for (size_t i = 0; i < local.size(); ++i)
    if (local[i] != '.' && !is_atext(local[i]))
      return fmt::format("{} holds {} at position {}, which an unquoted "
                         "local part may not (RFC 5322 §3.2.3 atext; "
                         "quoted local parts are not taken)",
                         where(), shown(local[i]), i + 1);
  return {};
}

std::string check_domain(std::string_view domain) {
  if (domain.empty())
    return "nothing comes after the '@'";
  if (domain.size() > 255)
    return fmt::format("the domain has {} characters; at most 255 (RFC 5321 "
                       "§4.5.3.1.2)",
                       domain.size());
  if (domain.front() == '[')
    return "the domain is an address literal; herald takes domain names "
           "only";
  size_t labels = 0;
  for (size_t start = 0; start <= domain.size();) {
    auto end = std::min(domain.find('.', start), domain.size());
    auto label = domain.substr(start, end - start);
    ++labels;
    if (label.empty())
      return fmt::format("the domain '{}' has an empty label (a dot at its "
                         "start or end, or two in a row; RFC 5321 §4.1.2)",
                         domain);
    if (label.size() > 63)
      return fmt::format("the domain label '{}' has {} characters; at most "
                         "63 (RFC 1035 §2.3.4)",
                         label, label.size());
    for (char c : label)
      if (!is_alpha(c) && !is_digit(c) && c != '-')
        return fmt::format("the domain '{}' holds {}; a label holds letters, "
                           "digits and hyphens (RFC 5321 §4.1.2)",
                           domain, shown(c));
    if (label.front() == '-' || label.back() == '-')
      return fmt::format("the domain label '{}' starts or ends with a hyphen "
                         "(RFC 5321 §4.1.2)",
                         label);
    start = end + 1;
  }
  if (labels < 2)
    return fmt::format("the domain '{}' has one label; herald takes names "
                       "with a dot, e.g. example.com",
                       domain);
  return {};
}

// -- RFC 3339
// -------------------------------------------------------------------

// The days at whose end (23:59:60 UTC) a leap second was inserted, from
// IERS Bulletin C (the list RFC 3339 Appendix D points to). None has been
// announced since the one of 2016-12-31.
constexpr std::array<std::array<int, 3>, 27> leap_second_days = {{
  {1972, 6, 30},  {1972, 12, 31}, {1973, 12, 31}, {1974, 12, 31},
  {1975, 12, 31}, {1976, 12, 31}, {1977, 12, 31}, {1978, 12, 31},
  {1979, 12, 31}, {1981, 6, 30},  {1982, 6, 30},  {1983, 6, 30},
  {1985, 6, 30},  {1987, 12, 31}, {1989, 12, 31}, {1990, 12, 31},
  {1992, 6, 30},  {1993, 6, 30},  {1994, 6, 30},  {1995, 12, 31},
  {1997, 6, 30},  {1998, 12, 31}, {2005, 12, 31}, {2008, 12, 31},
  {2012, 6, 30},  {2015, 6, 30},  {2016, 12, 31},
}};

bool had_leap_second(int year, int month, int day) {
  return std::find(leap_second_days.begin(), leap_second_days.end(),
                   std::array<int, 3>{year, month, day})
         != leap_second_days.end();
}

// Reads the `n` digits at `pos` into `out`; false when they are not digits
// (or `s` is too short).
bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!is_digit(s[i]))
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

int days_in(int year, int month) {
  constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : days[month - 1];
}

// A part of the fixed layout `YYYY-MM-DDTHH:MM:SS`: where it starts, how
// many digits, its name, and the separator after it.
struct layout_part {
  size_t pos;
  size_t width;
  const char* name;
  char separator;
};

constexpr std::array<layout_part, 6> layout = {{
  {0, 4, "year", '-'},
  {5, 2, "month", '-'},
  {8, 2, "day", 'T'},
  {11, 2, "hour", ':'},
  {14, 2, "minute", ':'},
  {17, 2, "second", '\0'},
}};

constexpr std::string_view rfc3339_form =
  "YYYY-MM-DDTHH:MM:SS[.F](Z|+HH:MM|-HH:MM), RFC 3339 §5.6";

} // namespace

verdict check_uuid(std::string_view s) {
  constexpr std::string_view form = "8-4-4-4-12 hex digits, RFC 4122 §3";
  if (s.size() != 36)
    return fail(
      fmt::format("it has {} characters, not 36 ({})", s.size(), form));
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash && s[i] != '-')
      return fail(fmt::format("character {} is {}, where a '-' belongs ({})",
                              i + 1, shown(s[i]), form));
    if (!dash && !is_hex(s[i]))
      return fail(fmt::format("character {} is {}, not a hex digit ({})", i + 1,
                              shown(s[i]), form));
  }
  return {{}, lowered(s)};
}

verdict check_email(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80)
      return fail(fmt::format("byte {} is not ASCII; herald takes RFC "
                              "5321/5322 addresses, not internationalized "
                              "ones (RFC 6531)",
                              i + 1));
    if (c <= 0x20 || c == 0x7f)
      return fail(fmt::format("character {} is {} (a space or control "
                              "character)",
                              i + 1, shown(s[i])));
  }
  auto at = s.rfind('@');
  if (at == std::string_view::npos)
    return fail("it has no '@'");
  if (s.find('@') != at)
    return fail("it has more than one '@' (quoted local parts are not "
                "taken)");
  auto local = s.substr(0, at);
  auto domain = s.substr(at + 1);
  if (auto why = check_local_part(local); !why.empty())
    return fail(std::move(why));
  if (auto why = check_domain(domain); !why.empty())
    return fail(std::move(why));
  if (s.size() > 254)
    return fail(fmt::format("it has {} characters; at most 254 (RFC 5321 "
                            "§4.5.3.1.3, less the path's angle brackets)",
                            s.size()));
  auto domain_lower = lowered(domain);
  if (!domain_lower)
    return {};
  return {{}, fmt::format("{}@{}", local, *domain_lower)};
}

std::string check_utf8(std::string_view s) {
  auto bad = [&](size_t i) {
    return fmt::format("byte {} (0x{:02x}) does not begin a valid UTF-8 "
                       "sequence (RFC 3629)",
                       i + 1, static_cast<unsigned char>(s[i]));
  };
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf)
      n = 1, cp = c & 0x1fu;
    else if (c >= 0xe0 && c <= 0xef)
      n = 2, cp = c & 0x0fu;
    else if (c >= 0xf0 && c <= 0xf4)
      n = 3, cp = c & 0x07u;
    else
      return bad(i);
    if (i + n >= s.size())
      return bad(i);
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80)
        return bad(i);
      cp = (cp << 6) | (cc & 0x3fu);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)
        || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return bad(i);
    i += n + 1;
  }
  return {};
}

std::optional<utc_time> parse_rfc3339(std::string_view s, std::string& why) {
  int value[layout.size()];
  for (size_t k = 0; k < layout.size(); ++k) {
    auto& part = layout[k];
    if (!digits(s, part.pos, part.width, value[k])) {
      why = fmt::format("the {} is not {} digits at character {} ({})",
                        part.name, part.width, part.pos + 1, rfc3339_form);
      return std::nullopt;
    }
    auto sep = part.pos + part.width;
    if (part.separator == '\0')
      continue;
    bool t = part.separator == 'T';
    if (sep >= s.size()
        || (s[sep] != part.separator && !(t && s[sep] == 't'))) {
      why =
        fmt::format("character {} must be '{}'{} ({})", sep + 1, part.separator,
                    t ? " (or 't'; a space is not taken)" : "", rfc3339_form);
      return std::nullopt;
    }
  }
  auto [year, month, day, hour, minute, second] = value;
  if (month < 1 || month > 12) {
    why = fmt::format("month {:02} is not 01 to 12", month);
    return std::nullopt;
  }
  if (day < 1 || day > days_in(year, month)) {
    why = fmt::format("day {:02} is not in {:04}-{:02}, which has {} days", day,
                      year, month, days_in(year, month));
    return std::nullopt;
  }
  if (hour > 23 || minute > 59 || second > 60) {
    why = fmt::format("{:02}:{:02}:{:02} is not a time of day (hour 00-23, "
                      "minute 00-59, second 00-59, or 60 for a leap second)",
                      hour, minute, second);
    return std::nullopt;
  }
  size_t pos = 19;
  utc_time t;
  if (pos < s.size() && s[pos] == '.') {
    auto start = ++pos;
    while (pos < s.size() && is_digit(s[pos]))
      ++pos;
    if (pos == start) {
      why = "the fraction after the '.' has no digits";
      return std::nullopt;
    }
    auto frac = s.substr(start, pos - start);
    t.fraction = frac.substr(0, frac.find_last_not_of('0') + 1);
  }
  int offset_minutes = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int off_hour = 0, off_minute = 0;
    if (!digits(s, pos + 1, 2, off_hour) || pos + 3 >= s.size()
        || s[pos + 3] != ':' || !digits(s, pos + 4, 2, off_minute)
        || off_hour > 23 || off_minute > 59) {
      why = fmt::format("the offset '{}' is not +HH:MM or -HH:MM (hour "
                        "00-23, minute 00-59; RFC 3339 §5.6)",
                        s.substr(pos));
      return std::nullopt;
    }
    offset_minutes = (s[pos] == '-' ? -1 : 1) * (off_hour * 60 + off_minute);
    pos += 6;
  } else {
    why = fmt::format("no offset at character {}: end with Z or +HH:MM / "
                      "-HH:MM ({})",
                      pos + 1, rfc3339_form);
    return std::nullopt;
  }
  if (pos != s.size()) {
    why = fmt::format("'{}' follows the offset", s.substr(pos));
    return std::nullopt;
  }
  // Local time to UTC; a leap second is counted as its :59 meanwhile.
  using namespace std::chrono;
  auto days = sys_days{std::chrono::year{year}
                       / std::chrono::month{static_cast<unsigned>(month)}
                       / std::chrono::day{static_cast<unsigned>(day)}};
  int64_t local = int64_t{days.time_since_epoch().count()} * 86400 + hour * 3600
                  + minute * 60 + std::min(second, 59);
  int64_t utc = local - int64_t{offset_minutes} * 60;
  auto utc_days = sys_days{
    std::chrono::days{utc >= 0 ? utc / 86400 : -((-utc + 86399) / 86400)}};
  int64_t of_day = utc - int64_t{utc_days.time_since_epoch().count()} * 86400;
  year_month_day ymd{utc_days};
  t.year = static_cast<int>(ymd.year());
  t.month = static_cast<int>(static_cast<unsigned>(ymd.month()));
  t.day = static_cast<int>(static_cast<unsigned>(ymd.day()));
  t.hour = static_cast<int>(of_day / 3600);
  t.minute = static_cast<int>(of_day / 60 % 60);
  t.second = static_cast<int>(of_day % 60);
  if (t.year < 0 || t.year > 9999) {
    why =
      fmt::format("in UTC it falls in the year {}, outside 0000-9999", t.year);
    return std::nullopt;
  }
  if (second == 60) {
    if (t.hour != 23 || t.minute != 59
        || !had_leap_second(t.year, t.month, t.day)) {
      why = fmt::format(
        "second 60 is a leap second, valid only as 23:59:60 UTC at the end "
        "of a day that had one (RFC 3339 §5.7; the last was "
        "2016-12-31T23:59:60Z); in UTC this is "
        "{:04}-{:02}-{:02}T{:02}:{:02}:60Z",
        t.year, t.month, t.day, t.hour, t.minute);
      return std::nullopt;
    }
    t.second = 60;
  }
  t.epoch_seconds = utc + (second == 60 ? 1 : 0);
  return t;
}

std::string canonical_timestamp(const utc_time& t) {
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}Z", t.year,
                     t.month, t.day, t.hour, t.minute, t.second,
                     t.fraction.empty() ? "" : ".", t.fraction);
}

verdict check_timestamp(std::string_view s) {
  std::string why;
  auto t = parse_rfc3339(s, why);
  if (!t)
    return fail(std::move(why));
  auto canonical = canonical_timestamp(*t);
  if (canonical == s)
    return {};
  return {{}, std::move(canonical)};
}

} // namespace herald::detail
