// Registry actor: sessions, the account cache, the login throttle and the
// routing of every request to the actor that owns its data.
#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <malloc.h>

#include "actors/log.hpp"
#include "actors/logic/lru.hpp"
#include "actors/logic/mailbox_directory.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct registry_state {
  registry_deps deps;
  registry_config cfg;
  /// Password hashes of recently used accounts, bounded by
  /// cfg.account_cache; the store has them all.
  lru_map<std::string, std::string> accounts;
  /// Names whose REGISTER is under way: taken, but not yet accounts.
  std::unordered_set<std::string> registering;
  // Invariant: the two session maps are inverse to each other, so each user
  // has at most one live cookie and each cookie names one user.
  std::unordered_map<std::string, std::string> user_by_cookie;
  std::unordered_map<std::string, std::string> cookie_by_user;
  /// Active and retiring mailboxes. Every request to a mailbox comes from
  /// here, so a mailbox unused here is idle.
  mailbox_directory<mailbox_actor, caf::actor_addr> mailboxes;
  /// Mailboxes were passivated since the last return of free memory.
  bool trim_due = false;
  /// Failed LOGINs per username and per client address.
  std::optional<login_throttle> throttle;
  /// LOGIN for an unknown user verifies against this hash, so the reply's
  /// timing does not tell whether the account exists.
  std::string decoy_hash;
  static inline const char* name = "smsp.registry";
};

using registry_pointer = registry_actor::stateful_pointer<registry_state>;

steady_time now(registry_pointer self) {
  return self->state.cfg.now();
}

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

void remember_account(registry_pointer self, const std::string& user,
                      std::string hash) {
  auto& accounts = self->state.accounts;
  accounts.put(user, std::move(hash));
  while (accounts.size() > std::max<size_t>(1, self->state.cfg.account_cache))
    accounts.pop_oldest();
}

/// The active mailbox of `user`, activated (loaded from the store) if
/// needed; the account must exist.
mailbox_actor mailbox_of(registry_pointer self, const std::string& user) {
  auto& st = self->state;
  auto t = now(self);
  if (auto active = st.mailboxes.touch(user, t))
    return *active;
  auto& d = st.deps;
  auto handle = spawn_mailbox(
    self->system(), user,
    mailbox_deps{d.reader, d.imq, d.writer, st.cfg.waits, st.cfg.mail},
    st.mailboxes.retiring(user).value_or(mailbox_actor{}));
  self->monitor(handle);
  st.mailboxes.activate(user, handle, handle.address(), t);
  return handle;
}

/// Stops the mailboxes unused for cfg.mailbox_idle. Their mail is in the
/// store; the next request for one activates it again, and that one waits
/// for this one's writes to finish.
void passivate_idle(registry_pointer self) {
  auto& st = self->state;
  auto cutoff = now(self) - st.cfg.mailbox_idle;
  for (auto& [user, handle] : st.mailboxes.retire_idle(cutoff)) {
    st.trim_due = true;
    auto done = [=, user = user, id = handle.address()] {
      self->state.mailboxes.retired(user, id);
    };
    self->request(handle, caf::infinite, retire_atom::value)
      .then([=](caf::ok_atom) { done(); }, [=](caf::error&) { done(); });
  }
}

registry_figures figures_of(const registry_state& st) {
  registry_figures f;
  f.sessions = st.user_by_cookie.size();
  f.active_mailboxes = st.mailboxes.active_count();
  f.activations = st.mailboxes.activations();
  f.passivations = st.mailboxes.passivations();
  f.cached_accounts = st.accounts.size();
  return f;
}

std::chrono::milliseconds sweep_interval(const registry_config& cfg) {
  using std::chrono::milliseconds;
  return std::clamp(cfg.mailbox_idle / 4, milliseconds{10}, milliseconds{1000});
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
  return mailbox_of(self, owner);
}

/// Calls `found(hash)` with `user`'s password hash from the cache or the
/// store, or `missing(error)` (errc::no_such_user when there is no such
/// account).
template <class Found, class Missing>
void with_account(registry_pointer self, const std::string& user, Found found,
                  Missing missing) {
  auto& st = self->state;
  if (auto hash = st.accounts.touch(user)) {
    found(*hash);
    return;
  }
  self->request(st.deps.reader, st.cfg.waits.request, lookup_atom::value, user)
    .then(
      [=](std::string& hash) mutable {
        remember_account(self, user, hash);
        found(hash);
      },
      [=](caf::error& err) mutable { missing(err); });
}

bool is_no_such_user(const caf::error& err) {
  return err == make_error(errc::no_such_user);
}

/// Hashes the password, writes the account and starts its session.
void create_account(registry_pointer self, std::string user,
                    std::string password,
                    caf::typed_response_promise<std::string> rp) {
  auto& st = self->state;
  auto fail = [=](caf::error& err) mutable {
    self->state.registering.erase(user);
    rp.deliver(std::move(err));
  };
  self
    ->request(st.deps.hasher, st.cfg.waits.hashing, hash_atom::value,
              std::move(password))
    .then(
      [=](std::string& hash) mutable {
        self
          ->request(self->state.deps.writer, caf::infinite,
                    register_atom::value, user, hash)
          .then(
            [=](bool added) mutable {
              self->state.registering.erase(user);
              if (!added) {
                rp.deliver(make_error(errc::user_exists));
                return;
              }
              remember_account(self, user, hash);
              rp.deliver(start_session(self, user));
            },
            fail);
      },
      fail);
}

