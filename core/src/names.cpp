#include "herald/core/names.hpp"

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald {

namespace {

constexpr std::string_view part_rule =
  "must match [a-z][a-z0-9_]* (lower case letters, digits, underscores, "
  "starting with a letter)";

constexpr std::string_view pattern_forms =
  "use an event name (user.account.created), a prefix ending in a dot "
  "(user.), or wildcards (user.*.deleted, order.>, >)";

bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}

bool valid_part(std::string_view part) {
  if (part.empty() || !is_lower(part.front()))
    return false;
  for (char c : part)
    if (!is_lower(c) && !(c >= '0' && c <= '9') && c != '_')
      return false;
  return true;
}

/// Splits `text` at dots; `a..b` yields an empty part.
std::vector<std::string_view> split(std::string_view text) {
  std::vector<std::string_view> parts;
  for (size_t pos = 0;;) {
    auto dot = text.find('.', pos);
    parts.push_back(text.substr(pos, dot - pos));
    if (dot == std::string_view::npos)
      return parts;
    pos = dot + 1;
  }
}

/// Describes what is wrong with literal part `index` (from 0), or returns an
/// empty string when it is valid.
std::string part_problem(std::string_view part, size_t index) {
  if (valid_part(part))
    return {};
  if (part.empty())
    return fmt::format("part {} is empty; parts are separated by single dots",
                       index + 1);
  return fmt::format("part {} '{}' {}", index + 1, part, part_rule);
}

/// Describes what is wrong with the name `name`, or returns an empty string.
std::string name_problem(std::string_view name) {
  if (name.empty())
    return "is empty; event names are domain.entity.action, e.g. "
           "user.account.created";
  auto parts = split(name);
  for (size_t i = 0; i < parts.size(); ++i)
    if (auto problem = part_problem(parts[i], i); !problem.empty())
      return problem;
  if (parts.size() != 3)
    return fmt::format("has {} part{}, needs exactly 3: domain.entity.action "
                       "(e.g. user.account.created)",
                       parts.size(), parts.size() == 1 ? "" : "s");
  return {};
}

caf::error bad_pattern(std::string_view text, std::string_view problem) {
  return make_error(
    errc::invalid_pattern,
    fmt::format("subscription pattern '{}': {}", text, problem));
}

bool is_wildcard(std::string_view part) {
  return part == "*" || part == ">";
}

} // namespace

caf::error validate_event_name(std::string_view name) {
  auto problem = name_problem(name);
  if (problem.empty())
    return {};
  return make_error(errc::invalid_name,
                    fmt::format("event name '{}': {}", name, problem));
}

caf::error validate_service_name(std::string_view name, std::string_view what) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  };
  std::string problem;
  if (name.empty())
    problem = "is empty";
  else if (name.size() > max_service_name)
    problem = fmt::format("is {} bytes long, more than {}", name.size(),
                          max_service_name);
  else if (auto bad = std::find_if_not(name.begin(), name.end(), allowed);
           bad != name.end())
    problem =
      fmt::format("holds '{}' at byte {}", *bad, bad - name.begin() + 1);
  else if (name.front() == '_' || name.front() == '.' || name.front() == '-')
    problem = fmt::format("starts with '{}'", name.front());
  if (problem.empty())
    return {};
  return make_error(
    errc::invalid_name,
    fmt::format("{} name '{}' {}: a {} name is 1 to {} letters, digits, '_', "
                "'.' or '-', starting with a letter or digit (e.g. "
                "EmailService, billing-v2); rename it",
                what, name, problem, what, max_service_name));
}

caf::expected<pattern> pattern::parse(std::string_view text) {
  if (text.empty())
    return bad_pattern(text, fmt::format("is empty; {}", pattern_forms));
  pattern result;
  result.text_ = std::string{text};
  if (text.back() == '.') {
    auto parts = split(text.substr(0, text.size() - 1));
    for (size_t i = 0; i < parts.size(); ++i) {
      if (is_wildcard(parts[i]))
        return bad_pattern(text, "a prefix (ending in a dot) takes no "
                                 "wildcards; end a wildcard pattern with '>' "
                                 "instead, e.g. 'user.*.>'");
      if (auto problem = part_problem(parts[i], i); !problem.empty())
        return bad_pattern(text, problem);
    }
    if (parts.size() > 2)
      return bad_pattern(text, fmt::format("a prefix has 1 or 2 parts "
                                           "(user. or user.account.); for "
                                           "the event, drop the trailing dot: "
                                           "'{}'",
                                           text.substr(0, text.size() - 1)));
    result.kind_ = kind::prefix;
    result.prefix_ = result.text_;
    return result;
  }
  auto parts = split(text);
  bool wildcard = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto part = parts[i];
    if (part == ">" && i + 1 != parts.size())
      return bad_pattern(text, fmt::format("'>' stands for all remaining parts "
                                           "and must be the last part, not "
                                           "part {}",
                                           i + 1));
    if (is_wildcard(part)) {
      wildcard = true;
      continue;
    }
    if (part.find_first_of("*>") != std::string_view::npos)
      return bad_pattern(text, fmt::format("part {} '{}': a wildcard ('*' or "
                                           "'>') must be a whole part",
                                           i + 1, part));
    if (auto problem = part_problem(part, i); !problem.empty())
      return bad_pattern(text, problem);
  }
  auto count =
    fmt::format("has {} part{}", parts.size(), parts.size() == 1 ? "" : "s");
  if (parts.size() > 3)
    return bad_pattern(text, count
                               + ", but event names have exactly 3 "
                                 "(domain.entity.action)");
  if (!wildcard && parts.size() < 3)
    return bad_pattern(text, fmt::format("{}, but event names have exactly 3 "
                                         "(domain.entity.action); to select "
                                         "all events starting with it, end it "
                                         "with a dot: '{}.'",
                                         count, text));
  if (parts.size() < 3 && parts.back() != ">")
    return bad_pattern(text, count
                               + " and never matches a 3-part event "
                                 "name; add '*' parts or end it with '>'");
  if (!wildcard) {
    result.kind_ = kind::exact;
    result.prefix_ = result.text_;
    return result;
  }
  result.kind_ = kind::wildcard;
  for (auto part : parts) {
    if (is_wildcard(part))
      break;
    result.prefix_.append(part).push_back('.');
  }
  result.parts_.assign(parts.begin(), parts.end());
  return result;
}

bool pattern::matches(std::string_view name) const noexcept {
  switch (kind_) {
  case kind::exact:
    return name == text_;
  case kind::prefix:
    return name.starts_with(prefix_);
  case kind::wildcard:
    break;
  }
  if (name.empty())
    return false;
  size_t pos = 0;
  bool consumed = false;
  for (const auto& part : parts_) {
    if (consumed)
      return false;
    if (part == ">")
      return pos < name.size(); // one or more parts remain
    auto dot = name.find('.', pos);
    auto segment = name.substr(pos, dot - pos); // to the end when npos
    if (part != "*" && segment != part)
      return false;
    consumed = dot == std::string_view::npos;
    pos = dot + 1;
  }
  return consumed;
}

bool any_matches(const std::vector<pattern>& patterns,
                 std::string_view name) noexcept {
  for (auto& p : patterns)
    if (p.matches(name))
      return true;
  return false;
}

} // namespace herald
