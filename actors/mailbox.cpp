// Mailbox actor: one active user's FIFO, a cache of the store's committed mail.
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "actors/io_thread.hpp"
#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct mailbox_state {
  std::string owner;
  mailbox_deps deps;
  /// Committed messages not being deleted, oldest first.
  std::deque<stored_mail> messages;
  /// Moves from the front applied here (a mailbox on a node) and DELMSGs
  /// waiting for their commit.
  size_t storing = 0;
  size_t deleting = 0;
  /// A mailbox of the front: STOREs the registry announced (expect_atom),
  /// by ticket, until the IMQ settles them: with a place kept, or refused
  /// as full (the IMQ is told so when it asks).
  std::set<uint64_t> kept;
  std::set<uint64_t> refused;
  /// The IMQ's questions about STOREs not yet decided.
  std::map<uint64_t, caf::typed_response_promise<caf::ok_atom>> asked;
  /// The last ticket announced.
  uint64_t last_ticket = 0;
  /// Requests that arrived after a STORE with a place kept, which they must
  /// see, in arrival order, each with the last ticket announced before it.
  /// Invariant: empty, or its first waits for a kept ticket.
  std::deque<std::pair<uint64_t, std::function<void()>>> deferred;
  /// Answered once nothing waits for a commit; then the actor stops.
  std::vector<caf::typed_response_promise<caf::ok_atom>> retiring;
  static inline const char* name = "smsp.mailbox";
};

using mailbox_pointer = io_thread_actor<mailbox_state, mailbox_actor>*;

/// Commits answer in order, so ids arrive ascending; the search only guards
/// the FIFO should that ever change.
void insert_in_order(std::deque<stored_mail>& messages, stored_mail mail) {
  auto pos = messages.end();
  while (pos != messages.begin() && std::prev(pos)->id > mail.id)
    --pos;
  messages.insert(pos, std::move(mail));
}

/// Completes a retirement once the last write under way has finished.
void retire_if_done(mailbox_pointer self) {
  auto& st = self->state;
  if (st.retiring.empty() || st.storing + st.deleting > 0 || !st.kept.empty()
      || !st.refused.empty() || !st.deferred.empty())
    return;
  for (auto& rp : st.retiring)
    rp.deliver(caf::ok_atom::value);
  self->quit();
}

using ok_promise = caf::typed_response_promise<caf::ok_atom>;

/// A move from the front applied here: `mail`, if any, joins the FIFO.
void stored(mailbox_pointer self, ok_promise& rp,
            std::optional<stored_mail> mail) {
  auto& st = self->state;
  --st.storing;
  if (mail)
    insert_in_order(st.messages, std::move(*mail));
  rp.deliver(caf::ok_atom::value);
  retire_if_done(self);
}

/// A move from the front did not commit here.
void store_failed(mailbox_pointer self, ok_promise& rp, caf::error& err) {
  --self->state.storing;
  rp.deliver(std::move(err));
  retire_if_done(self);
}

/// Whether a request that arrived when `ticket` was the last ticket
/// announced must wait: a STORE before it has a place kept.
bool must_wait(const mailbox_state& st, uint64_t ticket) {
  return !st.kept.empty() && *st.kept.begin() <= ticket;
}

/// Runs `f` now, or once the STOREs announced before it have settled
/// (after the requests that wait already).
template <class F>
void in_turn(mailbox_pointer self, F f) {
  auto& st = self->state;
  if (st.deferred.empty() && !must_wait(st, st.last_ticket))
    f();
  else
    st.deferred.emplace_back(st.last_ticket, std::move(f));
}

/// Runs the waiting requests whose STOREs have settled.
void run_deferred(mailbox_pointer self) {
  auto& st = self->state;
  while (!st.deferred.empty() && !must_wait(st, st.deferred.front().first)) {
    auto f = std::move(st.deferred.front().second);
    st.deferred.pop_front();
    f();
  }
  retire_if_done(self);
}

/// Decides announced STORE `ticket`: a place is kept unless the mailbox is
/// full, counting the places already kept.
void decide(mailbox_pointer self, uint64_t ticket) {
  auto& st = self->state;
  bool full = st.messages.size() + st.storing + st.kept.size()
              >= st.deps.mail.max_mailbox;
  (full ? st.refused : st.kept).insert(ticket);
  if (auto i = st.asked.find(ticket); i != st.asked.end()) {
    auto rp = std::move(i->second);
    st.asked.erase(i);
    if (full) {
      st.refused.erase(ticket);
      rp.deliver(make_error(errc::mailbox_full));
    } else {
      rp.deliver(caf::ok_atom::value);
    }
  }
}

