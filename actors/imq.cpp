// IMQ actor: the incoming message queue's index; the texts live in the store.
#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include "actors/io_thread.hpp"
#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

/// One poster's queued messages.
struct poster_queue {
  /// Committed ids a STORE may take, oldest first. An id being stored or
  /// claimed is not here, so no second STORE takes it.
  std::set<uint64_t> storable;
  /// Posts and STOREs waiting for their commit.
  size_t posting = 0;
  size_t storing = 0;
  /// Entries claimed for a move to a node, not yet settled.
  size_t claimed = 0;
  /// STOREs that arrived while posts were waiting for their commit.
  std::vector<std::function<void()>> waiting;

  size_t total() const {
    return storable.size() + posting + storing + claimed;
  }
};

/// An IMQ entry claimed for a move to a mailbox on a node.
struct claim {
  std::string poster;
  std::string owner;
};

struct imq_state {
  writer_actor writer;
  mail_limits mail;
  /// How long a node may take to apply a move.
  std::chrono::milliseconds node_timeout{1000};
  /// Invariant: no poster here has total() == 0.
  std::unordered_map<std::string, poster_queue> posters;
  /// Claimed entries by IMQ id, and per owner in claim order (the order in
  /// which their STOREs were made, which a mailbox's FIFO keeps).
  std::unordered_map<uint64_t, claim> claims;
  std::unordered_map<std::string, std::vector<uint64_t>> claims_by_owner;
  uint64_t queued = 0;
  /// admin tool: users being deleted, each with the answer it owes; a
  /// purge starts once that poster has no post or STORE under way.
  struct purge_job {
    caf::typed_response_promise<uint64_t, uint64_t> rp;
    /// Sent to the writer: the poster's storable posts are out of memory.
    bool started = false;
  };
  std::unordered_map<std::string, purge_job> purging;
  static inline const char* name = "smsp.imq";
};

using imq_pointer = io_thread_actor<imq_state, imq_actor>*;

void maybe_purge(imq_pointer self, const std::string& poster);

using store_promise = caf::typed_response_promise<uint64_t, std::string>;
using move_promise = caf::typed_response_promise<caf::ok_atom>;

void forget_if_empty(imq_pointer self, const std::string& poster) {
  auto& posters = self->state.posters;
  if (auto i = posters.find(poster);
      i != posters.end() && i->second.total() == 0)
    posters.erase(i);
}

/// Takes the poster's most recent committed message out of the storable
/// ones, or returns 0 when there is none.
uint64_t take_latest(imq_pointer self, const std::string& poster) {
  auto mine = self->state.posters.find(poster);
  if (mine == self->state.posters.end() || mine->second.storable.empty())
    return 0;
  auto id = *mine->second.storable.rbegin();
  mine->second.storable.erase(id);
  ++mine->second.storing;
  return id;
}

/// Moves the poster's most recent committed message to `owner`'s mailbox
/// in this store.
void start_store(imq_pointer self, const std::string& poster,
                 const std::string& owner, store_promise rp) {
  auto id = take_latest(self, poster);
  if (id == 0) {
    rp.deliver(make_error(errc::nothing_to_store));
    return;
  }
  // One transaction removes the entry and appends it to the mailbox.
  self->request(self->state.writer, caf::infinite, move_atom::value, id, owner)
    .then(
      [=](uint64_t mail_id, std::string& text) mutable {
        --self->state.posters[poster].storing;
        --self->state.queued;
        forget_if_empty(self, poster);
        rp.deliver(mail_id, std::move(text));
        maybe_purge(self, poster);
      },
      [=](caf::error& err) mutable {
        auto& mine = self->state.posters[poster];
        --mine.storing;
        // Not committed: the message is storable again, in its place.
        mine.storable.insert(id);
        rp.deliver(std::move(err));
        maybe_purge(self, poster);
      });
}

void add_claim(imq_state& st, uint64_t id, claim c) {
  st.claims_by_owner[c.owner].push_back(id);
  ++st.posters[c.poster].claimed;
  st.claims.emplace(id, std::move(c));
}

/// Drops the claim of `id` (settled or taken back); returns it.
std::optional<claim> drop_claim(imq_pointer self, uint64_t id) {
  auto& st = self->state;
  auto i = st.claims.find(id);
  if (i == st.claims.end())
    return std::nullopt;
  auto c = std::move(i->second);
  st.claims.erase(i);
  auto& ids = st.claims_by_owner[c.owner];
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  if (ids.empty())
    st.claims_by_owner.erase(c.owner);
  --st.posters[c.poster].claimed;
  return c;
}

/// The node applied move `id`: removes the entry here, then lets the node
/// forget it applied it. If this commit fails, the claim stays and the
/// next activation of the mailbox settles it.
void settle(imq_pointer self, uint64_t id, mailbox_actor box) {
  self->request(self->state.writer, caf::infinite, settle_atom::value, id)
    .then(
      [=](caf::ok_atom) {
        if (auto c = drop_claim(self, id)) {
          --self->state.queued;
          forget_if_empty(self, c->poster);
        }
        self->send(box, forget_atom::value, id);
      },
      [=](caf::error& err) {
        log_warn("imq", "settling move " + std::to_string(id)
                          + " failed, it stays claimed: " + to_string(err));
      });
}