registry_actor::behavior_type
registry(registry_pointer self, registry_deps deps, registry_config cfg) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.cfg = std::move(cfg);
  st.throttle.emplace(st.cfg.throttle);
  self
    ->request(st.deps.hasher, st.cfg.waits.hashing, hash_atom::value,
              "decoy-" + new_cookie())
    .then([=](std::string& hash) { self->state.decoy_hash = std::move(hash); },
          [=](caf::error& err) {
            log_line("registry: no decoy hash: " + to_string(err));
          });
  self->set_down_handler([=](caf::down_msg& msg) {
    if (auto user = self->state.mailboxes.stopped(msg.source))
      log_line("registry: mailbox of " + *user
               + " stopped: " + to_string(msg.reason));
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    self->state.mailboxes.for_each(
      [&](const mailbox_actor& box) { self->send_exit(box, msg.reason); });
    self->quit(msg.reason);
  });
  self->delayed_send(self, sweep_interval(st.cfg), caf::tick_atom::value);
  return {
    [=](register_atom, std::string& user,
        std::string& password) -> caf::result<std::string> {
      auto& st = self->state;
      if (!valid_username(user))
        return errc::bad_username;
      if (!valid_password(password))
        return errc::bad_password;
      if (st.accounts.peek(user) != nullptr || st.registering.count(user) != 0)
        return errc::user_exists;
      st.registering.insert(user);
      auto rp = self->make_response_promise<std::string>();
      // Looked up first, so that taken names cost no hashing.
      with_account(
        self, user,
        [=](const std::string&) mutable {
          self->state.registering.erase(user);
          rp.deliver(make_error(errc::user_exists));
        },
        [=](caf::error& err) mutable {
          if (is_no_such_user(err)) {
            create_account(self, user, std::move(password), rp);
            return;
          }
          self->state.registering.erase(user);
          rp.deliver(std::move(err));
        });
      return rp;
    },
    [=](login_atom, std::string& user, std::string& password,
        std::string& address) -> caf::result<std::string> {
      // Refused at once and with the wrong password's reply: a penalized
      // name or address costs no hashing, and the reply tells nothing.
      if (!self->state.throttle->allows(user, address, now(self)))
        return errc::login_failed;
      auto rp = self->make_response_promise<std::string>();
      auto verify = [=](std::string hash, bool known) mutable {
        auto& st = self->state;
        if (hash.empty()) {
          st.throttle->failed(user, address, now(self));
          rp.deliver(make_error(errc::login_failed));
          return;
        }
        self
          ->request(st.deps.hasher, st.cfg.waits.hashing, verify_atom::value,
                    std::move(hash), password)
          .then(
            [=](bool match) mutable {
              auto& throttle = *self->state.throttle;
              if (known && match) {
                throttle.succeeded(user, address, now(self));
                rp.deliver(start_session(self, user));
              } else {
                throttle.failed(user, address, now(self));
                rp.deliver(make_error(errc::login_failed));
              }
            },
            // No verdict (server busy): neither a failure nor a success;
            // the throttle frees the attempt's slot after one window.
            [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      };
      if (!valid_password(password) || !valid_username(user)) {
        verify(self->state.decoy_hash, false);
        return rp;
      }
      with_account(
        self, user,
        [=](const std::string& hash) mutable { verify(hash, true); },
        [=](caf::error& err) mutable {
          if (is_no_such_user(err))
            verify(self->state.decoy_hash, false);
          else
            rp.deliver(std::move(err));
        });
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
      return self->delegate(self->state.deps.imq, post_atom::value, *caller,
                            std::move(text));
    },
    [=](store_atom, const std::string& cookie,
        const std::string& target) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto caller = caller_of(self, cookie);
      if (caller == nullptr)
        return errc::not_logged_in;
      if (st.mailboxes.is_active(target)
          || st.accounts.touch(target) != nullptr)
        return self->delegate(mailbox_of(self, target), store_atom::value,
                              *caller);
      // STORE is a barrier on its connection, so answering after a lookup
      // reorders nothing for its sender.
      auto rp = self->make_response_promise<caf::ok_atom>();
      with_account(
        self, target,
        [=, poster = *caller](const std::string&) mutable {
          rp.delegate(mailbox_of(self, target), store_atom::value, poster);
        },
        [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
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
      return self->delegate(st.deps.dumper, dump_atom::value, figures_of(st));
    },
    [=](stats_atom) { return figures_of(self->state); },
    [=](caf::tick_atom) {
      auto& st = self->state;
      if (st.trim_due) {
        // glibc keeps freed memory for reuse; without this, the memory of
        // passivated mailboxes would stay in the process's RSS. A tick after
        // the passivation, those mailboxes are gone. On a thread of its own:
        // walking a large heap takes a while.
        st.trim_due = false;
        self->spawn<caf::detached>([] { ::malloc_trim(0); });
      }
      passivate_idle(self);
      // Only the registry's own timer re-arms: a tick sent by anyone else
      // (a test driving the clock) sweeps once.
      if (self->current_sender() == self->ctrl())
        self->delayed_send(self, sweep_interval(self->state.cfg),
                           caf::tick_atom::value);
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, registry_deps deps,
                              registry_config cfg) {
  return sys.spawn(registry, std::move(deps), std::move(cfg));
}

} // namespace smsp