/// Announced STORE `ticket` has settled: its mail, if any, joins the FIFO.
void settle_ticket(mailbox_pointer self, uint64_t ticket,
                   std::optional<stored_mail> mail) {
  auto& st = self->state;
  if (st.kept.erase(ticket) == 0)
    return;
  if (mail)
    insert_in_order(st.messages, std::move(*mail));
  run_deferred(self);
}

void load(mailbox_pointer self) {
  auto& st = self->state;
  // await: no request is served before the mailbox holds its mail.
  self
    ->request(st.deps.reader, st.deps.waits.request, load_atom::value, st.owner)
    .await(
      [=](std::vector<stored_mail>& mails) {
        auto& messages = self->state.messages;
        messages.insert(messages.end(), std::make_move_iterator(mails.begin()),
                        std::make_move_iterator(mails.end()));
      },
      [=](caf::error& err) {
        log_error("mailbox", "of " + self->state.owner
                               + " cannot load: " + to_string(err));
        self->quit(std::move(err));
      });
}

/// Loads the mailbox once `predecessor` (a retiring mailbox of the same
/// owner, if any) has finished its writes.
void start(mailbox_pointer self, mailbox_actor predecessor) {
  if (predecessor)
    // The retiring mailbox answers once its last commit is done (an error
    // means it is gone already): only then is the store up to date.
    self->request(predecessor, caf::infinite, retire_atom::value)
      .await([=](caf::ok_atom) { load(self); },
             [=](caf::error&) { load(self); });
  else
    load(self);
}

mailbox_actor::behavior_type serve(mailbox_pointer self);

/// DELMSG: the oldest message goes, once its removal commits.
void delete_first(mailbox_pointer self, ok_promise rp) {
  auto& st = self->state;
  if (st.messages.empty()) {
    rp.deliver(make_error(errc::mailbox_empty));
    return;
  }
  // Off the queue now, so that a pipelined GETMSG sees the next one; back in
  // front if the commit fails.
  auto mail = std::move(st.messages.front());
  st.messages.pop_front();
  ++st.deleting;
  self->request(st.deps.writer, caf::infinite, caf::delete_atom::value, mail.id)
    .then(
      [=](caf::ok_atom) mutable {
        --self->state.deleting;
        rp.deliver(caf::ok_atom::value);
        retire_if_done(self);
      },
      [=](caf::error& err) mutable {
        auto& st = self->state;
        --st.deleting;
        st.messages.push_front(std::move(mail));
        rp.deliver(std::move(err));
        retire_if_done(self);
      });
}

mailbox_actor::behavior_type mailbox(mailbox_pointer self, std::string owner,
                                     mailbox_deps deps,
                                     mailbox_actor predecessor) {
  self->state.owner = std::move(owner);
  self->state.deps = std::move(deps);
  start(self, std::move(predecessor));
  return serve(self);
}

