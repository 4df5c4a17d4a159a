// Registry actor: accounts, hashes, sessions and the mailbox directory.
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "actors/actors.hpp"
#include "actors/log.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct account {
  std::string password_hash;
  /// Spawned on first use; invalid until then.
  mailbox_actor mailbox;
};

struct registry_state {
  hasher_actor hasher;
  imq_actor imq;
  timeouts limits;
  std::unordered_map<std::string, account> accounts;
  /// Names whose REGISTER waits for its hash: taken, but not yet accounts.
  std::unordered_set<std::string> registering;
  // Invariant: the two session maps are inverse to each other, so each user
  // has at most one live cookie and each cookie names one user.
  std::unordered_map<std::string, std::string> user_by_cookie;
  std::unordered_map<std::string, std::string> cookie_by_user;
  /// LOGIN for an unknown user verifies against this hash, so the reply's
  /// timing does not tell whether the account exists.
  std::string decoy_hash;
  static inline const char* name = "smsp.registry";
};

using registry_pointer = registry_actor::stateful_pointer<registry_state>;

std::string start_session(registry_pointer self, const std::string& user) {
  auto& st = self->state;
  if (auto old = st.cookie_by_user.find(user); old != st.cookie_by_user.end())
    st.user_by_cookie.erase(old->second);
  std::string cookie;
  do {
    cookie = new_cookie();
  } while (st.user_by_cookie.count(cookie) != 0);
  st.user_by_cookie[cookie] = user;
  st.cookie_by_user[user] = cookie;
  return cookie;
}

mailbox_actor mailbox_of(registry_pointer self, const std::string& user,
                         account& acc) {
  if (!acc.mailbox) {
    acc.mailbox = spawn_mailbox(self->system(), user);
    self->monitor(acc.mailbox);
  }
  return acc.mailbox;
}

/// The user of a live session, or nullptr.
const std::string* caller_of(registry_pointer self, const std::string& cookie) {
  auto& sessions = self->state.user_by_cookie;
  auto session = sessions.find(cookie);
  return session == sessions.end() ? nullptr : &session->second;
}

/// The caller's mailbox, provided `owner` names the caller. Another name
/// gets not_your_mailbox whether or not it exists, so that these requests
/// never reveal which accounts exist.
caf::expected<mailbox_actor> own_mailbox(registry_pointer self,
                                         const std::string& cookie,
                                         const std::string& owner) {
  auto caller = caller_of(self, cookie);
  if (caller == nullptr)
    return make_error(errc::not_logged_in);
  if (*caller != owner)
    return make_error(errc::not_your_mailbox);
  return mailbox_of(self, owner, self->state.accounts.at(owner));
}

/// Every account with its mailbox actor (invalid: never used, so empty).
using directory = std::vector<std::pair<std::string, mailbox_actor>>;

struct dumper_state {
  directory mailboxes;
  imq_actor imq;
  static inline const char* name = "smsp.dumper";
};

dumper_actor::behavior_type
dump_directory(dumper_actor::stateful_pointer<dumper_state> self,
               directory mailboxes, imq_actor imq) {
  self->state.mailboxes = std::move(mailboxes);
  self->state.imq = std::move(imq);
  return {
    [=](dump_atom) {
      auto& st = self->state;
      for (auto& [user, mailbox] : st.mailboxes) {
        if (mailbox)
          self->send(mailbox, dump_atom::value);
        else
          log_line("DUMP mailbox " + user + ": 0 message(s)");
      }
      auto answer = self->delegate(st.imq, dump_atom::value);
      self->quit();
      return answer;
    },
  };
}

