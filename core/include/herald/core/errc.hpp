#pragma once

/// herald's error codes and the helpers that make and read `caf::error`s.
///
/// Every error herald returns is a `caf::error` in the category `herald`
/// whose context is one human-readable string: what was wrong with which
/// input and what to do about it.

#include <cstdint>
#include <string>

#include <caf/error.hpp>

namespace herald {

/// The error codes of herald, category `herald`.
enum class errc : uint8_t {
  /// An event name breaks `domain.entity.action`.
  invalid_name = 1,
  /// A subscription pattern is malformed.
  invalid_pattern,
  /// The event type is not in the catalog.
  unknown_event,
  /// A payload breaks its schema.
  invalid_payload,
  /// A producer or consumer is not the one the catalog names.
  catalog_violation,
  /// The catalog file is malformed.
  invalid_catalog,
  /// A node configuration is malformed.
  invalid_config,
  /// A frame could not be decoded.
  decode_error,
  /// A frame exceeds the maximum frame size.
  frame_too_large,
  /// A file or socket operation failed.
  io_error,
  /// The node is not running (not started yet or already stopped).
  not_running,
  /// A command-line argument is bad.
  invalid_argument,
  /// A deadline passed before the operation completed.
  timeout,
  /// A handler failed and says retrying cannot help: the event is
  /// dead-lettered at once.
  non_retryable,
};

/// The category atom of herald's errors.
inline constexpr caf::atom_value error_category = caf::atom("herald");

/// Makes a herald error with a human-readable message.
caf::error make_error(errc code, std::string message);

/// Returns the human-readable message of `err`: the context string of a
/// herald error, or a rendering of any other error. Empty for no error.
std::string message_of(const caf::error& err);

/// Returns whether `err` is the herald error `code`.
bool is(const caf::error& err, errc code);

/// Returns the name of `code`, e.g. "invalid_payload".
const char* to_string(errc code);

} // namespace herald
