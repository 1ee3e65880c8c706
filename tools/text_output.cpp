#include "text_output.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "cli_common.hpp"

namespace herald::cli {

std::string dump(const payload& j, int indent) {
  return j.dump(indent, ' ', false, payload::error_handler_t::replace);
}

std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7F)
      out += fmt::format("\\u{:04x}", c);
    else
      out += ch;
  }
  return out;
}

std::string text_of(const payload& j) {
  if (j.is_null())
    return {};
  if (j.is_string())
    return one_line(j.get_ref<const std::string&>());
  return one_line(dump(j));
}

size_t width_of(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string shorten(std::string s, size_t max) {
  if (width_of(s) <= max)
    return s;
  size_t chars = 0, i = 0;
  for (; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && chars++ == max - 3)
      break;
  s.resize(i);
  return s + "...";
}

std::string pad(const std::string& s, size_t width) {
  auto w = width_of(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      widths.resize(std::max(widths.size(), row.size()));
      widths[i] = std::max(widths[i], width_of(row[i]));
    }
  for (auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        line += row[i];
      } else {
        line += pad(row[i], widths[i]);
        line += "  ";
      }
    }
    print_line(line);
  }
}

} // namespace herald::cli
