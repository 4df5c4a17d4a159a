// IMQ actor: the incoming message queue's index; the texts live in the store.
#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>

#include "actors/io_thread.hpp"
#include "actors/log.hpp"
#include "actors/logic/poster_queue.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

using move_promise = caf::typed_response_promise<caf::ok_atom>;

/// A STORE to a mailbox of this process, waiting for its turn.
struct local_store {
  uint64_t ticket = 0;
  std::string owner;
  /// Null while the registry looks `owner` up.
  mailbox_actor box;
  /// The registry's lookup failed: the answer once it is this STORE's turn.
  caf::error failed;
  /// See poster_queue::store_arrived.
  uint64_t bound = 0;
  move_promise rp;
  /// Waiting for `box` to confirm its place.
  bool reserving = false;
};

/// A post that found its poster at the limit while STOREs before it had
/// not settled.
struct held_post {
  uint64_t arrival = 0;
  uint64_t stores_before = 0;
  std::string text;
  move_promise rp;
};

/// One poster's entries and the requests waiting for their turn.
struct poster_state {
  poster_queue queue;
  /// STOREs to mailboxes of this process, in arrival order: the first is
  /// the next to take a message.
  std::deque<local_store> stores;
  /// Posts over the limit, and every post after one, in arrival order.
  std::deque<held_post> held;
  /// STOREs to mailboxes on nodes waiting for the posts under way.
  std::vector<std::function<void()>> waiting;

