// supervised_plugin_restart.cpp — the host's life after its start: a dead one restarted in the
// background after its backoff (ready_generation, restart), on the user's request (reload), switched
// off on request, killed generations let go outside the lock, and the host's end (stop).
#include "supervisor/supervised_plugin_parts.hpp"

#include <algorithm>
#include <future>
#include <thread>

namespace bulkhead {
using namespace supervised_parts;

std::string SupervisedPlugin::stop() {
  std::shared_future<void> restarting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    restarting = std::move(restart_task_);
  }
  if (restarting.valid()) restarting.wait();
  release_retired();
  std::shared_ptr<Generation> generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation = std::move(current_);
    shut_down_ = true;
  }
  // A host that died before has had its fault counted: only how a running one ends is news.
  if (!generation || !generation->process->running()) return "";
  generation->connection->notify("shutdown", {{"reason", "training ended"}});
  std::string wrong;
  if (!generation->process->wait_for_exit(std::chrono::seconds(2))) {
    generation->process->terminate(std::chrono::seconds(3));
    wrong = "it was still running 2 s after the shutdown notification, and was terminated";
  } else if (generation->process->exit_status() != 0) {
    wrong = "after the shutdown notification it ended with " + generation->process->exit_description() +
            ", not exit status 0";
  }
  if (!wrong.empty()) log_->warn("{}: {}", manifest_.name, wrong);
  return wrong;
}

void SupervisedPlugin::reload(bool keep_state, std::int64_t global_step) {
  // The running host's state is the freshest there is: asked for before it goes.
  if (keep_state && keeps_state()) snapshot_state({{"global_step", global_step}, {"reason", "reload"}}, true);
  std::shared_ptr<Generation> old;
  long reloads = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!keep_state) state_.reset();
    reloads = counters_.count_reload();
    policy_.forgive();
    switched_off_ = false;
    if (current_ && !current_->dead) old = current_, current_->dead = true;
  }
  if (old) old->process->kill_group();
  log_->warn("{}: restarting at the user's request (reload {}{})", manifest_.name, reloads,
             keep_state ? "" : ", without its state");
}

void SupervisedPlugin::switch_off(const std::string& why) {
  std::shared_ptr<Generation> to_kill;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!policy_.quarantine(why)) return;  // already off
    switched_off_ = true;
    if (current_) to_kill = current_, current_->dead = true;
  }
  if (to_kill) to_kill->process->kill_group();
  retire(std::move(to_kill));
  log_->warn("{}: {}: off for the rest of this run", manifest_.name, why);
}

// Letting a killed generation go reaps its processes and joins its I/O thread (tens of ms), so it
// is done outside the lock, and never by a notify's caller (ready_generation) or an I/O thread.
void SupervisedPlugin::release_retired() {
  std::vector<std::shared_ptr<Generation>> retired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    retired.swap(retired_);
  }
}

// fault() and quarantine() run on a connection's I/O thread; were they to drop the last reference
// to that connection's generation, its destructor would join the thread it runs on. They park it
// here instead, and ready_generation or the restart (never an I/O thread) lets it go.
void SupervisedPlugin::retire(std::shared_ptr<Generation> generation) {
  if (!generation) return;
  std::lock_guard<std::mutex> lock(mutex_);
  retired_.push_back(std::move(generation));
}

std::shared_ptr<SupervisedPlugin::Generation> SupervisedPlugin::ready_generation(std::chrono::milliseconds wait,
                                                                                 std::chrono::milliseconds backoff_wait) {
  if (wait.count() > 0) release_retired();  // a notify leaves it to the restart
  std::shared_ptr<Generation> idle_dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (policy_.quarantined()) return nullptr;
    if (current_ && !current_->dead) {
      if (current_->process->running()) return current_;
      idle_dead = current_;  // died between calls (killed from outside, OOM killer, ...)
    }
  }
  const auto give_up = Clock::now() + wait;
  if (idle_dead) {
    // Calls still in flight on it will report the crash as theirs, with their hook (within the
    // connection's next look at the process), and so will the one it blamed, whose caller may not
    // have concluded yet: a call that may wait lets them, then goes on to the restart; a notify is
    // skipped. With none in flight and none blamed, it really died between calls.
    auto reported = [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      return current_ != idle_dead || idle_dead->dead;
    };
    while ((idle_dead->connection->pending() > 0 || idle_dead->connection->blamed_a_request()) && !reported()) {
      if (Clock::now() >= give_up) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    bool between_calls = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      between_calls = current_ == idle_dead && !idle_dead->dead;
      if (between_calls) counters_.count_failure("(idle)", Reply::Status::disconnected);
    }
    if (between_calls)
      fault("(idle)", "crashed between calls: " + idle_dead->process->exit_description(), idle_dead->number, true);
  }
  std::shared_future<void> previous;  // a finished restart; released outside the lock
  std::shared_future<void> restarting;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (policy_.quarantined()) return nullptr;
    if (current_ && !current_->dead) return current_;
    if (!starting_ && !policy_.may_start()) {
      // Backing off after a fault: a call waits for the backoff, up to its deadline (a notify
      // does not wait), and counts the wait; the restart then begins below.
      const auto start_at = policy_.next_start();
      if (wait.count() == 0 || start_at > std::min(give_up, Clock::now() + backoff_wait)) return nullptr;
      counters_.count_backoff_wait();
      lock.unlock();
      std::this_thread::sleep_until(start_at);
      lock.lock();
      if (policy_.quarantined()) return nullptr;
      if (current_ && !current_->dead) return current_;
    }
    if (!starting_) {
      if (!policy_.may_start()) return nullptr;
      // Never in the caller's thread: a start may wait seconds for a hello, and the caller is a
      // loader worker or the training loop.
      starting_ = true;
      previous = std::move(restart_task_);
      restart_task_ = std::async(std::launch::async, [this, old = std::move(current_)]() mutable {
                        old.reset();
                        release_retired();
                        restart();
                      }).share();
    }
    restarting = restart_task_;
  }
  if (wait.count() > 0) restarting.wait_until(give_up);
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ && !current_->dead ? current_ : nullptr;
}

std::shared_ptr<SupervisedPlugin::Generation> SupervisedPlugin::restart() {
  try {
    start();
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    log_->warn("{}: restarted (restart {})", manifest_.name, counters_.count_restart());
    return current_;
  } catch (const LoadFailure& e) {
    log_->error("{}", e.what());
    count_failure("(start)", Reply::Status::disconnected);
    quarantine("(start)", e.what());
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    return nullptr;
  } catch (const std::exception& e) {
    start_failed(e);
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    return nullptr;
  }
}

// A start that crashed or timed out: a fault, and the next start waits for the backoff.
void SupervisedPlugin::start_failed(const std::exception& e) {
  log_->error("{}", e.what());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_failure("(start)", Reply::Status::error);
    policy_.start_failed();
  }
  fault("(start)", e.what(), generation_, false);
}

}  // namespace bulkhead