/// Moves the poster's most recent message to `owner`'s mailbox `box` on a
/// node, exactly once: claim here (durable), apply there (durable, once
/// per id), settle here. Answered once the node has applied it.
void start_remote_store(imq_pointer self, const std::string& poster,
                        const std::string& owner, mailbox_actor box,
                        move_promise rp) {
  auto id = take_latest(self, poster);
  if (id == 0) {
    rp.deliver(make_error(errc::nothing_to_store));
    return;
  }
  auto& st = self->state;
  self->request(st.writer, caf::infinite, claim_atom::value, id, owner)
    .then(
      [=](std::string& text) mutable {
        auto& st = self->state;
        --st.posters[poster].storing;
        add_claim(st, id, claim{poster, owner});
        // A first attempt: the node may refuse it as full.
        self
          ->request(box, st.node_timeout, apply_atom::value, id,
                    std::move(text), true)
          .then(
            [=](caf::ok_atom) mutable {
              rp.deliver(caf::ok_atom::value);
              settle(self, id, box);
            },
            [=](caf::error& err) mutable {
              if (err != make_error(errc::mailbox_full)) {
                // No answer: the node may have applied it or not. The claim
                // stays; the mailbox's next activation completes it.
                rp.deliver(make_error(errc::mailbox_unavailable));
                return;
              }
              // Refused, so never applied: the message is storable again.
              self
                ->request(self->state.writer, caf::infinite,
                          unclaim_atom::value, id)
                .then(
                  [=](caf::ok_atom) mutable {
                    if (auto c = drop_claim(self, id))
                      self->state.posters[c->poster].storable.insert(id);
                    rp.deliver(make_error(errc::mailbox_full));
                  },
                  [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
            });
      },
      [=](caf::error& err) mutable {
        auto& mine = self->state.posters[poster];
        --mine.storing;
        mine.storable.insert(id);
        rp.deliver(std::move(err));
      });
}

/// Re-sends `ids[i...]`, claimed for `owner`, to its mailbox `box` one
/// after the other (their order is the mailbox's order), then answers.
void finish_moves(imq_pointer self, std::string owner, mailbox_actor box,
                  std::vector<uint64_t> ids, size_t i, move_promise rp) {
  if (i == ids.size()) {
    rp.deliver(caf::ok_atom::value);
    return;
  }
  auto id = ids[i];
  auto& st = self->state;
  if (st.claims.count(id) == 0) {
    // Settled meanwhile.
    finish_moves(self, std::move(owner), std::move(box), std::move(ids), i + 1,
                 rp);
    return;
  }
  auto fail = [=](caf::error&) mutable {
    rp.deliver(make_error(errc::mailbox_unavailable));
  };
  // Claiming again returns the text (the claim is this owner's already).
  self->request(st.writer, caf::infinite, claim_atom::value, id, owner)
    .then(
      [=](std::string& text) mutable {
        self
          ->request(box, self->state.node_timeout, apply_atom::value, id,
                    std::move(text), false)
          .then(
            [=](caf::ok_atom) mutable {
              settle(self, id, box);
              finish_moves(self, std::move(owner), std::move(box),
                           std::move(ids), i + 1, rp);
            },
            fail);
      },
      fail);
}

/// Runs the STOREs that waited for the poster's posts, once none is under
/// way.
void post_done(imq_pointer self, const std::string& poster) {
  auto& mine = self->state.posters[poster];
  --mine.posting;
  if (mine.posting == 0 && !mine.waiting.empty()) {
    auto waiting = std::move(mine.waiting);
    mine.waiting.clear();
    for (auto& start : waiting)
      start();
  }
  forget_if_empty(self, poster);
  maybe_purge(self, poster);
}

/// admin tool: starts the purge of `poster` if one waits and nothing of
/// theirs is under way. Their storable posts leave memory only after the
/// writer's transaction removed them (memory follows commits); a failed
/// purge puts them back.
void maybe_purge(imq_pointer self, const std::string& poster) {
  auto& st = self->state;
  auto p = st.purging.find(poster);
  if (p == st.purging.end() || p->second.started)
    return;
  std::set<uint64_t> taken;
  if (auto i = st.posters.find(poster); i != st.posters.end()) {
    if (i->second.posting + i->second.storing > 0)
      return;
    // No STORE may take these while the purge is under way.
    taken = std::move(i->second.storable);
    i->second.storable.clear();
  }
  self->request(st.writer, caf::infinite, purge_atom::value, poster)
    .then(
      [=](uint64_t mail, uint64_t imq) {
        auto& st = self->state;
        st.queued -= taken.size();
        forget_if_empty(self, poster);
        auto rp = st.purging[poster].rp;
        st.purging.erase(poster);
        rp.deliver(mail, imq);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        if (!taken.empty())
          st.posters[poster].storable.insert(taken.begin(), taken.end());
        auto rp = st.purging[poster].rp;
        st.purging.erase(poster);
        rp.deliver(std::move(err));
      });
  p->second.started = true;
}

/// Runs `start` now, or after the poster's posts under way: a STORE may
/// overtake the poster's MESSAGE on its way here (it travels through the
/// target mailbox or the registry's lookup), and takes effect after the
/// posts under way, as their poster sent it. The poster must be known.
template <class Start>
void after_posts(imq_pointer self, const std::string& poster, Start start) {
  auto& mine = self->state.posters.at(poster);
  if (mine.posting > 0)
    mine.waiting.emplace_back(std::move(start));
  else
    start();
}

imq_actor::behavior_type
imq(imq_pointer self, writer_actor writer, std::vector<queued_message> queued,
    std::vector<claimed_move> claimed, imq_config cfg) {
  auto& st = self->state;
  st.writer = std::move(writer);
  st.mail = cfg.mail;
  st.node_timeout = cfg.node_timeout;
  std::unordered_map<uint64_t, std::string> poster_of;
  for (auto& msg : queued) {
    if (msg.claimed_for.empty())
      st.posters[msg.poster].storable.insert(msg.id);
    else
      poster_of.emplace(msg.id, msg.poster);
  }
  for (auto& move : claimed)
    if (auto i = poster_of.find(move.imq_id); i != poster_of.end())
      add_claim(st, move.imq_id, claim{i->second, move.owner});
  st.queued = queued.size();
  return {
    [=](post_atom, const std::string& poster,
        const std::string& text) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto& mine = st.posters[poster];
      if (mine.total() >= st.mail.max_imq_per_user) {
        forget_if_empty(self, poster);
        return make_error(errc::too_many_unstored);
      }
      ++mine.posting;
      ++st.queued;
      auto rp = self->make_response_promise<caf::ok_atom>();
      // Without a timeout: the commit's outcome must be known (see
      // writer_actor); the connection bounds its client's wait.
      self->request(st.writer, caf::infinite, post_atom::value, poster, text)
        .then(
          [=](uint64_t id) mutable {
            self->state.posters[poster].storable.insert(id);
            rp.deliver(caf::ok_atom::value);
            post_done(self, poster);
          },
          [=](caf::error& err) mutable {
            --self->state.queued;
            rp.deliver(std::move(err));
            post_done(self, poster);
          });
      return rp;
    },
    [=](store_atom, const std::string& poster,
        const std::string& owner) -> caf::result<uint64_t, std::string> {
      if (self->state.posters.count(poster) == 0)
        return make_error(errc::nothing_to_store);
      auto rp = self->make_response_promise<uint64_t, std::string>();
      after_posts(self, poster, [=] { start_store(self, poster, owner, rp); });
      return rp;
    },
    [=](store_atom, const std::string& poster, const std::string& owner,
        mailbox_actor& box) -> caf::result<caf::ok_atom> {
      if (self->state.posters.count(poster) == 0)
        return make_error(errc::nothing_to_store);
      auto rp = self->make_response_promise<caf::ok_atom>();
      after_posts(self, poster,
                  [=] { start_remote_store(self, poster, owner, box, rp); });
      return rp;
    },
    [=](finish_atom, const std::string& owner,
        mailbox_actor& box) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto i = st.claims_by_owner.find(owner);
      auto ids = i == st.claims_by_owner.end() ? std::vector<uint64_t>{}
                                               : i->second;
      auto rp = self->make_response_promise<caf::ok_atom>();
      // First the node forgets the moves this front has settled (their
      // forget may have been lost), then the others are applied again.
      self->request(box, st.node_timeout, prune_atom::value, ids)
        .then(
          [=](caf::ok_atom) mutable {
            finish_moves(self, owner, box, ids, 0, rp);
          },
          [=](caf::error&) mutable {
            rp.deliver(make_error(errc::mailbox_unavailable));
          });
      return rp;
    },
    [=](claimed_atom) {
      std::vector<std::string> owners;
      for (auto& [owner, ids] : self->state.claims_by_owner)
        owners.push_back(owner);
      return owners;
    },
    [=](count_atom) { return self->state.queued; },
    // admin tool
    [=](purge_atom,
        const std::string& user) -> caf::result<uint64_t, uint64_t> {
      auto& st = self->state;
      // Posts claimed for a node, or moves to the user's mailbox on a node:
      // their mail is (or may be) on the node, out of this transaction.
      auto mine = st.posters.find(user);
      if ((mine != st.posters.end() && mine->second.claimed > 0)
          || st.claims_by_owner.count(user) != 0)
        return make_error(errc::user_on_node);
      if (st.purging.count(user) != 0)
        return make_error(errc::change_under_way);
      auto rp = self->make_response_promise<uint64_t, uint64_t>();
      st.purging[user].rp = rp;
      maybe_purge(self, user);
      return rp;
    },
  };
}

} // namespace

imq_actor spawn_imq(caf::actor_system& sys, writer_actor writer,
                    std::vector<queued_message> queued,
                    std::vector<claimed_move> claimed, imq_config cfg) {
  return spawn_on(sys, cfg.host, imq, std::move(writer), std::move(queued),
                  std::move(claimed), cfg);
}

} // namespace smsp
