// Registry actor: sessions, the account cache and the active mailboxes.
#include <algorithm>
#include <cstdio>
#include <optional>

#include <malloc.h>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "actors/log.hpp"
#include "actors/logic/lru.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

using clock_type = std::chrono::steady_clock;

struct active_mailbox {
  mailbox_actor handle;
  clock_type::time_point last_used;
};

struct registry_state {
  hasher_actor hasher;
  imq_actor imq;
  writer_actor writer;
  reader_actor reader;
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
  /// Active mailboxes, the longest unused last. Every request to a mailbox
  /// comes from here, so a mailbox unused here is idle.
  lru_map<std::string, active_mailbox> mailboxes;
  /// Passivated mailboxes still finishing their writes; their successor
  /// waits for them before it loads.
  std::unordered_map<std::string, mailbox_actor> retiring;
  /// Owners of the monitored mailboxes (active and retiring).
  std::unordered_map<caf::actor_addr, std::string> owner_by_address;
  uint64_t activations = 0;
  uint64_t passivations = 0;
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
  auto now = clock_type::now();
  if (auto active = st.mailboxes.touch(user)) {
    active->last_used = now;
    return active->handle;
  }
  mailbox_actor predecessor;
  if (auto old = st.retiring.find(user); old != st.retiring.end())
    predecessor = old->second;
  auto handle = spawn_mailbox(self->system(), user,
                              mailbox_deps{st.reader, st.imq, st.writer,
                                           st.cfg.waits, st.cfg.mail},
                              predecessor);
  self->monitor(handle);
  st.owner_by_address.emplace(handle.address(), user);
  st.mailboxes.put(user, active_mailbox{handle, now});
  ++st.activations;
  return handle;
}

