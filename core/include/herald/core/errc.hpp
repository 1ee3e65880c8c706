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

/// The error codes of herald, category `herald`. Each code has one meaning,
/// stated below; the message says which input and what to do. The numeric
/// values are stable (they cross process boundaries in CAF messages): new
/// codes are appended.
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
  /// A configuration value (a node config file, a `node_config` field or
  /// the config a tool reads) is malformed or cannot be used as given,
  /// e.g. a metrics port another process holds.
  invalid_config,
  /// Bytes received from another process do not decode as the message
  /// expected there: a frame, an envelope, a control request or reply.
  decode_error,
  /// A frame exceeds the maximum frame size, or an event to publish would
  /// not fit one (`transport.max_message_size`).
  frame_too_large,
  /// An operation of the operating system or of a library on a file, a
  /// socket, a database or a thread failed (open, read, write, bind,
  /// connect, spawn). What is stored is intact; see `corrupt_log`.
  io_error,
  /// The node is not running (not started yet or already stopped).
  not_running,
  /// A caller passed a value that breaks the contract of the function it
  /// called (e.g. an append out of seq order); the calling code is wrong.
  invalid_argument,
  /// A deadline passed before the operation completed.
  timeout,
  /// A handler failed and says retrying cannot help: the event is
  /// dead-lettered at once.
  non_retryable,
  /// What a node stored in its data directory (events, metadata, dead
  /// letters) fails its checks: the disk or a tool damaged it.
  corrupt_log,
  /// Another node answered a request with an error; the message is the
  /// node's own.
  remote_error,
  /// The thing asked for (e.g. a dead letter id) does not exist.
  not_found,
  /// A handler failed and retrying may help: the event is tried again,
  /// then dead-lettered. Any code other than `non_retryable` is retried;
  /// this one says nothing more than that.
  handler_failed,
  /// Not now: the operation would have to wait (e.g. for room in the
  /// node's log queue, `store.max_pending_bytes`) and its caller may not
  /// wait, or waited as long as it may. Nothing was done; the same call
  /// later may succeed.
  would_block,
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
