#include "herald/core/errc.hpp"

#include <utility>

#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>
#include <fmt/format.h>

namespace herald {

caf::error make_error(errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(message))};
}

std::string message_of(const caf::error& err) {
  if (!err)
    return {};
  if (err.category() == error_category) {
    if (err.context().match_elements<std::string>())
      return err.context().get_as<std::string>(0);
    return fmt::format("herald error {}",
                       to_string(static_cast<errc>(err.code())));
  }
  // CAF's own errors by name (`request_timeout`, not "error 4 in category
  // system"), with what CAF attached to them.
  std::string name;
  if (err.category() == caf::atom("system"))
    name = caf::to_string(static_cast<caf::sec>(err.code()));
  else if (err.category() == caf::atom("exit"))
    name = caf::to_string(static_cast<caf::exit_reason>(err.code()));
  else
    name = fmt::format("error {}", err.code());
  auto text =
    fmt::format("{} (category {})", name, caf::to_string(err.category()));
  if (!err.context().empty())
    text += ": " + caf::to_string(err.context());
  return text;
}

bool is(const caf::error& err, errc code) {
  return err.category() == error_category
         && err.code() == static_cast<uint8_t>(code);
}

const char* to_string(errc code) {
  switch (code) {
  case errc::invalid_name:
    return "invalid_name";
  case errc::invalid_pattern:
    return "invalid_pattern";
  case errc::unknown_event:
    return "unknown_event";
  case errc::invalid_payload:
    return "invalid_payload";
  case errc::catalog_violation:
    return "catalog_violation";
  case errc::invalid_catalog:
    return "invalid_catalog";
  case errc::invalid_config:
    return "invalid_config";
  case errc::decode_error:
    return "decode_error";
  case errc::frame_too_large:
    return "frame_too_large";
  case errc::io_error:
    return "io_error";
  case errc::not_running:
    return "not_running";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::timeout:
    return "timeout";
  case errc::non_retryable:
    return "non_retryable";
  case errc::corrupt_log:
    return "corrupt_log";
  case errc::remote_error:
    return "remote_error";
  case errc::not_found:
    return "not_found";
  case errc::handler_failed:
    return "handler_failed";
  case errc::would_block:
    return "would_block";
  }
  return "unknown";
}

} // namespace herald