/// Stops the mailboxes unused for cfg.mailbox_idle. Their mail is in the
/// store; the next request for one activates it again.
void passivate_idle(registry_pointer self) {
  auto& st = self->state;
  auto cutoff = clock_type::now() - st.cfg.mailbox_idle;
  while (!st.mailboxes.empty()
         && st.mailboxes.oldest().second.last_used <= cutoff) {
    auto user = st.mailboxes.oldest().first;
    auto handle = st.mailboxes.oldest().second.handle;
    st.mailboxes.pop_oldest();
    st.retiring[user] = handle;
    ++st.passivations;
    st.trim_due = true;
    auto forget = [=] {
      auto& retiring = self->state.retiring;
      if (auto i = retiring.find(user);
          i != retiring.end() && i->second == handle)
        retiring.erase(i);
    };
    self->request(handle, caf::infinite, retire_atom::value)
      .then([=](caf::ok_atom) { forget(); }, [=](caf::error&) { forget(); });
  }
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
  self->request(st.reader, st.cfg.waits.request, lookup_atom::value, user)
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
    ->request(st.hasher, st.cfg.waits.hashing, hash_atom::value,
              std::move(password))
    .then(
      [=](std::string& hash) mutable {
        self
          ->request(self->state.writer, caf::infinite, register_atom::value,
                    user, hash)
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

struct dumper_state {
  static inline const char* name = "smsp.dumper";
};

dumper_actor::behavior_type
dump_store(dumper_actor::stateful_pointer<dumper_state> self,
           std::string data_dir) {
  return {
    [=](dump_atom) {
      store::dump_sink sink;
      sink.imq = [](uint64_t count, const auto& first) {
        auto line = "DUMP imq: " + std::to_string(count) + " message(s)";
        for (auto& [poster, text] : first)
          line += " [" + poster + ": " + printable(text) + "]";
        log_line(line);
      };
      sink.mailbox = [](const std::string& owner, uint64_t count,
                        const std::vector<std::string>& texts) {
        auto line = "DUMP mailbox " + owner + ": " + std::to_string(count)
                    + " message(s)";
        for (auto& text : texts)
          line += " [" + printable(text) + "]";
        log_line(line);
      };
      try {
        store::open_reader(data_dir).dump(sink, dump_texts);
      } catch (const store_error& err) {
        log_line(std::string{"DUMP failed: "} + err.what());
      }
      self->quit();
      return caf::ok_atom::value;
    },
  };
}

registry_actor::behavior_type
registry(registry_pointer self, hasher_actor hasher, imq_actor imq,
         writer_actor writer, reader_actor reader, registry_config cfg) {
  auto& st = self->state;
  st.hasher = hasher;
  st.imq = std::move(imq);
  st.writer = std::move(writer);
  st.reader = std::move(reader);
  st.cfg = std::move(cfg);
  st.throttle.emplace(st.cfg.throttle);
  self
    ->request(hasher, st.cfg.waits.hashing, hash_atom::value,
              "decoy-" + new_cookie())
    .then([=](std::string& hash) { self->state.decoy_hash = std::move(hash); },
          [=](caf::error& err) {
            log_line("registry: no decoy hash: " + to_string(err));
          });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto owner = st.owner_by_address.find(msg.source);
    if (owner == st.owner_by_address.end())
      return;
    auto& user = owner->second;
    if (auto active = st.mailboxes.peek(user);
        active && active->handle.address() == msg.source) {
      log_line("registry: mailbox of " + user
               + " stopped: " + to_string(msg.reason));
      st.mailboxes.erase(user);
    }
    st.owner_by_address.erase(owner);
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    for (auto& entry : st.mailboxes.entries())
      self->send_exit(entry.second.handle, msg.reason);
    for (auto& entry : st.retiring)
      self->send_exit(entry.second, msg.reason);
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
      if (!self->state.throttle->allows(user, address, clock_type::now()))
        return errc::login_failed;
      auto rp = self->make_response_promise<std::string>();
      auto verify = [=](std::string hash, bool known) mutable {
        auto& st = self->state;
        if (hash.empty()) {
          st.throttle->failed(user, address, clock_type::now());
          rp.deliver(make_error(errc::login_failed));
          return;
        }
        self
          ->request(st.hasher, st.cfg.waits.hashing, verify_atom::value,
                    std::move(hash), password)
          .then(
            [=](bool match) mutable {
              auto& throttle = *self->state.throttle;
              if (known && match) {
                throttle.succeeded(user, address, clock_type::now());
                rp.deliver(start_session(self, user));
              } else {
                throttle.failed(user, address, clock_type::now());
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
      return self->delegate(self->state.imq, post_atom::value, *caller,
                            std::move(text));
    },
    [=](store_atom, const std::string& cookie,
        const std::string& target) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto caller = caller_of(self, cookie);
      if (caller == nullptr)
        return errc::not_logged_in;
      if (st.mailboxes.peek(target) != nullptr
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
      log_line("DUMP registry: " + std::to_string(st.user_by_cookie.size())
               + " live session(s), " + std::to_string(st.mailboxes.size())
               + " active mailbox(es) (" + std::to_string(st.activations)
               + " activated, " + std::to_string(st.passivations)
               + " passivated), " + std::to_string(st.accounts.size())
               + " cached account(s)");
      self->request(st.writer, st.cfg.waits.request, stats_atom::value)
        .then(
          [](uint64_t commits, uint64_t writes) {
            auto per_commit = commits == 0 ? 0.0 : double(writes) / commits;
            char avg[32];
            std::snprintf(avg, sizeof(avg), "%.1f", per_commit);
            log_line("DUMP store: " + std::to_string(commits) + " commit(s) of "
                     + std::to_string(writes) + " write(s) since start, " + avg
                     + " per commit");
          },
          [](caf::error& err) {
            log_line("DUMP store: no figures: " + to_string(err));
          });
      // Detached, on a read connection of its own: a large store takes a
      // while to list, and nobody waits for it meanwhile.
      auto dumper = self->spawn<caf::detached>(dump_store, st.cfg.data_dir);
      return self->delegate(dumper, dump_atom::value);
    },
    [=](stats_atom) {
      auto& st = self->state;
      return std::make_tuple(static_cast<uint64_t>(st.mailboxes.size()),
                             st.activations, st.passivations,
                             static_cast<uint64_t>(st.accounts.size()));
    },
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
      self->delayed_send(self, sweep_interval(self->state.cfg),
                         caf::tick_atom::value);
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, hasher_actor hasher,
                              imq_actor imq, writer_actor writer,
                              reader_actor reader, registry_config cfg) {
  return sys.spawn(registry, std::move(hasher), std::move(imq),
                   std::move(writer), std::move(reader), std::move(cfg));
}

} // namespace smsp
