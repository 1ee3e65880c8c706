#pragma once

/// What the `herald` commands print for a person: values on one line,
/// columns measured in characters, aligned tables. Shared by `herald dlq`
/// and `herald status`.
///
/// Thread safety: pure functions, but `print_table`, which prints with
/// `print_line`.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "herald/core/event.hpp"

namespace herald::cli {

/// `j` as JSON text (`indent` < 0: one line); strings that are not UTF-8
/// are written with replacement characters instead of throwing.
std::string dump(const payload& j, int indent = -1);

/// `s` on one line: control characters escaped as in JSON.
std::string one_line(std::string_view s);

/// A value as text: strings as they are, anything else as JSON, nothing
/// for null; on one line.
std::string text_of(const payload& j);

/// The width of `s` in characters (UTF-8 sequences count once).
size_t width_of(std::string_view s);

/// `s` cut to at most `max` characters, "..." marking a cut.
std::string shorten(std::string s, size_t max);

/// `s` padded with spaces to `width` characters.
std::string pad(const std::string& s, size_t width);

/// Prints `rows` as aligned columns two spaces apart; the last column is
/// not padded.
void print_table(const std::vector<std::vector<std::string>>& rows);

} // namespace herald::cli
