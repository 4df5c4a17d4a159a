// Mailbox actor: one active user's FIFO, a cache of the store's committed mail.
#include <deque>

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

using mailbox_pointer = mailbox_actor::stateful_pointer<mailbox_state>;

/// Completes a retirement once the last write under way has finished.
void retire_if_done(mailbox_pointer self) {
  auto& st = self->state;
  if (st.retiring.empty() || st.storing + st.deleting > 0)
    return;
  for (auto& rp : st.retiring)
    rp.deliver(caf::ok_atom::value);
  self->quit();
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
        log_line("mailbox of " + self->state.owner
                 + " cannot load: " + to_string(err));
        self->quit(std::move(err));
      });
}

mailbox_actor::behavior_type mailbox(mailbox_pointer self, std::string owner,
                                     mailbox_deps deps,
                                     mailbox_actor predecessor) {
  self->state.owner = std::move(owner);
  self->state.deps = std::move(deps);
  if (predecessor)
    // The retiring mailbox answers once its last commit is done (an error
    // means it is gone already): only then is the store up to date.
    self->request(predecessor, caf::infinite, retire_atom::value)
      .await([=](caf::ok_atom) { load(self); },
             [=](caf::error&) { load(self); });
  else
    load(self);
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
      if (st.messages.size() + st.storing >= st.deps.mail.max_mailbox)
        return make_error(errc::mailbox_full);
      ++st.storing;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self
        ->request(st.deps.imq, caf::infinite, store_atom::value, poster,
                  st.owner)
        .then(
          [=](uint64_t id, std::string& text) mutable {
            auto& st = self->state;
            --st.storing;
            // Commits answer in order, so ids arrive ascending; the search
            // only guards the FIFO should that ever change.
            auto pos = st.messages.end();
            while (pos != st.messages.begin() && std::prev(pos)->id > id)
              --pos;
            st.messages.insert(pos, stored_mail{id, std::move(text)});
            rp.deliver(caf::ok_atom::value);
            retire_if_done(self);
          },
          [=](caf::error& err) mutable {
            --self->state.storing;
            rp.deliver(std::move(err));
            retire_if_done(self);
          });
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

} // namespace

mailbox_actor spawn_mailbox(caf::actor_system& sys, std::string owner,
                            mailbox_deps deps, mailbox_actor predecessor) {
  return sys.spawn(mailbox, std::move(owner), std::move(deps),
                   std::move(predecessor));
}

} // namespace smsp