registry_actor::behavior_type registry(registry_pointer self,
                                       hasher_actor hasher, imq_actor imq,
                                       timeouts limits) {
  self->state.hasher = hasher;
  self->state.imq = std::move(imq);
  self->state.limits = limits;
  self
    ->request(hasher, limits.hashing, hash_atom::value, "decoy-" + new_cookie())
    .then([=](std::string& hash) { self->state.decoy_hash = std::move(hash); },
          [=](caf::error& err) {
            log_line("registry: no decoy hash: " + to_string(err));
          });
  self->set_down_handler([=](caf::down_msg& msg) {
    for (auto& [user, acc] : self->state.accounts)
      if (acc.mailbox && acc.mailbox.address() == msg.source) {
        log_line("registry: mailbox of " + user +
                 " stopped: " + to_string(msg.reason));
        acc.mailbox = nullptr;
      }
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [user, acc] : self->state.accounts)
      if (acc.mailbox)
        self->send_exit(acc.mailbox, msg.reason);
    self->quit(msg.reason);
  });
  return {
    [=](register_atom, std::string& user,
        std::string& password) -> caf::result<std::string> {
      auto& st = self->state;
      if (!valid_username(user))
        return errc::bad_username;
      if (!valid_password(password))
        return errc::bad_password;
      if (st.accounts.count(user) != 0 || st.registering.count(user) != 0)
        return errc::user_exists;
      st.registering.insert(user);
      auto rp = self->make_response_promise<std::string>();
      self
        ->request(st.hasher, st.limits.hashing, hash_atom::value,
                  std::move(password))
        .then(
          [=](std::string& hash) mutable {
            auto& st = self->state;
            st.registering.erase(user);
            st.accounts.emplace(user, account{std::move(hash), {}});
            rp.deliver(start_session(self, user));
          },
          [=](caf::error& err) mutable {
            self->state.registering.erase(user);
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [=](login_atom, std::string& user,
        std::string& password) -> caf::result<std::string> {
      auto& st = self->state;
      auto acc = st.accounts.find(user);
      bool known = acc != st.accounts.end() && valid_password(password);
      auto hash = known ? acc->second.password_hash : st.decoy_hash;
      if (hash.empty())
        return errc::login_failed;
      auto rp = self->make_response_promise<std::string>();
      self
        ->request(st.hasher, st.limits.hashing, verify_atom::value,
                  std::move(hash), std::move(password))
        .then(
          [=](bool match) mutable {
            if (known && match)
              rp.deliver(start_session(self, user));
            else
              rp.deliver(make_error(errc::login_failed));
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](logout_atom, const std::string& cookie) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto session = st.user_by_cookie.find(cookie);
      if (session == st.user_by_cookie.end())
        return errc::not_logged_in;
      st.cookie_by_user.erase(session->second);
      st.user_by_cookie.erase(session);
      return caf::ok_atom::value;
    },
    [=](post_atom, const std::string& cookie,
        std::string& text) -> caf::result<caf::ok_atom> {
      auto caller = caller_of(self, cookie);
      if (caller == nullptr)
        return errc::not_logged_in;
      return self->delegate(self->state.imq, post_atom::value, *caller,
                            std::move(text));
    },
    [=](store_atom, const std::string& cookie,
        const std::string& target) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto caller = caller_of(self, cookie);
      if (caller == nullptr)
        return errc::not_logged_in;
      auto acc = st.accounts.find(target);
      if (acc == st.accounts.end())
        return errc::no_such_user;
      return self->delegate(st.imq, store_atom::value, *caller,
                            mailbox_of(self, target, acc->second));
    },
    [=](count_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<uint64_t> {
      auto box = own_mailbox(self, cookie, owner);
      if (!box)
        return std::move(box.error());
      return self->delegate(*box, count_atom::value);
    },
    [=](caf::get_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<std::string> {
      auto box = own_mailbox(self, cookie, owner);
      if (!box)
        return std::move(box.error());
      return self->delegate(*box, caf::get_atom::value);
    },
    [=](caf::delete_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<caf::ok_atom> {
      auto box = own_mailbox(self, cookie, owner);
      if (!box)
        return std::move(box.error());
      return self->delegate(*box, caf::delete_atom::value);
    },
    [=](dump_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      log_line("DUMP registry: " + std::to_string(st.accounts.size()) +
               " account(s), " + std::to_string(st.user_by_cookie.size()) +
               " live session(s)");
      directory snapshot;
      snapshot.reserve(st.accounts.size());
      for (auto& [user, acc] : st.accounts)
        snapshot.emplace_back(user, acc.mailbox);
      // Detached: logging every mailbox of a large server takes a while,
      // and the scheduler's threads serve every request meanwhile.
      auto dumper =
        self->spawn<caf::detached>(dump_directory, std::move(snapshot), st.imq);
      return self->delegate(dumper, dump_atom::value);
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, hasher_actor hasher,
                              imq_actor imq, timeouts limits) {
  return sys.spawn(registry, std::move(hasher), std::move(imq), limits);
}

} // namespace smsp
