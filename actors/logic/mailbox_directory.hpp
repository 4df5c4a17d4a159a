// The directory of mailbox activations: which user's mailbox is active, which
// are retiring, and which have been idle too long (plain C++; the registry
// owns one).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/logic/clock.hpp"
#include "actors/logic/lru.hpp"

namespace smsp {

/// Keeps, per user, the active mailbox (at most one) and the retiring one
/// (at most one: passivated, still finishing its writes), in the manner of
/// Orleans' activation directory and idle collector. `Handle` reaches a
/// mailbox; `Id` names it in a stop notice (for CAF: the typed handle and its
/// actor_addr; for tests, anything comparable and hashable).
///
/// Invariants: a user has at most one active and at most one retiring
/// mailbox; every handle here is in `owner_` under its id; an entry is only
/// removed for the id it still maps to, so a late notice about an old
/// activation never removes a newer one.
template <class Handle, class Id>
class mailbox_directory {
public:
  /// The active mailbox of `user`, now the most recently used, or nullptr.
  const Handle* touch(const std::string& user, steady_time now) {
    auto entry = active_.touch(user);
    if (entry == nullptr)
      return nullptr;
    entry->last_used = now;
    return &entry->handle;
  }

  /// Whether `user` has an active mailbox; changes nothing.
  bool is_active(const std::string& user) {
    return active_.peek(user) != nullptr;
  }

  /// The retiring mailbox of `user`: a mailbox activated now must wait for
  /// it to finish its writes before it loads.
  std::optional<Handle> retiring(const std::string& user) const {
    auto i = retiring_.find(user);
    if (i == retiring_.end())
      return std::nullopt;
    return i->second.handle;
  }

  /// Records `handle` (named `id`) as `user`'s newly activated mailbox,
  /// used at `now`. `user` must have no active mailbox.
  void activate(const std::string& user, Handle handle, Id id,
                steady_time now) {
    owner_.emplace(id, user);
    active_.put(user, entry{std::move(handle), std::move(id), now});
    ++activations_;
  }

  /// Moves every mailbox unused since `cutoff` (inclusive) from active to
  /// retiring, and returns them, least recently used first. A user whose
  /// mailbox was retiring already keeps only the newer one as retiring;
  /// the older one finishes on its own and its notices are ignored.
  std::vector<std::pair<std::string, Handle>> retire_idle(steady_time cutoff) {
    std::vector<std::pair<std::string, Handle>> out;
    while (!active_.empty() && active_.oldest().second.last_used <= cutoff) {
      auto user = active_.oldest().first;
      auto e = std::move(active_.oldest().second);
      active_.pop_oldest();
      out.emplace_back(user, e.handle);
      retiring_[user] = std::move(e);
      ++passivations_;
    }
    return out;
  }

  /// admin tool: moves `user`'s active mailbox, if any, to retiring at once
  /// (as retire_idle does, without counting a passivation) and returns it.
  std::optional<Handle> retire_now(const std::string& user) {
    auto e = active_.peek(user);
    if (e == nullptr)
      return std::nullopt;
    auto moved = std::move(*e);
    active_.erase(user);
    auto handle = moved.handle;
    retiring_[user] = std::move(moved);
    return handle;
  }

  /// The retiring mailbox `id` of `user` has finished: forgets it, if it is
  /// still the one retiring for `user`.
  void retired(const std::string& user, const Id& id) {
    if (auto i = retiring_.find(user);
        i != retiring_.end() && i->second.id == id)
      retiring_.erase(i);
  }

  /// Mailbox `id` has stopped (for whatever reason): forgets it wherever it
  /// is still listed. Returns its user if it was an active mailbox (it
  /// stopped unexpectedly; the next request activates a new one).
  std::optional<std::string> stopped(const Id& id) {
    auto o = owner_.find(id);
    if (o == owner_.end())
      return std::nullopt;
    auto user = std::move(o->second);
    owner_.erase(o);
    retired(user, id);
    if (auto e = active_.peek(user); e != nullptr && e->id == id) {
      active_.erase(user);
      return user;
    }
    return std::nullopt;
  }

  /// The ids of the mailboxes listed, active or retiring, whose user
  /// satisfies `pred` (e.g. those placed on a node that went down).
  template <class Pred>
  std::vector<Id> ids_where(Pred pred) const {
    std::vector<Id> out;
    for (auto& e : active_.entries())
      if (pred(e.first))
        out.push_back(e.second.id);
    for (auto& e : retiring_)
      if (pred(e.first))
        out.push_back(e.second.id);
    return out;
  }

  /// Calls `f(user)` for every user with an active mailbox.
  template <class F>
  void for_each_active_user(F f) const {
    for (auto& e : active_.entries())
      f(e.first);
  }

  /// Calls `f(handle)` for every mailbox listed, active or retiring.
  template <class F>
  void for_each(F f) const {
    for (auto& e : active_.entries())
      f(e.second.handle);
    for (auto& e : retiring_)
      f(e.second.handle);
  }

  size_t active_count() const {
    return active_.size();
  }

  size_t retiring_count() const {
    return retiring_.size();
  }

  /// Mailboxes whose stop has not been noticed yet.
  size_t known_count() const {
    return owner_.size();
  }

  uint64_t activations() const {
    return activations_;
  }

  uint64_t passivations() const {
    return passivations_;
  }

private:
  struct entry {
    Handle handle;
    Id id;
    steady_time last_used;
  };

  /// Active mailboxes, the longest unused last.
  lru_map<std::string, entry> active_;
  std::unordered_map<std::string, entry> retiring_;
  /// Owners of the mailboxes not yet known to have stopped.
  std::unordered_map<Id, std::string> owner_;
  uint64_t activations_ = 0;
  uint64_t passivations_ = 0;
};

} // namespace smsp
