#pragma once

// Helpers shared by the YAML loaders (catalog.cpp, config.cpp). A loader
// collects every problem of a file with its line, so that one error lists
// them all instead of making the user fix them one run at a time.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <yaml-cpp/yaml.h>

#include "herald/core/errc.hpp"

namespace herald::detail {

/// Returns the line of `node`, from 1; 0 when it has none.
int line_of(const YAML::Node& node);

/// The problems found in one file, each rendered `FILE:LINE: text`.
class problems {
public:
  explicit problems(std::string file) : file_(std::move(file)) {}

  /// Adds `text` found at `line` (from 1; 0 when unknown).
  void add(int line, std::string_view text);

  /// Returns whether no problem was found.
  bool empty() const noexcept {
    return lines_.empty();
  }

  /// Returns all problems as one error `code`, one problem per line,
  /// ordered by line.
  caf::error to_error(errc code) const;

private:
  std::string file_;
  std::vector<std::pair<int, std::string>> lines_;
};

/// One value of a map with fixed keys, as `read_map` finds it.
struct entry {
  /// An absent entry for `key`.
  explicit entry(std::string_view key) noexcept : key(key) {}

  /// A present entry.
  entry(std::string_view key, int line, YAML::Node value)
      : key(key), line(line), value(std::move(value)) {}

  /// The key as the format spells it.
  std::string_view key;
  /// Line of the key, from 1; 0 when the key is absent.
  int line = 0;
  /// The value; valid when present.
  YAML::Node value;

  /// Returns whether the key is present.
  explicit operator bool() const noexcept {
    return line > 0;
  }
};

/// Fills `entries` from `map`. Reports, prefixed with `context`, keys that
/// are not among the entries' (listing the allowed ones), repeated keys and
/// keys that are not plain names. REQUIRES: `map.IsMap()`.
void read_map(const YAML::Node& map, std::string_view context,
              std::initializer_list<entry*> entries, problems& out);

/// Calls `fn(name, line, value)` for each entry of `map`, a map from names
/// the user chooses (events, fields, consumers). Reports repeated names (a
/// `noun`, e.g. "event") and keys that are not plain names, prefixed with
/// `context`, and skips them. REQUIRES: `map.IsMap()`.
template <class Fn>
void for_each_named(const YAML::Node& map, std::string_view context,
                    std::string_view noun, problems& out, Fn&& fn);

/// Returns the text of a non-empty scalar, else reports
/// `CONTEXT'KEY' must be DESCRIPTION` and returns nothing.
std::optional<std::string> text_of(const entry& e, std::string_view context,
                                   std::string_view description, problems& out);

/// Returns the integer of a scalar, or nothing when it is not one.
std::optional<int64_t> int_of(const YAML::Node& node);

/// Reports `CONTEXT missing 'KEY' (HINT)` at `line` when `e` is absent.
/// Returns whether `e` is present.
bool require(const entry& e, int line, std::string_view context,
             std::string_view hint, problems& out);

/// Parses `yaml`. A syntax error is reported to `out` and yields nothing.
std::optional<YAML::Node> load(std::string_view yaml, problems& out);

/// Reads the file `path`, or fails with `errc::io_error` naming it as
/// `what` (e.g. "catalog").
caf::expected<std::string> read_file(const std::string& path,
                                     std::string_view what);

/// Checks map keys; shared by `read_map` and `for_each_named`.
class key_checker {
public:
  key_checker(std::string_view context, std::string_view noun,
              problems& out) noexcept
      : context_(context), noun_(noun), out_(out) {}

  /// Returns the key's name when it is a new plain name, else reports it
  /// and returns null.
  const std::string* check(const YAML::Node& key);

private:
  std::string_view context_;
  std::string_view noun_;
  problems& out_;
  std::vector<std::pair<std::string_view, int>> seen_;
};

template <class Fn>
void for_each_named(const YAML::Node& map, std::string_view context,
                    std::string_view noun, problems& out, Fn&& fn) {
  key_checker checker{context, noun, out};
  for (const auto& kv : map)
    if (const auto* name = checker.check(kv.first))
      fn(*name, line_of(kv.first), kv.second);
}

} // namespace herald::detail
