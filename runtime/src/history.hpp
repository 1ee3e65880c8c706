#pragma once

// A node's history for the harness (config key `record`), and its
// incarnation. The format is documented in docs/harness.md.
//
// Thread safety: `history_file` is called from every shard and consumer of
// the node at once; each record is one write(2) to a file opened with
// O_APPEND, so records never interleave and each that was written
// survives a kill -9 of the process (the kernel has it). The last group
// offsets written are guarded by their own mutex (a leaf).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include <caf/expected.hpp>
#include <spdlog/fwd.h>

#include "herald/actors/history.hpp"
#include "herald/core/config.hpp"

namespace herald {

/// The version of the history format written (`"v"` of every record).
inline constexpr int history_version = 1;

/// Raises the incarnation kept in `data_dir` (the file `incarnation`; 0
/// when absent) by one, durably (written aside, synced, renamed), and
/// returns the new value: 1 on a new data directory. A node raises it at
/// every start, so it tells the runs of one node (and one stream) apart.
/// With `at_least`, the new value is at least that (membership raises the
/// incarnation it announces when it refutes a rumour about the node).
/// Fails with `errc::io_error` naming the file, or `errc::corrupt_log`
/// when the file holds no number.
caf::expected<uint64_t> raise_incarnation(const std::string& data_dir,
                                          uint64_t at_least = 0);

/// Appends the history records of one node to a file.
class history_file final : public handling_history {
public:
  /// Opens (creating) `path` to append, and writes the `start` record
  /// naming the node, its stream, incarnation and test hooks. Fails with
  /// `errc::io_error` naming the file and the `record` key.
  static caf::expected<std::shared_ptr<history_file>>
  open(const std::string& path, const node_config& cfg,
       const std::string& stream, uint64_t incarnation,
       std::shared_ptr<spdlog::logger> log);

  ~history_file() override;
  history_file(const history_file&) = delete;
  history_file& operator=(const history_file&) = delete;

  /// A `handling` record.
  void finished(const handling& h) noexcept override;

  /// An `offset` record: `consumer` committed `offset` in `stream`.
  void committed(std::string_view consumer, std::string_view stream,
                 uint64_t offset) noexcept;

  /// An `offset` record of a consumer group: the owner of `stream`
  /// confirmed `offset` as the committed offset of `partition` (of
  /// `partitions`) of group `consumer`, renewed or released under `epoch`.
  /// Written only when `offset` is higher than the last one written for
  /// (consumer, stream, partition): renewals that move nothing add no
  /// line.
  void group_committed(const std::string& consumer, const std::string& stream,
                       uint32_t partition, uint64_t epoch, uint32_t partitions,
                       uint64_t offset) noexcept;

private:
  history_file(int fd, std::string path, std::string node, uint64_t incarnation,
               std::shared_ptr<spdlog::logger> log);
  void append(std::string line) noexcept;
  template <class Make> void write(Make make) noexcept;

  int fd_;
  std::string path_;
  std::string node_;
  uint64_t incarnation_;
  std::shared_ptr<spdlog::logger> log_;
  // The last group offset written per (consumer, stream, partition).
  std::mutex group_offsets_mtx_;
  std::map<std::tuple<std::string, std::string, uint32_t>, uint64_t>
    group_offsets_;
};

} // namespace herald