  bool empty() const {
    return queue.empty() && stores.empty() && held.empty() && waiting.empty();
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
  /// Invariant: no poster here is empty().
  std::unordered_map<std::string, poster_state> posters;
  /// STOREs whose mailbox the registry is still looking up: ticket ->
  /// poster.
  std::unordered_map<uint64_t, std::string> looking_up;
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

void advance(imq_pointer self, const std::string& poster);

/// The poster's state, or null.
poster_state* find_poster(imq_pointer self, const std::string& poster) {
  auto i = self->state.posters.find(poster);
  return i != self->state.posters.end() ? &i->second : nullptr;
}

void forget_if_empty(imq_pointer self, const std::string& poster) {
  auto& posters = self->state.posters;
  if (auto i = posters.find(poster); i != posters.end() && i->second.empty())
    posters.erase(i);
}

// -- posts --------------------------------------------------------------------

/// Commits post `arrival` of `poster`.
void write_post(imq_pointer self, const std::string& poster, uint64_t arrival,
                const std::string& text, move_promise rp) {
  auto& st = self->state;
  ++st.queued;
  // Without a timeout: the commit's outcome must be known (see
  // writer_actor); the connection bounds its client's wait.
  self->request(st.writer, caf::infinite, post_atom::value, poster, text)
    .then(
      [=](uint64_t id) mutable {
        self->state.posters[poster].queue.post_settled(arrival, id);
        rp.deliver(caf::ok_atom::value);
        advance(self, poster);
      },
      [=](caf::error& err) mutable {
        --self->state.queued;
        self->state.posters[poster].queue.post_settled(arrival, 0);
        rp.deliver(std::move(err));
        advance(self, poster);
      });
}

/// Whether the poster is over the limit with the post being decided, which
/// is not in `held`: the posts under way before it count, the held ones
/// after it do not.
bool over_limit(imq_pointer self, const poster_state& p) {
  return p.queue.total() - p.held.size() > self->state.mail.max_imq_per_user;
}

/// Decides the first held post if the STOREs before it have settled: it is
/// written if a place came free, else refused. Returns whether it decided.
bool release_held(imq_pointer self, const std::string& poster) {
  auto& p = self->state.posters[poster];
  if (p.held.empty()
      || p.queue.must_wait_for_stores(p.held.front().stores_before))
    return false;
  auto post = std::move(p.held.front());
  p.held.pop_front();
  if (over_limit(self, p)) {
    p.queue.post_settled(post.arrival, 0);
    post.rp.deliver(make_error(errc::too_many_unstored));
  } else {
    write_post(self, poster, post.arrival, post.text, post.rp);
  }
  return true;
}

// -- STOREs to mailboxes of this process --------------------------------------

/// The first STORE has its place in its mailbox: takes the poster's most
/// recent message within its bound and moves it there. One transaction
/// removes the entry and appends it to the mailbox; the mailbox gets the
/// mail after the commit, before the STORE is answered.
void take_for_store(imq_pointer self, const std::string& poster) {
  auto& p = self->state.posters[poster];
  auto s = std::move(p.stores.front());
  p.stores.pop_front();
  auto e = p.queue.take_latest(s.bound);
  if (e.id == 0) {
    self->send(s.box, cancel_atom::value, s.ticket);
    p.queue.store_settled();
    s.rp.deliver(make_error(errc::nothing_to_store));
    advance(self, poster);
    return;
  }
  self
    ->request(self->state.writer, caf::infinite, move_atom::value, e.id,
              s.owner)
    .then(
      [=](uint64_t mail_id, std::string& text) mutable {
        auto& st = self->state;
        auto& p = st.posters[poster];
        p.queue.moved();
        p.queue.store_settled();
        --st.queued;
        self->send(s.box, store_atom::value, s.ticket, mail_id,
                   std::move(text));
        s.rp.deliver(caf::ok_atom::value);
        advance(self, poster);
      },
      [=](caf::error& err) mutable {
        auto& p = self->state.posters[poster];
        // Not committed: the message is storable again, in its place.
        p.queue.put_back(e);
        p.queue.store_settled();
        self->send(s.box, cancel_atom::value, s.ticket);
        s.rp.deliver(std::move(err));
        advance(self, poster);
      });
  // The next STORE may take the next message while this one commits.
  advance(self, poster);
}

/// Starts the first STORE if its turn has come: its mailbox is known and
/// every post before it has settled. Returns whether it settled at once
/// (so that others may go on).
bool start_first_store(imq_pointer self, const std::string& poster) {
  auto& p = self->state.posters[poster];
  if (p.stores.empty() || p.stores.front().reserving)
    return false;
  auto& s = p.stores.front();
  if (s.failed) {
    auto rp = s.rp;
    auto err = std::move(s.failed);
    p.stores.pop_front();
    p.queue.store_settled();
    rp.deliver(std::move(err));
    return true;
  }
  if (!s.box || !p.queue.posts_settled_through(s.bound))
    return false;
  s.reserving = true;
  // The mailbox decided when the registry announced this STORE, in order
  // with the owner's other requests: full (refused) or a place kept.
  self->request(s.box, caf::infinite, reserve_atom::value, s.ticket)
    .then([=](caf::ok_atom) { take_for_store(self, poster); },
          [=](caf::error& err) {
            auto& p = self->state.posters[poster];
            auto rp = p.stores.front().rp;
            p.stores.pop_front();
            p.queue.store_settled();
            rp.deliver(std::move(err));
            advance(self, poster);
          });
  return false;
}

/// Runs the STOREs to nodes that waited for the poster's posts, once none
/// is under way. Returns whether it ran any.
bool start_waiting_remote(imq_pointer self, const std::string& poster) {
  auto& p = self->state.posters[poster];
  if (p.waiting.empty() || p.queue.posting() > 0)
    return false;
  auto waiting = std::move(p.waiting);
  p.waiting.clear();
  for (auto& start : waiting)
    start();
  return true;
}

void maybe_purge(imq_pointer self, const std::string& poster);

/// Lets every request of `poster` that can go on go on, then forgets the
/// poster if nothing is left.
void advance(imq_pointer self, const std::string& poster) {
  if (find_poster(self, poster) == nullptr)
    return;
  while (start_first_store(self, poster) || release_held(self, poster)
         || start_waiting_remote(self, poster))
    ; // Each settles something that may let the others go on.
  forget_if_empty(self, poster);
  maybe_purge(self, poster);
}

// -- STOREs to mailboxes on nodes ---------------------------------------------

void add_claim(imq_state& st, uint64_t id, claim c) {
  st.claims_by_owner[c.owner].push_back(id);
  ++st.posters[c.poster].queue.claimed;
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
  --st.posters[c.poster].queue.claimed;
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
  auto e = self->state.posters[poster].queue.take_latest();
  if (e.id == 0) {
    rp.deliver(make_error(errc::nothing_to_store));
    forget_if_empty(self, poster);
    return;
  }
  auto id = e.id;
  auto& st = self->state;
  self->request(st.writer, caf::infinite, claim_atom::value, id, owner)
    .then(
      [=](std::string& text) mutable {
        auto& st = self->state;
        st.posters[poster].queue.moved();
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
                      self->state.posters[c->poster].queue.add_committed(id);
                    rp.deliver(make_error(errc::mailbox_full));
                  },
                  [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
            });
      },
      [=](caf::error& err) mutable {
        self->state.posters[poster].queue.put_back(e);
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

/// admin tool: starts the purge of `poster` if one waits and nothing of
/// theirs is under way. Their storable posts leave memory only after the
/// writer's transaction removed them (memory follows commits); a failed
/// purge puts them back.
void maybe_purge(imq_pointer self, const std::string& poster) {
  auto& st = self->state;
  auto job = st.purging.find(poster);
  if (job == st.purging.end() || job->second.started)
    return;
  std::map<uint64_t, uint64_t> taken;
  if (auto p = find_poster(self, poster)) {
    if (p->queue.posting() + p->queue.storing() > 0 || !p->stores.empty()
        || !p->held.empty() || !p->waiting.empty())
      return;
    // No STORE may take these while the purge is under way.
    taken = p->queue.take_all();
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
          st.posters[poster].queue.put_back_all(taken);
        auto rp = st.purging[poster].rp;
        st.purging.erase(poster);
        rp.deliver(std::move(err));
      });
  job->second.started = true;
}

/// The registry's lookup for the STORE with `ticket` ended: `settle` is
/// applied to that STORE, then its poster's requests go on.
template <class Settle>
void looked_up(imq_pointer self, uint64_t ticket, Settle settle) {
  auto& st = self->state;
  auto i = st.looking_up.find(ticket);
  if (i == st.looking_up.end())
    return;
  auto poster = std::move(i->second);
  st.looking_up.erase(i);
  if (auto p = find_poster(self, poster)) {
    for (auto& s : p->stores)
      if (s.ticket == ticket)
        settle(s);
    advance(self, poster);
  }
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
      st.posters[msg.poster].queue.add_committed(msg.id);
    else
      poster_of.emplace(msg.id, msg.poster);
  }
  for (auto& move : claimed)
    if (auto i = poster_of.find(move.imq_id); i != poster_of.end())
      add_claim(st, move.imq_id, claim{i->second, move.owner});
  st.queued = queued.size();
  return {
    [=](post_atom, const std::string& poster,
        std::string& text) -> caf::result<caf::ok_atom> {
      auto& p = self->state.posters[poster];
      auto arrival = p.queue.post_arrived();
      auto rp = self->make_response_promise<caf::ok_atom>();
      auto stores_before = p.queue.stores_arrived();
      if (!p.held.empty()
          || (over_limit(self, p)
              && p.queue.must_wait_for_stores(stores_before))) {
        // A STORE before it may free a place: decided once they settle.
        p.held.push_back({arrival, stores_before, std::move(text), rp});
        return rp;
      }
      if (over_limit(self, p)) {
        p.queue.post_settled(arrival, 0);
        rp.deliver(make_error(errc::too_many_unstored));
        advance(self, poster);
        return rp;
      }
      write_post(self, poster, arrival, text, rp);
      return rp;
    },
    [=](store_atom, const std::string& poster, std::string& owner,
        uint64_t ticket, mailbox_actor& box) -> caf::result<caf::ok_atom> {
      auto& p = self->state.posters[poster];
      auto rp = self->make_response_promise<caf::ok_atom>();
      if (!box)
        self->state.looking_up.emplace(ticket, poster);
      p.stores.push_back(local_store{ticket, std::move(owner), std::move(box),
                                     caf::error{}, p.queue.store_arrived(), rp,
                                     false});
      advance(self, poster);
      return rp;
    },
    [=](store_atom, uint64_t ticket, mailbox_actor& box) {
      looked_up(self, ticket, [&](local_store& s) { s.box = std::move(box); });
    },
    [=](store_atom, uint64_t ticket, caf::error& err) {
      looked_up(self, ticket,
                [&](local_store& s) { s.failed = std::move(err); });
    },
    [=](store_atom, const std::string& poster, const std::string& owner,
        mailbox_actor& box) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      auto start = [=]() mutable {
        start_remote_store(self, poster, owner, box, rp);
      };
      // With mailbox nodes a connection sends nothing after a STORE until
      // it is answered; a STORE still takes effect after the posts under
      // way (it may overtake its poster's MESSAGE on its way here through
      // the mailbox's activation).
      auto& p = self->state.posters[poster];
      if (p.queue.posting() > 0)
        p.waiting.emplace_back(std::move(start));
      else
        start();
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
      if ((mine != st.posters.end() && mine->second.queue.claimed > 0)
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
