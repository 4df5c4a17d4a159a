// Password hashing pool: Argon2id workers on own threads, one bounded queue.
#include <deque>
#include <functional>
#include <vector>

#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

// Runs on a thread of its own, so a hash never blocks the scheduler's
// workers, the brokers or the registry.
hash_worker_actor::behavior_type hash_worker(hash_worker_actor::pointer self,
                                             pwhash_cost cost) {
  return {
    [=](hash_atom, const std::string& password) -> caf::result<std::string> {
      if (auto hash = hash_password(password, cost))
        return std::move(*hash);
      return caf::make_error(caf::sec::runtime_error,
                             "cannot allocate memory for a password hash");
    },
    [=](verify_atom, const std::string& hash, const std::string& password) {
      return verify_password(hash, password);
    },
  };
}

struct hasher_pool_state {
  timeouts waits;
  size_t max_queue = 0;
  size_t workers = 0;
  std::vector<hash_worker_actor> idle;
  /// Jobs waiting for a worker; each runs its request on the worker given.
  std::deque<std::function<void(hash_worker_actor)>> waiting;
  /// Seconds from handing a job to a worker to its answer.
  latency_histogram hash_time;
  static inline const char* name = "smsp.hasher";
};

using pool_pointer = hasher_actor::stateful_pointer<hasher_pool_state>;

void release(pool_pointer self, hash_worker_actor worker) {
  auto& st = self->state;
  if (st.waiting.empty()) {
    st.idle.emplace_back(std::move(worker));
    return;
  }
  auto job = std::move(st.waiting.front());
  st.waiting.pop_front();
  job(std::move(worker));
}

template <class Result, class... Ts>
caf::result<Result> submit(pool_pointer self, Ts... args) {
  auto& st = self->state;
  if (st.idle.empty() && st.waiting.size() >= st.max_queue)
    return errc::server_busy;
  auto rp = self->template make_response_promise<Result>();
  auto job = [=](hash_worker_actor worker) mutable {
    auto started = std::chrono::steady_clock::now();
    auto took = [=] { return std::chrono::steady_clock::now() - started; };
    self->request(worker, self->state.waits.hashing, args...)
      .then(
        [=](Result& value) mutable {
          self->state.hash_time.observe(took());
          rp.deliver(std::move(value));
          release(self, worker);
        },
        [=](caf::error& err) mutable {
          self->state.hash_time.observe(took());
          rp.deliver(std::move(err));
          release(self, worker);
        });
  };
  if (st.idle.empty()) {
    st.waiting.emplace_back(std::move(job));
  } else {
    auto worker = std::move(st.idle.back());
    st.idle.pop_back();
    job(std::move(worker));
  }
  return rp;
}

hasher_actor::behavior_type hasher_pool(pool_pointer self, hasher_config cfg,
                                        timeouts waits) {
  auto& st = self->state;
  st.waits = waits;
  st.max_queue = cfg.max_queue;
  st.workers = std::max<size_t>(cfg.workers, 1);
  for (size_t i = 0; i < st.workers; ++i)
    st.idle.emplace_back(
      self->spawn<caf::detached + caf::linked>(hash_worker, cfg.cost));
  return {
    [=](hash_atom, std::string& password) {
      return submit<std::string>(self, hash_atom::value, std::move(password));
    },
    [=](verify_atom, std::string& hash, std::string& password) {
      return submit<bool>(self, verify_atom::value, std::move(hash),
                          std::move(password));
    },
    [=](metrics_atom) {
      auto& st = self->state;
      return hasher_figures{st.waiting.size(), st.workers - st.idle.size(),
                            st.workers, st.hash_time};
    },
  };
}

} // namespace

hasher_actor spawn_hasher(caf::actor_system& sys, const hasher_config& cfg) {
  return sys.spawn(hasher_pool, cfg, timeouts{});
}

} // namespace smsp
