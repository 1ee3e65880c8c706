#pragma once

/// A small tmpfs for tests of a full disk.

#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace herald::test {

// A tmpfs of `size` mounted at `at` for one test, unmounted whatever
// happens. Needs root (CI runs the tests as root).
struct tmpfs_mount {
  std::filesystem::path at;
  bool mounted = false;
  tmpfs_mount(std::filesystem::path where, const char* size)
      : at(std::move(where)) {
    std::filesystem::create_directories(at);
    auto opts = std::string{"size="} + size;
    mounted = ::geteuid() == 0
              && ::mount("tmpfs", at.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~tmpfs_mount() {
    if (mounted)
      ::umount2(at.c_str(), MNT_DETACH);
  }
  tmpfs_mount(const tmpfs_mount&) = delete;
  tmpfs_mount& operator=(const tmpfs_mount&) = delete;
};

} // namespace herald::test
