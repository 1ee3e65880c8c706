#include "herald/runtime/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>

namespace herald {

namespace {

// Set by the handler: a lock-free atomic is async-signal-safe.
std::atomic<bool> stop_flag{false};
static_assert(std::atomic<bool>::is_always_lock_free);

// A self-pipe: the handler writes one byte that nobody reads, so the read
// end stays readable and every waiter, present or future, wakes up.
int wake_fds[2] = {-1, -1};

extern "C" void on_stop_signal(int) {
  auto saved = errno; // the interrupted code may be about to read it
  stop_flag.store(true);
  if (wake_fds[1] >= 0 && ::write(wake_fds[1], "s", 1) < 0) {
    // Full pipe (an earlier byte is still there) or closed: nothing to do.
  }
  errno = saved;
}

std::once_flag installed;

void install() {
  // Without the pipe the waiters fall back to polling the flag.
  if (::pipe2(wake_fds, O_CLOEXEC | O_NONBLOCK) != 0)
    wake_fds[0] = wake_fds[1] = -1;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Waits at most `timeout_ms` (-1: forever) for the pipe to become readable.
void wait_readable(int timeout_ms) {
  if (wake_fds[0] < 0) {
    ::usleep(timeout_ms < 0 || timeout_ms > 50 ? 50'000 : timeout_ms * 1000);
    return;
  }
  pollfd pfd{wake_fds[0], POLLIN, 0};
  ::poll(&pfd, 1, timeout_ms); // EINTR: the caller checks the flag anyway
}

} // namespace

void catch_stop_signals() {
  std::call_once(installed, install);
}

bool stop_requested() noexcept {
  return stop_flag.load();
}

void wait_for_stop_signal() {
  catch_stop_signals();
  while (!stop_requested())
    wait_readable(-1);
}

bool wait_for_stop_signal(std::chrono::milliseconds timeout) {
  catch_stop_signals();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!stop_requested()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    // Ceiling of 1 s per poll keeps the int conversion safe for any timeout.
    wait_readable(static_cast<int>(std::min<int64_t>(left.count(), 1000)));
  }
  return true;
}

} // namespace herald
