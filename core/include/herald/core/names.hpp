#pragma once

/// Event names and subscription patterns.
///
/// Names follow `domain.entity.action`: exactly three parts, each
/// `[a-z][a-z0-9_]*`. The reserved domain `herald` carries the runtime's own
/// events (e.g. `herald.alert.raised`).
///
/// Patterns select event names:
/// - an exact name: `user.account.created`;
/// - a prefix, ending in a dot: `user.` or `user.account.`;
/// - wildcards: `*` stands for exactly one part, `>` (last part only) for one
///   or more remaining parts: `user.*.deleted`, `order.>`, `>`.
/// A pattern subscribes ZeroMQ to its longest literal prefix (ZeroMQ filters
/// by byte prefix); `matches` is then applied to what arrives.

#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace herald {

/// Checks `name` against `domain.entity.action`. Returns no error when it is
/// valid, else `errc::invalid_name` saying which part breaks which rule.
caf::error validate_event_name(std::string_view name);

/// The longest service (consumer or producer) name, in bytes.
constexpr size_t max_service_name = 128;

/// Checks a service name: a consumer's (and so its consumer group's) or a
/// producer's. 1 to `max_service_name` bytes of `[A-Za-z0-9_.-]`, starting
/// with a letter or digit (`EmailService`, `email_service`,
/// `billing-v2`). The rule keeps a name usable as part of a store key
/// (group state is kept under `GROUP/...`), a metric label and a file
/// name. Returns no error when it is valid, else `errc::invalid_name`
/// naming `what` (e.g. "consumer") and the rule.
caf::error validate_service_name(std::string_view name,
                                 std::string_view what = "service");

/// A parsed subscription pattern. Immutable, hence thread-safe.
class pattern {
public:
  /// Parses `text`; fails with `errc::invalid_pattern` naming the rule broken.
  static caf::expected<pattern> parse(std::string_view text);

  /// Returns whether the event name `name` is selected by this pattern.
  bool matches(std::string_view name) const noexcept;

  /// The longest literal prefix: what the SUB socket subscribes to.
  const std::string& zmq_prefix() const noexcept {
    return prefix_;
  }

  /// The pattern as written.
  const std::string& text() const noexcept {
    return text_;
  }

  /// Returns whether the pattern is an exact event name.
  bool is_exact() const noexcept {
    return kind_ == kind::exact;
  }

private:
  enum class kind { exact, prefix, wildcard };
  std::string text_;
  std::string prefix_;
  std::vector<std::string> parts_; // for wildcard patterns
  kind kind_ = kind::exact;
};

/// Returns whether any of `patterns` selects the event name `name`.
bool any_matches(const std::vector<pattern>& patterns,
                 std::string_view name) noexcept;

} // namespace herald
