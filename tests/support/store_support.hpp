#pragma once

// Helpers of the tests that open event logs directly.

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>

#include "herald/core/errc.hpp"
#include "herald/store/event_log.hpp"

namespace herald::store::test {

/// Options for a log in `dir` with the policy `fsync`.
inline log_options options_for(const std::filesystem::path& dir,
                               fsync_policy fsync = fsync_policy::batch) {
  log_options opts;
  opts.dir = dir.string();
  opts.fsync = fsync;
  return opts;
}

/// Opens a log, failing the test when it cannot.
inline std::unique_ptr<event_log> open_log(log_options opts) {
  auto log = event_log::open(std::move(opts));
  if (!log)
    FAIL("open failed: " << herald::message_of(log.error()));
  return std::move(*log);
}

inline std::unique_ptr<event_log>
open_log(const std::filesystem::path& dir,
         fsync_policy fsync = fsync_policy::batch) {
  return open_log(options_for(dir, fsync));
}

} // namespace herald::store::test
