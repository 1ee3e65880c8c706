#include "cluster_ask.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace herald::cli {

bool is_down(control::member_status s) noexcept {
  return s == control::member_status::down
         || s == control::member_status::leaving;
}

std::vector<control::cluster_member>
live_members(const control::members_reply& view) {
  std::vector<control::cluster_member> out;
  for (auto& e : view.members)
    if (!is_down(e.member.status))
      out.push_back(e.member);
  return out;
}

std::vector<control::cluster_member>
members_running(const control::members_reply& view, const std::string& name) {
  std::vector<control::cluster_member> out;
  for (auto& e : view.members)
    if (std::any_of(e.member.consumers.begin(), e.member.consumers.end(),
                    [&](const control::member_consumer& c) {
                      return c.name == name;
                    }))
      out.push_back(e.member);
  return out;
}

std::vector<std::string> patterns_of(const control::members_reply& view,
                                     const std::string& name) {
  std::set<std::string> all;
  for (auto& e : view.members)
    for (auto& c : e.member.consumers)
      if (c.name == name)
        all.insert(c.patterns.begin(), c.patterns.end());
  return {all.begin(), all.end()};
}

std::string
names_with_status(const std::vector<control::cluster_member>& members) {
  std::vector<std::string> names;
  for (auto& m : members)
    names.push_back(
      fmt::format("{} ({})", m.name, control::to_string(m.status)));
  return fmt::format("{}", fmt::join(names, ", "));
}

void print_error(std::string_view prog, const control::cluster_member& m,
                 std::string_view why) {
  fmt::print(stderr, "{}: owner '{}' (stream '{}', {}): {}\n", prog, m.name,
             m.stream, m.control, why);
  std::fflush(stderr);
}

caf::expected<control::members_reply> ask_view(const endpoint_options& opts) {
  return ask_node(opts, control::members_request{});
}

} // namespace herald::cli
