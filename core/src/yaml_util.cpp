#include "yaml_util.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace herald::detail {

int line_of(const YAML::Node& node) {
  return node.IsDefined() ? node.Mark().line + 1 : 0;
}

void problems::add(int line, std::string_view text) {
  lines_.emplace_back(line, line > 0
                              ? fmt::format("{}:{}: {}", file_, line, text)
                              : fmt::format("{}: {}", file_, text));
}

caf::error problems::to_error(errc code) const {
  auto sorted = lines_;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& x, const auto& y) {
                     return x.first < y.first;
                   });
  std::string text;
  for (const auto& [line, problem] : sorted)
    text.append(text.empty() ? "" : "\n").append(problem);
  return make_error(code, std::move(text));
}

const std::string* key_checker::check(const YAML::Node& key) {
  auto line = line_of(key);
  if (!key.IsScalar() || key.Scalar().empty()) {
    out_.add(line, fmt::format("{}a {} must be a plain name", context_, noun_));
    return nullptr;
  }
  const auto& name = key.Scalar();
  auto first = std::find_if(seen_.begin(), seen_.end(), [&](const auto& x) {
    return x.first == name;
  });
  if (first != seen_.end()) {
    out_.add(line, fmt::format("{}duplicate {} '{}' (first at line {})",
                               context_, noun_, name, first->second));
    return nullptr;
  }
  seen_.emplace_back(name, line);
  return &name;
}

void read_map(const YAML::Node& map, std::string_view context,
              std::initializer_list<entry*> entries, problems& out) {
  key_checker checker{context, "key", out};
  for (const auto& kv : map) {
    const auto* name = checker.check(kv.first);
    if (!name)
      continue;
    auto match =
      std::find_if(entries.begin(), entries.end(), [&](const entry* e) {
        return e->key == *name;
      });
    if (match == entries.end()) {
      std::string allowed;
      for (const auto* e : entries)
        allowed.append(allowed.empty() ? "" : ", ").append(e->key);
      out.add(line_of(kv.first), fmt::format("{}unknown key '{}' (allowed: {})",
                                             context, *name, allowed));
      continue;
    }
    (*match)->line = line_of(kv.first);
    (*match)->value = kv.second;
  }
}

std::optional<std::string> text_of(const entry& e, std::string_view context,
                                   std::string_view description,
                                   problems& out) {
  if (e.value.IsScalar() && !e.value.Scalar().empty())
    return e.value.Scalar();
  out.add(e.line,
          fmt::format("{}'{}' must be {}", context, e.key, description));
  return std::nullopt;
}

std::optional<int64_t> int_of(const YAML::Node& node) {
  if (!node.IsScalar())
    return std::nullopt;
  const auto& text = node.Scalar();
  auto first = text.data() + (text.starts_with('+') ? 1 : 0);
  auto last = text.data() + text.size();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || end != last || first == last)
    return std::nullopt;
  return value;
}

bool require(const entry& e, int line, std::string_view context,
             std::string_view hint, problems& out) {
  if (!e)
    out.add(line, fmt::format("{}missing '{}' ({})", context, e.key, hint));
  return static_cast<bool>(e);
}

std::optional<YAML::Node> load(std::string_view yaml, problems& out) {
  try {
    return YAML::Load(std::string{yaml});
  } catch (const YAML::ParserException& ex) {
    out.add(ex.mark.line + 1, fmt::format("YAML syntax error: {}", ex.msg));
  } catch (const YAML::Exception& ex) {
    out.add(0, fmt::format("YAML error: {}", ex.what()));
  }
  return std::nullopt;
}

caf::expected<std::string> read_file(const std::string& path,
                                     std::string_view what) {
  auto fail = [&](std::string_view why) {
    return make_error(errc::io_error,
                      fmt::format("cannot read {} '{}': {}", what, path, why));
  };
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    return fail("no such file");
  if (!std::filesystem::is_regular_file(status))
    return fail("not a regular file");
  std::ifstream in{path, std::ios::binary};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  if (!in.is_open() || in.bad())
    return fail(std::strerror(errno));
  return text;
}

} // namespace herald::detail
