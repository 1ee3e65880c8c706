#include "herald/actors/handler_pool.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <utility>

#include <caf/send.hpp>

#include "pool.hpp"

namespace herald {

namespace detail {

namespace {

using clock = pool_core::clock;

// A call that took longer than this is reported at once; quicker ones are
// gathered (up to `batch_results`) while more work is queued, so that a
// handler that does nothing costs one message per batch, not per event.
constexpr auto report_at_once = std::chrono::microseconds{100};
constexpr size_t batch_results = 64;

// Outcomes gathered by one thread, per shard.
class outbox {
public:
  void add(const std::shared_ptr<const pool_source>& to, pool_result r) {
    ++size_;
    for (auto& [dest, results] : per_source_)
      if (dest == to) {
        results.push_back(std::move(r));
        return;
      }
    auto& results = per_source_.emplace_back(to, pool_results{}).second;
    results.reserve(batch_results);
    results.push_back(std::move(r));
  }

  size_t size() const noexcept {
    return size_;
  }

  // Sends each shard its outcomes in one message, and forgets the shards
  // (a shard whose handlers changed has a new source).
  void flush() {
    for (auto& [dest, results] : per_source_)
      caf::anon_send(dest->reply_to, handled_atom::value, std::move(results));
    per_source_.clear();
    size_ = 0;
  }

private:
  std::vector<std::pair<std::shared_ptr<const pool_source>, pool_results>>
    per_source_;
  size_t size_ = 0;
};

// A call that has run this long may be waiting (on I/O, a lock, a sleep)
// rather than computing. When every thread is in such a call and work is
// queued, threads start for the queued work, up to the maximum, if the
// threads really wait: on a loaded machine a quick call preempted half-way
// looks the same by the clock, so the kernel is asked (see `asleep` and
// `voluntary_switches`). Quick handlers so run on few threads, without the
// cost of waking dozens.
constexpr auto waiting_call = std::chrono::microseconds{500};

// How often, at most, the kernel is asked whether the pool's threads sleep.
constexpr auto probe_every = std::chrono::milliseconds{1};

// Queued jobs per thread beyond which quick calls get another thread.
constexpr size_t backlog_per_thread = 256;

size_t cores() {
  static const size_t n = std::max(2u, std::thread::hardware_concurrency());
  return n;
}

// Times the calling thread gave up its core (to wait on I/O, a lock, a
// timer) rather than being preempted; getrusage(2), RUSAGE_THREAD.
long voluntary_switches() {
  rusage use{};
  if (::getrusage(RUSAGE_THREAD, &use) != 0)
    return 0;
  return use.ru_nvcsw;
}

// Whether thread `tid` of this process sleeps (waits on I/O, a lock, a
// timer) rather than runs or waits for a core: its state in
// /proc/self/task/TID/stat, proc(5). Without procfs the clock alone
// decides: true.
bool asleep(pid_t tid) {
  if (tid == 0)
    return false; // not running yet
  char path[48];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/stat",
                static_cast<int>(tid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return true;
  char buf[256];
  auto n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n <= 0)
    return true;
  // "TID (COMM) STATE ...": COMM may hold ')', the fields after it do not.
  auto* close_paren =
    static_cast<const char*>(::memrchr(buf, ')', static_cast<size_t>(n)));
  if (close_paren == nullptr || close_paren + 2 >= buf + n)
    return true;
  return close_paren[2] != 'R';
}

void start_thread(pool_core& core);

// Starts threads for queued work when every thread is in a call that
// waits; `waited`, when given, is a thread that just ended a call in which
// it waited, and counts as one. REQUIRES: core.mtx held.
void grow_if_waiting(pool_core& core, clock::time_point now,
                     size_t waited = SIZE_MAX) {
  if (core.queued == 0 || core.idle > 0
      || core.threads.size() >= core.max_threads)
    return;
  // Quick calls faster than one thread keeps up with: one more thread, up
  // to the cores.
  if (core.queued > backlog_per_thread * core.threads.size()
      && core.threads.size() < cores()) {
    start_thread(core);
    return;
  }
  for (size_t i = 0; i < core.threads.size(); ++i) {
    auto since = core.call_since[i].load(std::memory_order_relaxed);
    if (i != waited
        && (since == idle_since
            || now - clock::time_point{clock::duration{since}} < waiting_call))
      return;
  }
  if (now - core.last_probe < probe_every)
    return;
  core.last_probe = now;
  for (size_t i = 0; i < core.threads.size(); ++i)
    if (i != waited && !asleep(core.tids[i]))
      return;
  auto wanted = std::min(core.queued, core.max_threads - core.threads.size());
  for (size_t i = 0; i < wanted; ++i)
    start_thread(core);
}

void work(pool_core* core, size_t slot) {
  outbox out;
  std::shared_ptr<const pool_source> source;
  auto& since = core->call_since[slot];
  // Whether this thread's last call was slow: its next is watched for
  // waiting (two getrusage calls, noise beside a call that slow).
  bool slow = true;
  std::unique_lock<std::mutex> guard{core->mtx};
  core->tids[slot] = ::gettid();
  auto last = clock::now();
  for (;;) {
    if (core->queued == 0 && !core->stopping) {
      if (out.size() > 0) {
        guard.unlock();
        out.flush();
        guard.lock();
        continue;
      }
      ++core->idle;
      core->wake.wait(guard, [&] {
        return core->stopping || core->queued > 0;
      });
      --core->idle;
      last = clock::now();
    }
    if (core->stopping)
      return; // the shards are gone: nobody reads what is gathered
    // One job at a time: a thread never holds work behind a call that
    // waits.
    auto& batch = core->queue.front();
    auto job = std::move(batch.jobs[batch.next++]);
    if (source != batch.source)
      source = batch.source;
    if (batch.next == batch.jobs.size())
      core->queue.pop_front();
    --core->queued;
    since.store(last.time_since_epoch().count(), std::memory_order_relaxed);
    guard.unlock();
    core->running.fetch_add(1, std::memory_order_relaxed);
    auto switches = slow ? voluntary_switches() : 0;
    auto o = call_handlers(*source->subs, *job.ev);
    auto end = clock::now();
    auto took = end - last;
    last = end;
    bool waited =
      slow && took >= waiting_call && voluntary_switches() > switches;
    slow = took >= waiting_call;
    since.store(idle_since, std::memory_order_relaxed);
    core->running.fetch_sub(1, std::memory_order_relaxed);
    out.add(source, {job.entity, job.id, std::move(o)});
    if (took > report_at_once || out.size() >= batch_results)
      out.flush();
    guard.lock();
    core->quick = took < waiting_call;
    grow_if_waiting(*core, end, waited ? slot : SIZE_MAX);
  }
}

void start_thread(pool_core& core) {
  auto slot = core.threads.size();
  core.tids.push_back(0);
  try {
    // `stop` joins every thread before the core can go.
    core.threads.emplace_back(work, &core, slot);
  } catch (const std::system_error&) {
    core.tids.pop_back();
    return; // the threads there are take the work, only slower
  }
  auto name = core.name.substr(0, 15);
  pthread_setname_np(core.threads.back().native_handle(), name.c_str());
}

} // namespace

void submit(pool_core& core, const std::shared_ptr<const pool_source>& source,
            std::vector<pool_job>& jobs) {
  if (jobs.empty())
    return;
  size_t wake = 0;
  {
    std::lock_guard<std::mutex> guard{core.mtx};
    if (core.stopping) {
      jobs.clear();
      return;
    }
    auto n = jobs.size();
    core.queue.push_back({source, std::move(jobs), 0});
    core.queued += n;
    if (core.threads.empty())
      start_thread(core);
    else
      grow_if_waiting(core, clock::now());
    if (core.quick) {
      // Quick calls: as many threads take work as the backlog needs.
      auto busy = core.threads.size() - core.idle;
      auto wanted =
        std::min(core.threads.size(), 1 + core.queued / backlog_per_thread);
      wake = wanted > busy ? std::min(wanted - busy, core.idle) : 0;
    } else {
      wake = std::min(core.idle, n);
    }
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
    grow_if_waiting(core, clock::now());
}

} // namespace detail

handler_pool::handler_pool(size_t threads, std::string consumer)
    : core_(std::make_shared<detail::pool_core>()) {
  core_->name = "herald-" + consumer;
  core_->max_threads = threads;
  core_->call_since =
    std::make_unique<std::atomic<detail::pool_core::clock::rep>[]>(threads);
  for (size_t i = 0; i < threads; ++i)
    core_->call_since[i].store(detail::idle_since);
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
    core_->queued = 0;
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
