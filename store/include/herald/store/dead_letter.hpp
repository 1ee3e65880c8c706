#pragma once

/// Dead letters: events a consumer gave up on, kept with what is needed to
/// understand and redrive them, and the filter that selects them.
///
/// They are stored by `event_log` (`add_dead_letters`, `dead_letters`,
/// `find_dead_letter`, `remove_dead_letters`) in its `dead_letters` column
/// family, and passed between the actors that make and redrive them. Plain
/// values: no thread safety of their own.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::store {

/// One failed handling attempt.
struct dead_letter_attempt {
  /// When the attempt ended, microseconds since the epoch.
  int64_t time_us = 0;
  /// The error message.
  std::string error;
  /// The kind of failure, e.g. "exception", "error", "non_retryable",
  /// "timeout".
  std::string error_class;
  /// The node the attempt ran on. Letters stored before attempts named
  /// their node read back with the letter's `node`.
  std::string node;
};

/// One redrive of a dead letter: handed back to its consumer.
struct dead_letter_redrive {
  /// When, microseconds since the epoch.
  int64_t time_us = 0;
  /// Who asked, as the request said (`herald dlq redrive` sends
  /// `USER@HOST` or its `--by`); "unknown" when it did not say.
  std::string by;
};

/// An event a consumer could not handle, with everything needed to
/// understand and redrive it. Its record only grows: a redrive is added to
/// `redrives`, and when the redriven event fails again its new attempts are
/// added to `attempts` under the same id; the letter is removed only once
/// its event is handled (or purged). So `attempts.front()` is the first
/// failure and `created_us` when the event was first dead-lettered.
struct dead_letter {
  /// Assigned by `add_dead_letters`: increasing from 1, never reused, also
  /// not across restarts or after the letter is removed. Kept across
  /// redrives.
  uint64_t id = 0;
  /// The consumer that gave up.
  std::string consumer;
  /// The node the consumer runs on.
  std::string node;
  /// The event's type, e.g. "user.account.created".
  std::string event_type;
  /// The event's id.
  std::string event_id;
  /// The event's entity key (ordering and parking go by it).
  std::string key;
  /// The stream the event came from.
  std::string stream;
  /// The event's seq in `stream`.
  uint64_t seq = 0;
  /// The whole encoded envelope (MessagePack bytes), as received.
  std::string envelope;
  /// Every attempt made, oldest first, across redrives.
  std::vector<dead_letter_attempt> attempts;
  /// Every redrive, oldest first.
  std::vector<dead_letter_redrive> redrives;
  /// Why it was dead-lettered the last time, e.g. "3 attempts failed",
  /// "non-retryable error", "parked behind dead letter 12".
  std::string reason;
  /// Whether it was dead-lettered because its entity was parked (an earlier
  /// event of the same key is a dead letter) rather than for its own failure.
  bool parked = false;
  /// When it was first dead-lettered, microseconds since the epoch.
  int64_t created_us = 0;
};

/// Which dead letters an operation selects. A letter is selected when it
/// matches every field; an empty string matches all.
struct dead_letter_filter {
  /// Only the letters of this consumer. Default: all.
  std::string consumer;
  /// Only the letters of this event type. Default: all.
  std::string event_type;
  /// Only the letters of this entity key. Default: all.
  std::string key;
  /// Only ids greater than this (to page through letters). Default: 0.
  uint64_t after_id = 0;
  /// At most this many letters; 0 for no limit. Default: 0.
  size_t limit = 0;
};

/// `dl` as the MessagePack map it is stored as (every field but `id`,
/// which is the store's key): what a member sends a stream's owner to store
/// a group's dead letter, byte for byte as stored. Its size is what the
/// letter counts against a group's quota (`groups.dead_letter_quota`).
std::string encode_dead_letter(const dead_letter& dl);

/// The letter `value` encodes (`id` 0), or std::nullopt with what is wrong
/// in `why` (not a map, a missing or wrong-typed field). Unknown keys are
/// ignored (a newer version may add some). Accepts values up to any size:
/// bound them before.
std::optional<dead_letter> decode_dead_letter(std::string_view value,
                                              std::string& why);

} // namespace herald::store
