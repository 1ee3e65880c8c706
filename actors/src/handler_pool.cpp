#include "herald/actors/handler_pool.hpp"

#include <pthread.h>

#include <chrono>
#include <cstdint>
#include <system_error>
#include <utility>

#include <caf/send.hpp>

#include "pool.hpp"

namespace herald {

namespace detail {

namespace {

using std::chrono::steady_clock;

// A call that took longer than this is reported at once; quicker ones are
// gathered (up to `batch_results`) while more work is queued, so that a
// handler that does nothing costs one message per batch, not per event.
constexpr auto report_at_once = std::chrono::microseconds{100};
constexpr size_t batch_results = 64;

// Outcomes gathered by one thread, per shard.
class outbox {
public:
  void add(const caf::actor& to, pool_result r) {
    ++size_;
    for (auto& [dest, results] : per_shard_)
      if (dest == to) {
        results.push_back(std::move(r));
        return;
      }
    per_shard_.emplace_back(to, pool_results{});
    per_shard_.back().second.push_back(std::move(r));
  }

  size_t size() const noexcept {
    return size_;
  }

  void flush() {
    for (auto& [dest, results] : per_shard_)
      if (!results.empty()) {
        caf::anon_send(dest, handled_atom::value, std::move(results));
        results = {};
      }
    size_ = 0;
  }

private:
  std::vector<std::pair<caf::actor, pool_results>> per_shard_;
  size_t size_ = 0;
};

// A thread whose call has run this long is waiting (on I/O, a lock, a
// sleep), not computing. When every thread is in such a call and work is
// queued, threads start for the queued work, up to the maximum. Quick
// handlers never look like that, so they run on few threads, without the
// cost of waking dozens.
constexpr auto waiting_call = std::chrono::microseconds{500};

// Queued jobs per thread beyond which quick calls get another thread.
constexpr size_t backlog_per_thread = 256;

size_t cores() {
  static const size_t n = std::max(2u, std::thread::hardware_concurrency());
  return n;
}

void start_thread(pool_core& core);

// Starts threads for queued work when every thread is in a call that
// waits; `waited`, when given, is a thread that just ended such a call and
// counts as one. REQUIRES: core.mtx held.
void grow_if_waiting(pool_core& core, steady_clock::time_point now,
                     size_t waited = SIZE_MAX) {
  if (core.queue.empty() || core.idle > 0
      || core.threads.size() >= core.max_threads)
    return;
  // Quick calls faster than one thread keeps up with: one more thread, up
  // to the cores.
  if (core.queue.size() > backlog_per_thread * core.threads.size()
      && core.threads.size() < cores()) {
    start_thread(core);
    return;
  }
  for (size_t i = 0; i < core.call_since.size(); ++i) {
    auto since = core.call_since[i];
    if (i != waited
        && (since == steady_clock::time_point::max()
            || now - since < waiting_call))
      return;
  }
  auto wanted =
    std::min(core.queue.size(), core.max_threads - core.threads.size());
  for (size_t i = 0; i < wanted; ++i)
    start_thread(core);
}

void work(pool_core* core, size_t slot) {
  outbox out;
  std::unique_lock<std::mutex> guard{core->mtx};
  for (;;) {
    if (core->queue.empty() && !core->stopping) {
      if (out.size() > 0) {
        guard.unlock();
        out.flush();
        guard.lock();
        continue;
      }
      ++core->idle;
      core->wake.wait(guard, [&] {
        return core->stopping || !core->queue.empty();
      });
      --core->idle;
    }
    if (core->stopping)
      return; // the shards are gone: nobody reads what is gathered
    // One job at a time: a thread never holds work behind a call that
    // waits.
    auto job = std::move(core->queue.front());
    core->queue.pop_front();
    auto started = steady_clock::now();
    core->call_since[slot] = started;
    guard.unlock();
    core->running.fetch_add(1, std::memory_order_relaxed);
    auto o = call_handlers(*job.subs, job.ev);
    auto took = steady_clock::now() - started;
    core->running.fetch_sub(1, std::memory_order_relaxed);
    out.add(job.reply_to, {std::move(job.key), job.id, std::move(o)});
    job = {}; // the event's buffer goes now, not with the next job
    if (took > report_at_once || out.size() >= batch_results)
      out.flush();
    guard.lock();
    core->call_since[slot] = steady_clock::time_point::max();
    grow_if_waiting(*core, steady_clock::now(),
                    took >= waiting_call ? slot : SIZE_MAX);
  }
}

void start_thread(pool_core& core) {
  try {
    // `stop` joins every thread before the core can go.
    core.threads.emplace_back(work, &core, core.threads.size());
  } catch (const std::system_error&) {
    return; // the threads there are take the work, only slower
  }
  core.call_since.push_back(steady_clock::time_point::max());
  auto name = core.name.substr(0, 15);
  pthread_setname_np(core.threads.back().native_handle(), name.c_str());
}

} // namespace

void submit(pool_core& core, std::vector<pool_job>& jobs) {
  if (jobs.empty())
    return;
  size_t wake = 0;
  auto now = steady_clock::now();
  {
    std::lock_guard<std::mutex> guard{core.mtx};
    if (core.stopping) {
      jobs.clear();
      return;
    }
    for (auto& j : jobs)
      core.queue.push_back(std::move(j));
    if (core.threads.empty())
      start_thread(core);
    else
      grow_if_waiting(core, now);
    wake = std::min(core.idle, jobs.size());
  }
  jobs.clear();
  if (wake == 1)
    core.wake.notify_one();
  else if (wake > 1)
    core.wake.notify_all();
}

void nudge(pool_core& core) {
  std::lock_guard<std::mutex> guard{core.mtx};
  if (!core.stopping)
    grow_if_waiting(core, steady_clock::now());
}

} // namespace detail

handler_pool::handler_pool(size_t threads, std::string consumer)
    : core_(std::make_shared<detail::pool_core>()) {
  core_->name = "herald-" + consumer;
  core_->max_threads = threads;
}

handler_pool::~handler_pool() {
  stop();
}

void handler_pool::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> guard{core_->mtx};
    core_->stopping = true;
    core_->queue.clear();
    threads = std::move(core_->threads);
    core_->threads.clear();
  }
  core_->wake.notify_all();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
}

size_t handler_pool::max_threads() const noexcept {
  return core_->max_threads;
}

size_t handler_pool::running() const noexcept {
  return core_->running.load(std::memory_order_relaxed);
}

} // namespace herald
