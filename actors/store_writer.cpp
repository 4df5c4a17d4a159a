// The store's writer actor: owns the writable database, group commit.
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

/// What a write still owes its requester once the group's commit is known:
/// called with nullptr after the commit, or with the error that undid it.
using finish_fn = std::function<void(const caf::error*)>;

struct writer_state {
  /// Shared only to cross spawn (whose arguments must be copyable); this
  /// state is its one owner afterwards.
  std::shared_ptr<store> db;
  /// The writes of the open group, in arrival order.
  std::vector<finish_fn> group;
  /// How long a group may wait for more writes before it commits (see
  /// group_write); zero commits each group as soon as the writes queued
  /// before it are in.
  std::chrono::microseconds commit_delay{0};
  /// Numbers the groups, so that a commit request for an older group is
  /// ignored.
  uint64_t group_number = 0;
  /// The open group's commit is already requested.
  bool commit_requested = false;
  size_t last_group_size = 0;
  /// How long the last commit took (its fsync, mostly).
  std::chrono::microseconds last_commit_time{0};
  uint64_t commits = 0;
  uint64_t writes = 0;
  /// When the open group began (its first write arrived).
  std::chrono::steady_clock::time_point group_opened;
  /// From a group's first write to the end of its commit: how long a write
  /// waits for its OK, at most.
  latency_histogram commit_latency;
  static inline const char* name = "smsp.store";
};

using writer_pointer = writer_actor::stateful_pointer<writer_state>;

/// Commits the open group and answers each of its writes.
void commit_group(writer_pointer self) {
  auto& st = self->state;
  if (!st.db->in_transaction())
    return;
  auto group = std::move(st.group);
  st.group.clear();
  auto started = std::chrono::steady_clock::now();
  try {
    st.db->commit();
    st.last_commit_time = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  } catch (const store_error& err) {
    log_error("store", "commit failed, group of " + std::to_string(group.size())
                         + " undone: " + err.what());
    auto failure = make_error(errc::storage_failed);
    for (auto& finish : group)
      finish(&failure);
    return;
  }
  ++st.commits;
  st.writes += group.size();
  st.commit_latency.observe(std::chrono::steady_clock::now() - st.group_opened);
  st.last_group_size = group.size();
  for (auto& finish : group)
    finish(nullptr);
}

/// Runs one write inside the open group (opening one if needed) and
/// answers it when the group commits. `apply` does the write and returns
/// what to deliver after the commit. A write that throws undoes the whole
/// group: SQLite may already have rolled the transaction back.
template <class... Ts, class Apply>
caf::typed_response_promise<Ts...>
group_write(writer_pointer self, Apply apply) {
  auto& st = self->state;
  auto rp = self->template make_response_promise<Ts...>();
  try {
    if (!st.db->in_transaction()) {
      st.db->begin();
      st.group_opened = std::chrono::steady_clock::now();
      ++st.group_number;
      st.commit_requested = false;
      // Never wait longer than a commit takes: with a fast disk, waiting
      // would cost more than the fsync it saves.
      auto delay = std::min(st.commit_delay, st.last_commit_time);
      if (delay.count() > 0 && st.last_group_size > 1) {
        // Many clients are writing: the ones just answered are about to
        // send their next writes. Waiting a moment for them lets one fsync
        // carry them all, instead of alternating between two half groups
        // (measured: docs/BENCHMARKS.md). The wait ends early once as many
        // writes as in the last group are in.
        self->delayed_send(self, delay, commit_atom::value, st.group_number);
      } else {
        // Queued behind every write already waiting: they join this group.
        self->send(self, commit_atom::value, st.group_number);
        st.commit_requested = true;
      }
    }
    std::function<void()> on_commit = apply(*st.db, rp);
    st.group.emplace_back([rp, on_commit](const caf::error* err) mutable {
      if (err != nullptr)
        rp.deliver(*err);
      else
        on_commit();
    });
    if (!st.commit_requested && st.group.size() >= st.last_group_size) {
      self->send(self, commit_atom::value, st.group_number);
      st.commit_requested = true;
    }
  } catch (const store_error& err) {
    log_error("store", "write failed, group of "
                         + std::to_string(st.group.size() + 1)
                         + " undone: " + err.what());
    if (st.db->in_transaction())
      st.db->rollback();
    auto failure = make_error(errc::storage_failed);
    for (auto& finish : st.group)
      finish(&failure);
    st.group.clear();
    rp.deliver(failure);
  }
  return rp;
}

