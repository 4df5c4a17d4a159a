// Mailbox actor: one user's FIFO of messages.
#include <deque>

#include "actors/actors.hpp"
#include "actors/log.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct mailbox_state {
  std::string owner;
  std::deque<std::string> messages;
  static inline const char* name = "smsp.mailbox";
};

mailbox_actor::behavior_type
mailbox(mailbox_actor::stateful_pointer<mailbox_state> self,
        std::string owner) {
  self->state.owner = std::move(owner);
  return {
    [=](count_atom) -> uint64_t { return self->state.messages.size(); },
    [=](caf::get_atom) -> caf::result<std::string> {
      auto& messages = self->state.messages;
      if (messages.empty())
        return make_error(errc::mailbox_empty);
      return messages.front();
    },
    [=](caf::delete_atom) -> caf::result<caf::ok_atom> {
      auto& messages = self->state.messages;
      if (messages.empty())
        return make_error(errc::mailbox_empty);
      messages.pop_front();
      return caf::ok_atom::value;
    },
    [=](caf::put_atom, std::string& text) {
      self->state.messages.emplace_back(std::move(text));
      return caf::ok_atom::value;
    },
    [=](dump_atom) {
      auto& st = self->state;
      std::string line = "DUMP mailbox " + st.owner + ": " +
                         std::to_string(st.messages.size()) + " message(s)";
      for (size_t i = 0; i < st.messages.size() && i < dump_texts; ++i)
        line += " [" + printable(st.messages[i]) + "]";
      log_line(line);
    },
  };
}

} // namespace

mailbox_actor spawn_mailbox(caf::actor_system& sys, std::string owner) {
  return sys.spawn(mailbox, std::move(owner));
}

} // namespace smsp
