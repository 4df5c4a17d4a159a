// Mailbox actor: one active user's FIFO, a cache of the store's committed mail.
#include <deque>
#include <optional>

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
  /// STOREs and DELMSGs waiting for their commit.
  size_t storing = 0;
  size_t deleting = 0;
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
  if (st.retiring.empty() || st.storing + st.deleting > 0)
    return;
  for (auto& rp : st.retiring)
    rp.deliver(caf::ok_atom::value);
  self->quit();
}

using ok_promise = caf::typed_response_promise<caf::ok_atom>;

/// A STORE or a move here has committed: `mail`, if any, joins the FIFO.
void stored(mailbox_pointer self, ok_promise& rp,
            std::optional<stored_mail> mail) {
  auto& st = self->state;
  --st.storing;
  if (mail)
    insert_in_order(st.messages, std::move(*mail));
  rp.deliver(caf::ok_atom::value);
  retire_if_done(self);
}

/// A STORE or a move here did not commit.
void store_failed(mailbox_pointer self, ok_promise& rp, caf::error& err) {
  --self->state.storing;
  rp.deliver(std::move(err));
  retire_if_done(self);
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
    [=](count_atom) -> uint64_t { return self->state.messages.size(); },
    [=](caf::get_atom) -> caf::result<std::string> {
      auto& messages = self->state.messages;
      if (messages.empty())
        return make_error(errc::mailbox_empty);
      return messages.front().text;
    },
    [=](caf::delete_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (st.messages.empty())
        return make_error(errc::mailbox_empty);
      // Off the queue now, so that a pipelined GETMSG sees the next one;
      // back in front if the commit fails.
      auto mail = std::move(st.messages.front());
      st.messages.pop_front();
      ++st.deleting;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self
        ->request(st.deps.writer, caf::infinite, caf::delete_atom::value,
                  mail.id)
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
      return rp;
    },
    [=](store_atom, const std::string& poster) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (!st.deps.imq)
        // A mailbox on a node: the front moves mail here by apply_atom.
        return make_error(caf::sec::unexpected_message);
      if (st.messages.size() + st.storing >= st.deps.mail.max_mailbox)
        return make_error(errc::mailbox_full);
      ++st.storing;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self
        ->request(st.deps.imq, caf::infinite, store_atom::value, poster,
                  st.owner)
        .then(
          [=](uint64_t id, std::string& text) mutable {
            stored(self, rp, stored_mail{id, std::move(text)});
          },
          [=](caf::error& err) mutable { store_failed(self, rp, err); });
      return rp;
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