mailbox_actor::behavior_type serve(mailbox_pointer self) {
  return {
    [=](count_atom) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      in_turn(self, [=]() mutable {
        rp.deliver(uint64_t{self->state.messages.size()});
      });
      return rp;
    },
    [=](caf::get_atom) -> caf::result<std::string> {
      auto rp = self->make_response_promise<std::string>();
      in_turn(self, [=]() mutable {
        auto& messages = self->state.messages;
        if (messages.empty())
          rp.deliver(make_error(errc::mailbox_empty));
        else
          rp.deliver(messages.front().text);
      });
      return rp;
    },
    [=](caf::delete_atom) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      in_turn(self, [=]() mutable { delete_first(self, rp); });
      return rp;
    },
    [=](expect_atom, uint64_t ticket) {
      auto& st = self->state;
      st.last_ticket = ticket;
      // Decided in turn: a DELMSG waiting before it frees a place first.
      if (st.deferred.empty())
        decide(self, ticket);
      else
        st.deferred.emplace_back(0, [=] { decide(self, ticket); });
    },
    [=](reserve_atom, uint64_t ticket) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (st.kept.count(ticket) != 0)
        return caf::ok_atom::value;
      if (st.refused.erase(ticket) != 0) {
        retire_if_done(self);
        return make_error(errc::mailbox_full);
      }
      // Not decided yet (behind a waiting DELMSG).
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.asked.emplace(ticket, rp);
      return rp;
    },
    [=](store_atom, uint64_t ticket, uint64_t mail_id, std::string& text) {
      settle_ticket(self, ticket, stored_mail{mail_id, std::move(text)});
    },
    [=](cancel_atom, uint64_t ticket) {
      settle_ticket(self, ticket, std::nullopt);
    },
    [=](apply_atom, uint64_t imq_id, std::string& text,
        bool first_attempt) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      // Only a first attempt may be refused as full: the front then takes
      // its claim back, which is safe because this id was never sent here
      // before. A repeated one may have been applied already, so refusing
      // it could deliver the message twice: it goes in even when full.
      if (first_attempt
          && st.messages.size() + st.storing >= st.deps.mail.max_mailbox)
        return make_error(errc::mailbox_full);
      ++st.storing;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self
        ->request(st.deps.writer, caf::infinite, apply_atom::value,
                  st.deps.origin, imq_id, st.owner, text)
        .then(
          [=](uint64_t mail_id) mutable {
            // 0: applied before; that mail, unless deleted since, was
            // loaded with the mailbox or appended by the first attempt.
            stored(self, rp,
                   mail_id != 0 ? std::optional{stored_mail{mail_id, text}}
                                : std::nullopt);
          },
          [=](caf::error& err) mutable { store_failed(self, rp, err); });
      return rp;
    },
    [=](forget_atom, uint64_t imq_id) {
      auto& st = self->state;
      // A record left behind (a lost reply) is pruned at the next
      // activation: nothing waits for this one.
      self
        ->request(st.deps.writer, caf::infinite, forget_atom::value,
                  st.deps.origin, imq_id)
        .then([](caf::ok_atom) {}, [](caf::error&) {});
    },
    [=](prune_atom, std::vector<uint64_t>& still_claimed) {
      auto& st = self->state;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self
        ->request(st.deps.writer, caf::infinite, prune_atom::value,
                  st.deps.origin, st.owner, std::move(still_claimed))
        .then([=](uint64_t) mutable { rp.deliver(caf::ok_atom::value); },
              [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](retire_atom) {
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.retiring.push_back(rp);
      retire_if_done(self);
      return rp;
    },
  };
}

/// A mailbox on a node, as a front spawns it there (remote spawn).
mailbox_actor::behavior_type
node_mailbox(mailbox_pointer self, std::string owner, std::string origin,
             uint64_t max_mailbox,
             std::shared_ptr<const node_mailbox_context> ctx) {
  auto& st = self->state;
  st.owner = std::move(owner);
  st.deps.reader = ctx->reader;
  st.deps.writer = ctx->writer;
  st.deps.waits = ctx->waits;
  st.deps.mail.max_mailbox = static_cast<size_t>(max_mailbox);
  st.deps.origin = std::move(origin);
  // The node's host knows this owner's previous mailbox here, if any (a
  // front that restarted, or whose link broke, spawns anew): it must
  // finish its writes before this one loads.
  self
    ->request(ctx->host, ctx->waits.request, activate_atom::value, st.owner,
              st.deps.origin, mailbox_actor{self})
    .await([=](mailbox_actor& predecessor) { start(self, predecessor); },
           [=](caf::error&) { start(self, {}); });
  return serve(self);
}

} // namespace

void add_node_mailbox_type(caf::actor_system_config& cfg,
                           std::shared_ptr<const node_mailbox_context> ctx) {
  cfg.add_actor_type(node_mailbox_type,
                     [ctx](mailbox_pointer self, std::string owner,
                           std::string origin, uint64_t max_mailbox) {
                       return node_mailbox(self, std::move(owner),
                                           std::move(origin), max_mailbox, ctx);
                     });
}

mailbox_actor
spawn_node_mailbox(caf::actor_system& sys, std::string owner,
                   std::string origin, uint64_t max_mailbox,
                   std::shared_ptr<const node_mailbox_context> ctx) {
  return sys.spawn(node_mailbox, std::move(owner), std::move(origin),
                   max_mailbox, std::move(ctx));
}

mailbox_actor spawn_mailbox(caf::actor_system& sys, std::string owner,
                            mailbox_deps deps, mailbox_actor predecessor) {
  auto host = deps.host;
  return spawn_on(sys, host, mailbox, std::move(owner), std::move(deps),
                  std::move(predecessor));
}

} // namespace smsp
