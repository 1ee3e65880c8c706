#pragma once

// The group format: how one commit group of records is stored as one value
// in the `events` column family. The committer writes it
// (`encode_group`); open, reads and retention walk it (`group_reader`).
//
// Key: the seq of the group's first entry, 8 bytes big-endian.
//
// Value:
//
//   +-----------------+---------+---------+-----+
//   | count (4 bytes) | entry 0 | entry 1 | ... |   `count` entries
//   +-----------------+---------+---------+-----+
//
// Entry i (from 0) has seq key + i, and is
//
//   +---------------+--------------+------------------+------+----------+
//   | timestamp (8) | type len (2) | envelope len (4) | type | envelope |
//   +---------------+--------------+------------------+------+----------+
//
// Every number is big-endian (coding.hpp). The timestamp is the record's
// `timestamp_us` (microseconds since the epoch, two's complement), the type
// its event type name (at most 65535 bytes), the envelope its encoded
// envelope. The first three fields are the entry's fixed-size header.
//
// Why groups: one RocksDB write per group instead of per event keeps the
// committer's cost per event small, and retention deletes whole groups
// (a group expires once its newest entry has). A value with bytes after its
// last entry, or too short for what its numbers say, is corrupt.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herald/store/event_log.hpp"

namespace herald::store::detail {

/// The bytes before an entry's type: timestamp, type length, envelope
/// length.
inline constexpr size_t entry_header_size = 14;

/// Replaces `value` with the encoding of `group` (its seqs are implied: the
/// first is the key). REQUIRES: every type is at most 65535 bytes and every
/// envelope less than 4 GiB (`event_log::append` checks the type).
void encode_group(const std::vector<record>& group, std::string& value);

/// A parsed entry of a group value; views into the value.
struct entry_view {
  uint64_t seq = 0;
  int64_t timestamp_us = 0;
  std::string_view type;
  std::string_view envelope;
};

/// Walks the entries of one group value, oldest first. `next` returns false
/// at the end; `corrupt` tells whether it stopped on a malformed value.
/// The value must outlive the reader and the views it hands out.
class group_reader {
public:
  group_reader(uint64_t first_seq, std::string_view value);

  /// Reads the next entry into `out`; false at the end or on a malformed
  /// entry.
  bool next(entry_view& out);

  /// The seq after the group's last entry, once `next` returned false.
  uint64_t end_seq() const noexcept {
    return seq_ + left_;
  }

  /// Whether the value is malformed (valid once `next` returned false).
  bool corrupt() const noexcept {
    return corrupt_ || (left_ == 0 && !rest_.empty());
  }

private:
  bool fail() {
    corrupt_ = true;
    return false;
  }

  uint64_t seq_;
  std::string_view rest_;
  uint32_t left_ = 0;
  bool corrupt_ = false;
};

} // namespace herald::store::detail