writer_actor::behavior_type writer(writer_pointer self,
                                   std::shared_ptr<store> db,
                                   std::chrono::microseconds commit_delay) {
  self->state.db = std::move(db);
  self->state.commit_delay = commit_delay;
  // Stopping commits what is open: those writes are done, only their
  // answers are still to go out.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    commit_group(self);
    self->quit(msg.reason);
  });
  return {
    [=](register_atom, const std::string& name, const std::string& hash) {
      return group_write<bool>(self, [&](store& db, auto rp) {
        auto added = db.add_account(name, hash);
        return [rp, added]() mutable { rp.deliver(added); };
      });
    },
    [=](post_atom, const std::string& poster, const std::string& text) {
      return group_write<uint64_t>(self, [&](store& db, auto rp) {
        auto id = db.post(poster, text);
        return [rp, id]() mutable { rp.deliver(id); };
      });
    },
    [=](move_atom, uint64_t imq_id, const std::string& owner) {
      return group_write<uint64_t, std::string>(
        self, [&](store& db, auto rp) -> std::function<void()> {
          auto moved = db.move_to_mailbox(imq_id, owner);
          if (!moved)
            return [rp]() mutable {
              rp.deliver(make_error(errc::nothing_to_store));
            };
          return [rp, mail = std::move(*moved)]() mutable {
            rp.deliver(mail.id, std::move(mail.text));
          };
        });
    },
    [=](caf::delete_atom, uint64_t mail_id) {
      return group_write<caf::ok_atom>(self, [&](store& db, auto rp) {
        db.delete_mail(mail_id);
        return [rp]() mutable { rp.deliver(caf::ok_atom::value); };
      });
    },
    [=](claim_atom, uint64_t imq_id, const std::string& owner) {
      return group_write<std::string>(
        self, [&](store& db, auto rp) -> std::function<void()> {
          auto text = db.claim_move(imq_id, owner);
          if (!text)
            return [rp]() mutable {
              rp.deliver(make_error(errc::nothing_to_store));
            };
          return [rp, text = std::move(*text)]() mutable {
            rp.deliver(std::move(text));
          };
        });
    },
    [=](unclaim_atom, uint64_t imq_id) {
      return group_write<caf::ok_atom>(self, [&](store& db, auto rp) {
        db.unclaim_move(imq_id);
        return [rp]() mutable { rp.deliver(caf::ok_atom::value); };
      });
    },
    [=](settle_atom, uint64_t imq_id) {
      // Settling twice (a move finished again after a crash) is no error:
      // the entry is gone either way.
      return group_write<caf::ok_atom>(self, [&](store& db, auto rp) {
        db.settle_move(imq_id);
        return [rp]() mutable { rp.deliver(caf::ok_atom::value); };
      });
    },
    [=](apply_atom, const std::string& origin, uint64_t imq_id,
        const std::string& owner, const std::string& text) {
      return group_write<uint64_t>(self, [&](store& db, auto rp) {
        auto id = db.apply_move(origin, imq_id, owner, text).value_or(0);
        return [rp, id]() mutable { rp.deliver(id); };
      });
    },
    [=](forget_atom, const std::string& origin, uint64_t imq_id) {
      return group_write<caf::ok_atom>(self, [&](store& db, auto rp) {
        db.forget_applied(origin, imq_id);
        return [rp]() mutable { rp.deliver(caf::ok_atom::value); };
      });
    },
    [=](prune_atom, const std::string& origin, const std::string& owner,
        const std::vector<uint64_t>& keep) {
      return group_write<uint64_t>(self, [&](store& db, auto rp) {
        uint64_t n = db.prune_applied(origin, owner, keep);
        return [rp, n]() mutable { rp.deliver(n); };
      });
    },
    [=](stats_atom) {
      return std::make_tuple(self->state.commits, self->state.writes);
    },
    // admin tool
    [=](purge_atom, const std::string& name) {
      return group_write<uint64_t, uint64_t>(
        self, [&](store& db, auto rp) -> std::function<void()> {
          auto removed = db.remove_user(name);
          if (!removed)
            return
              [rp]() mutable { rp.deliver(make_error(errc::no_such_user)); };
          return [rp, r = *removed]() mutable { rp.deliver(r.mail, r.imq); };
        });
    },
    [=](passwd_atom, const std::string& name, const std::string& hash) {
      return group_write<caf::ok_atom>(
        self, [&](store& db, auto rp) -> std::function<void()> {
          if (!db.set_password_hash(name, hash))
            return
              [rp]() mutable { rp.deliver(make_error(errc::no_such_user)); };
          return [rp]() mutable { rp.deliver(caf::ok_atom::value); };
        });
    },
    [=](commit_atom, uint64_t number) {
      if (number == self->state.group_number)
        commit_group(self);
    },
    [=](metrics_atom) {
      auto& st = self->state;
      return writer_figures{st.commits, st.writes, st.commit_latency};
    },
  };
}

} // namespace

writer_actor spawn_writer(caf::actor_system& sys, store db,
                          std::chrono::microseconds commit_delay) {
  return sys.spawn<caf::detached>(
    writer, std::make_shared<store>(std::move(db)), commit_delay);
}

} // namespace smsp
