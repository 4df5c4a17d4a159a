// Registry actor: sessions, the account cache, the login throttle and the
// routing of every request to the actor that owns its data.
#include <algorithm>
#include <functional>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <malloc.h>

#include "actors/io_thread.hpp"
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
  /// Requests waiting for a mailbox on a node being activated (spawned
  /// there, its unfinished moves completed), per user, in arrival order.
  std::unordered_map<std::string,
                     std::vector<std::function<void(const caf::error*)>>>
    activating;
  /// Accounts placed on each node.
  std::vector<uint64_t> users_placed;
  /// Requests to each node's mailboxes awaiting their answer: when the node
  /// goes down (a lost connection is noticed at once, before their
  /// timeouts), each is answered errc::mailbox_unavailable there and then.
  std::vector<std::unordered_map<uint64_t, std::function<void()>>> in_flight;
  uint64_t next_in_flight = 0;
  /// Failed LOGINs per username and per client address.
  std::optional<login_throttle> throttle;
  /// LOGINs the throttle refused since start (for the metrics).
  uint64_t throttled_logins = 0;
  /// LOGIN for an unknown user verifies against this hash, so the reply's
  /// timing does not tell whether the account exists.
  std::string decoy_hash;
  /// admin tool: users with a delete (true) or a passwd (false) under way.
  /// A user being deleted gets no new session, mailbox or cached hash.
  std::unordered_map<std::string, bool> changing;
  /// admin tool: the value of change_epoch when each user's account last
  /// changed (deleted, new password). A lookup or LOGIN that began before
  /// that is not trusted: the hash it read may be the old one.
  std::unordered_map<std::string, uint64_t> changed_at;
  uint64_t change_epoch = 0;
  /// The ticket of the last STORE to a mailbox of this process (see
  /// expect_atom).
  uint64_t last_ticket = 0;
  static inline const char* name = "smsp.registry";
};

using registry_pointer = io_thread_actor<registry_state, registry_actor>*;

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
    mailbox_deps{d.reader, d.writer, st.cfg.waits, st.cfg.mail, {}, d.host},
    st.mailboxes.retiring(user).value_or(mailbox_actor{}));
  self->monitor(handle);
  st.mailboxes.activate(user, handle, handle.address(), t);
  return handle;
}

bool has_nodes(registry_pointer self) {
  return !self->state.cfg.nodes.empty();
}

/// The index of the node that holds `user`'s mailbox (has_nodes only).
size_t node_of(registry_pointer self, const std::string& user) {
  return rendezvous_place(user, self->state.cfg.nodes);
}

/// The answers of everyone waiting for `user`'s activation: nullptr when
/// the mailbox is active, else the error.
void activation_done(registry_pointer self, const std::string& user,
                     const caf::error* err) {
  auto i = self->state.activating.find(user);
  if (i == self->state.activating.end())
    return;
  auto waiting = std::move(i->second);
  self->state.activating.erase(i);
  for (auto& f : waiting)
    f(err);
}

/// Activates `user`'s mailbox on its node: spawned there, then its claimed
/// moves completed, and only then does it serve. Requests meanwhile wait,
/// in order.
void activate_remote(registry_pointer self, const std::string& user) {
  auto& st = self->state;
  auto& link = st.deps.nodes[node_of(self, user)];
  auto fail = [=](caf::error&) {
    auto err = make_error(errc::mailbox_unavailable);
    activation_done(self, user, &err);
  };
  self
    ->request(link, st.cfg.node_timeout * 2, caf::spawn_atom::value, user,
              uint64_t{st.cfg.mail.max_mailbox})
    .then(
      [=](mailbox_actor& box) {
        self
          ->request(self->state.deps.imq, caf::infinite, finish_atom::value,
                    user, box)
          .then(
            [=](caf::ok_atom) {
              auto& st = self->state;
              self->monitor(box);
              st.mailboxes.activate(user, box, box.address(), now(self));
              activation_done(self, user, nullptr);
            },
            [=](caf::error& err) mutable {
              // Not served: the node's host retires it when a newer one
              // for this user arrives.
              caf::anon_send(box, retire_atom::value);
              fail(err);
            });
      },
      fail);
}

/// Calls `f(mailbox, nullptr)` with `user`'s active mailbox, activating it
/// if needed (at once in this process; on a node after a round trip), or
/// `f({}, error)`. Calls for one user keep their order.
template <class F>
void with_mailbox(registry_pointer self, const std::string& user, F f) {
  auto& st = self->state;
  if (!has_nodes(self)) {
    f(mailbox_of(self, user), nullptr);
    return;
  }
  if (auto active = st.mailboxes.touch(user, now(self))) {
    f(*active, nullptr);
    return;
  }
  auto& waiting = st.activating[user];
  waiting.emplace_back([=](const caf::error* err) mutable {
    if (err != nullptr) {
      f(mailbox_actor{}, err);
      return;
    }
    auto active = self->state.mailboxes.touch(user, now(self));
    f(*active, nullptr);
  });
  if (waiting.size() == 1)
    activate_remote(self, user);
}

/// Whether `err` is the mailbox's own answer (mailbox empty, full, ...),
/// rather than no answer from its node.
bool is_domain_error(const caf::error& err) {
  return err.category() == error_category
         && err != make_error(errc::mailbox_unavailable);
}

/// Forgets `box`, the active mailbox of `user` on a node that did not
/// answer: the next request activates a new one, which completes what this
/// one may have left unfinished.
void forget_unanswered(registry_pointer self, const mailbox_actor& box) {
  self->state.mailboxes.stopped(box.address());
}

/// Sends `xs...` to `user`'s mailbox and delivers the answer to `rp`. A
/// mailbox of this process gets the request delegated; one on a node gets
/// a request bounded by the node timeout, whose expiry answers
/// errc::mailbox_unavailable.
template <class R, class... Xs>
void to_mailbox(registry_pointer self, const std::string& user,
                caf::typed_response_promise<R> rp, Xs... xs) {
  with_mailbox(
    self, user, [=](const mailbox_actor& box, const caf::error* err) mutable {
      if (err != nullptr) {
        rp.deliver(*err);
        return;
      }
      if (!has_nodes(self)) {
        rp.delegate(box, xs...);
        return;
      }
      // One promise for the answer and for the node going down,
      // whichever comes first: the other finds it delivered.
      auto once = std::make_shared<caf::typed_response_promise<R>>(rp);
      auto k = node_of(self, user);
      auto id = ++self->state.next_in_flight;
      self->state.in_flight[k].emplace(id, [once]() mutable {
        if (once->pending())
          once->deliver(make_error(errc::mailbox_unavailable));
      });
      self->request(box, self->state.cfg.node_timeout, xs...)
        .then(
          [=](R& r) mutable {
            self->state.in_flight[k].erase(id);
            if (once->pending())
              once->deliver(std::move(r));
          },
          [=](caf::error& err) mutable {
            self->state.in_flight[k].erase(id);
            if (!once->pending())
              return;
            if (is_domain_error(err)) {
              once->deliver(std::move(err));
              return;
            }
            forget_unanswered(self, box);
            once->deliver(make_error(errc::mailbox_unavailable));
          });
    });
}

/// Moves `poster`'s latest IMQ message to `target`'s mailbox on a node:
/// the IMQ does it exactly once (claim, apply, settle).
void store_on_node(registry_pointer self, const std::string& poster,
                   const std::string& target,
                   caf::typed_response_promise<caf::ok_atom> rp) {
  with_mailbox(
    self, target, [=](const mailbox_actor& box, const caf::error* err) mutable {
      if (err != nullptr) {
        rp.deliver(*err);
        return;
      }
      self
        ->request(self->state.deps.imq, caf::infinite, store_atom::value,
                  poster, target, box)
        .then([=](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
              [=](caf::error& err) mutable {
                if (err == make_error(errc::mailbox_unavailable))
                  forget_unanswered(self, box);
                rp.deliver(std::move(err));
              });
    });
}

/// Announces STORE `ticket` to `target`'s mailbox in this process and
/// returns the mailbox. Sent before the IMQ can ask the mailbox about it,
/// and in order with the owner's other requests, which therefore see it.
mailbox_actor announce_store(registry_pointer self, const std::string& target,
                             uint64_t ticket) {
  auto box = mailbox_of(self, target);
  self->send(box, expect_atom::value, ticket);
  return box;
}

/// Node `index` went down: its mailboxes are gone or unreachable. They are
/// forgotten, so that requests for its users ask its link, which answers
/// at once while the node is down.
void node_went_down(registry_pointer self, uint64_t index) {
  auto& st = self->state;
  auto ids = st.mailboxes.ids_where(
    [&](const std::string& user) { return node_of(self, user) == index; });
  for (auto& id : ids)
    st.mailboxes.stopped(id);
  auto waiting = std::move(st.in_flight[index]);
  st.in_flight[index].clear();
  for (auto& [id, fail] : waiting)
    fail();
}

/// Node `index` is up (again): the users on it with claimed moves get their
/// mailbox activated now, which completes those moves.
void node_went_up(registry_pointer self, uint64_t index) {
  self
    ->request(self->state.deps.imq, self->state.cfg.waits.request,
              claimed_atom::value)
    .then(
      [=](std::vector<std::string>& owners) {
        for (auto& owner : owners)
          if (node_of(self, owner) == index)
            with_mailbox(self, owner,
                         [](const mailbox_actor&, const caf::error*) {});
      },
      [](caf::error&) {});
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
    // A node that does not answer has lost the mailbox anyway.
    auto wait = has_nodes(self) ? caf::duration{st.cfg.node_timeout}
                                : caf::duration{caf::infinite};
    self->request(handle, wait, retire_atom::value)
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

/// Calls `f(figures)` with the registry's figures and, with nodes, the
/// status of each node as its link reports it.
template <class F>
void with_figures(registry_pointer self, F f) {
  auto& st = self->state;
  auto figures = std::make_shared<registry_figures>(figures_of(st));
  auto n = st.deps.nodes.size();
  if (n == 0) {
    f(std::move(*figures));
    return;
  }
  figures->nodes.resize(n);
  for (size_t k = 0; k < n; ++k) {
    figures->nodes[k].address = to_string(st.cfg.nodes[k]);
    figures->nodes[k].users_placed = st.users_placed[k];
    figures->nodes[k].why = "its link did not answer";
  }
  st.mailboxes.for_each_active_user([&](const std::string& user) {
    ++figures->nodes[node_of(self, user)].active_mailboxes;
  });
  auto pending = std::make_shared<size_t>(n);
  auto one_done = [=]() mutable {
    if (--*pending == 0)
      f(std::move(*figures));
  };
  for (size_t k = 0; k < n; ++k)
    self->request(st.deps.nodes[k], st.cfg.waits.request, stats_atom::value)
      .then(
        [=](node_status& status) mutable {
          // The link knows the node; the counts are the registry's.
          status.users_placed = figures->nodes[k].users_placed;
          status.active_mailboxes = figures->nodes[k].active_mailboxes;
          figures->nodes[k] = std::move(status);
          one_done();
        },
        [=](caf::error&) mutable { one_done(); });
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

/// Whether the session may act on `owner`'s mailbox: only on the caller's
/// own. Another name gets not_your_mailbox whether or not it exists, so
/// that these requests never reveal which accounts exist.
caf::error check_owner(registry_pointer self, const std::string& cookie,
                       const std::string& owner) {
  auto caller = caller_of(self, cookie);
  if (caller == nullptr)
    return make_error(errc::not_logged_in);
  if (*caller != owner)
    return make_error(errc::not_your_mailbox);
  return {};
}

/// admin tool: whether `user`'s account changed (admin delete or passwd)
/// after the registry's change_epoch was `epoch`.
bool changed_since(registry_pointer self, const std::string& user,
                   uint64_t epoch) {
  auto i = self->state.changed_at.find(user);
  return i != self->state.changed_at.end() && i->second > epoch;
}

/// admin tool: whether `user` is being deleted.
bool is_deleting(registry_pointer self, const std::string& user) {
  auto i = self->state.changing.find(user);
  return i != self->state.changing.end() && i->second;
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
  auto epoch = st.change_epoch;
  self->request(st.deps.reader, st.cfg.waits.request, lookup_atom::value, user)
    .then(
      [=](std::string& hash) mutable {
        // The admin changed the account while the reader read it: what it
        // read may be gone or stale, so it is read again.
        if (changed_since(self, user, epoch)) {
          with_account(self, user, std::move(found), std::move(missing));
          return;
        }
        if (!is_deleting(self, user))
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
              if (has_nodes(self))
                ++self->state.users_placed[node_of(self, user)];
              rp.deliver(start_session(self, user));
            },
            fail);
      },
      fail);
}

// -- the auth log -------------------------------------------------------------

/// The "user=... addr=..." part of an auth line. The name is the client's
/// bytes, so it is escaped (no log injection) and cut; the address is the
/// numeric one the socket gave. docs/OPERATIONS.md documents the format,
/// which fail2ban matches: keep them in step.
std::string auth_subject(const std::string& user, const std::string& address) {
  return "user=" + printable(user, 64) + " addr=" + address;
}

std::string to_ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

/// Logs a LOGIN that failed (wrong password or no such user) and the
/// penalty it left, and has the registry check when that penalty is over.
void log_failed_login(registry_pointer self, const std::string& user,
                      const std::string& address, const penalty_state& before,
                      const penalty_state& after) {
  log_info("auth",
           "LOGIN failed: " + auth_subject(user, address) + " failures="
             + std::to_string(after.failures) + " penalty=" + to_ms(after.left)
             + (after.left.count() > 0 ? std::string{" key="} + after.key
                                       : std::string{}));
  if (after.left.count() == 0)
    return;
  if (before.left.count() == 0)
    log_info("auth", "penalty started: " + auth_subject(user, address) + " for "
                       + to_ms(after.left) + " key=" + after.key);
  self->delayed_send(self, after.left, penalty_atom::value, user, address);
}

// -- admin tool ---------------------------------------------------------------

/// Ends `user`'s session, if any; returns whether there was one.
bool end_session(registry_pointer self, const std::string& user) {
  auto& st = self->state;
  auto i = st.cookie_by_user.find(user);
  if (i == st.cookie_by_user.end())
    return false;
  st.user_by_cookie.erase(i->second);
  st.cookie_by_user.erase(i);
  return true;
}

/// The admin changed `user`'s account: lookups and LOGINs begun before now
/// do not trust what they read (see with_account).
void account_changed(registry_pointer self, const std::string& user) {
  auto& st = self->state;
  st.changed_at[user] = ++st.change_epoch;
}

/// passwd: hashes `password` off this thread, stores the hash durably, then
/// caches it and ends the user's session (one started with the old password
/// before the commit included). `user` is marked in `changing`.
void change_password(registry_pointer self, std::string user,
                     std::string password,
                     caf::typed_response_promise<caf::ok_atom> rp) {
  auto fail = [=](caf::error& err) mutable {
    self->state.changing.erase(user);
    rp.deliver(std::move(err));
  };
  with_account(
    self, user,
    [=](const std::string&) mutable {
      auto& st = self->state;
      self
        ->request(st.deps.hasher, st.cfg.waits.hashing, hash_atom::value,
                  password)
        .then(
          [=](std::string& hash) mutable {
            self
              ->request(self->state.deps.writer, caf::infinite,
                        passwd_atom::value, user, hash)
              .then(
                [=](caf::ok_atom) mutable {
                  auto& st = self->state;
                  st.changing.erase(user);
                  if (st.accounts.peek(user) != nullptr)
                    remember_account(self, user, hash);
                  account_changed(self, user);
                  end_session(self, user);
                  log_info("registry", "admin set a new password for " + user);
                  rp.deliver(caf::ok_atom::value);
                },
                fail);
          },
          fail);
    },
    fail);
}

/// delete: ends the session, retires the mailbox (its writes under way
/// finish first), then has the imq remove the account, its mail and its
/// unstored posts in one transaction. While `user` is marked deleting, no
/// session, mailbox or STORE to it starts. A failed commit changes nothing
/// durable (the account and its mail stay; the mailbox loads again on use).
void delete_user(registry_pointer self, std::string user,
                 caf::typed_response_promise<uint64_t, uint64_t> rp) {
  auto& st = self->state;
  end_session(self, user);
  st.accounts.erase(user);
  std::vector<mailbox_actor> boxes;
  if (auto old = st.mailboxes.retiring(user))
    boxes.push_back(*old);
  if (auto active = st.mailboxes.retire_now(user))
    boxes.push_back(*active);
  auto purge = [=]() mutable {
    self->request(self->state.deps.imq, caf::infinite, purge_atom::value, user)
      .then(
        [=](uint64_t mail, uint64_t posts) mutable {
          auto& st = self->state;
          st.changing.erase(user);
          st.accounts.erase(user);
          account_changed(self, user);
          log_info("registry", "admin deleted user " + user + " with "
                                 + std::to_string(mail) + " message(s) and "
                                 + std::to_string(posts) + " unstored post(s)");
          rp.deliver(mail, posts);
        },
        [=](caf::error& err) mutable {
          self->state.changing.erase(user);
          account_changed(self, user);
          rp.deliver(std::move(err));
        });
  };
  if (boxes.empty()) {
    purge();
    return;
  }
  auto pending = std::make_shared<size_t>(boxes.size());
  for (auto& box : boxes) {
    // Answered after the mailbox's writes under way; an error means it
    // has stopped already. Either way it writes no more.
    auto done = [=](auto&&...) mutable {
      self->state.mailboxes.retired(user, box.address());
      if (--*pending == 0)
        purge();
    };
    self->request(box, caf::infinite, retire_atom::value)
      .then([=](caf::ok_atom) mutable { done(); },
            [=](caf::error&) mutable { done(); });
  }
}

registry_actor::behavior_type
registry(registry_pointer self, registry_deps deps, registry_config cfg) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.cfg = std::move(cfg);
  st.throttle.emplace(st.cfg.throttle);
  st.users_placed = st.cfg.users_placed;
  st.users_placed.resize(st.cfg.nodes.size());
  st.in_flight.resize(st.cfg.nodes.size());
  for (auto& link : st.deps.nodes)
    self->send(link, node_atom::value, caf::actor_cast<node_listener>(self));
  self
    ->request(st.deps.hasher, st.cfg.waits.hashing, hash_atom::value,
              "decoy-" + new_cookie())
    .then([=](std::string& hash) { self->state.decoy_hash = std::move(hash); },
          [=](caf::error& err) {
            log_warn("registry", "no decoy hash: " + to_string(err));
          });
  self->set_down_handler([=](caf::down_msg& msg) {
    if (auto user = self->state.mailboxes.stopped(msg.source))
      log_warn("registry",
               "mailbox of " + *user + " stopped: " + to_string(msg.reason));
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
      if (st.accounts.peek(user) != nullptr || st.registering.count(user) != 0
          || st.changing.count(user) != 0)
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
      auto& gate = *self->state.throttle;
      if (!gate.allows(user, address, now(self))) {
        ++self->state.throttled_logins;
        auto held = gate.penalty(user, address, now(self));
        log_info("auth",
                 "LOGIN refused: " + auth_subject(user, address)
                   + " penalty=" + to_ms(held.left)
                   + (held.left.count() > 0
                        ? std::string{" key="} + held.key
                        : std::string{" (an attempt is being checked)"}));
        return errc::login_failed;
      }
      auto rp = self->make_response_promise<std::string>();
      // admin tool: a delete or new password committed while this LOGIN
      // verified may have made its hash stale.
      auto epoch = self->state.change_epoch;
      auto verify = [=](std::string hash, bool known) mutable {
        auto& st = self->state;
        if (hash.empty()) {
          auto before = st.throttle->penalty(user, address, now(self));
          log_failed_login(self, user, address, before,
                           st.throttle->failed(user, address, now(self)));
          rp.deliver(make_error(errc::login_failed));
          return;
        }
        self
          ->request(st.deps.hasher, st.cfg.waits.hashing, verify_atom::value,
                    std::move(hash), password)
          .then(
            [=](bool match) mutable {
              auto& throttle = *self->state.throttle;
              if (known && match
                  && (changed_since(self, user, epoch)
                      || is_deleting(self, user))) {
                rp.deliver(make_error(errc::login_failed));
                return;
              }
              if (known && match) {
                throttle.succeeded(user, address, now(self));
                rp.deliver(start_session(self, user));
              } else {
                auto before = throttle.penalty(user, address, now(self));
                log_failed_login(self, user, address, before,
                                 throttle.failed(user, address, now(self)));
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
      // admin tool: a user being deleted has no mailbox to deliver to.
      if (is_deleting(self, target))
        return errc::no_such_user;
      if (has_nodes(self)) {
        // A connection sends nothing after a STORE until it is answered
        // when mailboxes are on nodes (connection_config).
        auto rp = self->make_response_promise<caf::ok_atom>();
        if (st.mailboxes.is_active(target)
            || st.accounts.touch(target) != nullptr) {
          store_on_node(self, *caller, target, rp);
          return rp;
        }
        with_account(
          self, target,
          [=, poster = *caller](const std::string&) mutable {
            if (is_deleting(self, target)) {
              rp.deliver(make_error(errc::no_such_user));
              return;
            }
            store_on_node(self, poster, target, rp);
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      }
      // The IMQ gets the STORE now, in order with the poster's MESSAGEs and
      // STOREs, and the target's mailbox the announcement, in order with
      // the owner's reads. The caller's own account exists (a session).
      auto ticket = ++st.last_ticket;
      if (target == *caller || st.mailboxes.is_active(target)
          || st.accounts.touch(target) != nullptr)
        return self->delegate(st.deps.imq, store_atom::value, *caller, target,
                              ticket, announce_store(self, target, ticket));
      // The IMQ holds the STORE in its place until the lookup says where.
      auto held = self->delegate(st.deps.imq, store_atom::value, *caller,
                                 target, ticket, mailbox_actor{});
      with_account(
        self, target,
        [=](const std::string&) {
          auto& imq = self->state.deps.imq;
          if (is_deleting(self, target))
            self->send(imq, store_atom::value, ticket,
                       make_error(errc::no_such_user));
          else
            self->send(imq, store_atom::value, ticket,
                       announce_store(self, target, ticket));
        },
        [=](caf::error& err) {
          self->send(self->state.deps.imq, store_atom::value, ticket,
                     std::move(err));
        });
      return held;
    },
    [=](count_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<uint64_t> {
      if (auto err = check_owner(self, cookie, owner))
        return err;
      auto rp = self->make_response_promise<uint64_t>();
      to_mailbox(self, owner, rp, count_atom::value);
      return rp;
    },
    [=](caf::get_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<std::string> {
      if (auto err = check_owner(self, cookie, owner))
        return err;
      auto rp = self->make_response_promise<std::string>();
      to_mailbox(self, owner, rp, caf::get_atom::value);
      return rp;
    },
    [=](caf::delete_atom, const std::string& cookie,
        const std::string& owner) -> caf::result<caf::ok_atom> {
      if (auto err = check_owner(self, cookie, owner))
        return err;
      auto rp = self->make_response_promise<caf::ok_atom>();
      to_mailbox(self, owner, rp, caf::delete_atom::value);
      return rp;
    },
    [=](dump_atom) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      with_figures(self, [=](registry_figures figures) mutable {
        rp.delegate(self->state.deps.dumper, dump_atom::value,
                    std::move(figures));
      });
      return rp;
    },
    [=](stats_atom) -> caf::result<registry_figures> {
      auto rp = self->make_response_promise<registry_figures>();
      with_figures(self, [=](registry_figures figures) mutable {
        rp.deliver(std::move(figures));
      });
      return rp;
    },
    // admin tool
    [=](sessions_atom) {
      std::vector<std::string> users;
      for (auto& [user, cookie] : self->state.cookie_by_user)
        users.push_back(user);
      std::sort(users.begin(), users.end());
      return users;
    },
    [=](kick_atom, const std::string& user) -> caf::result<caf::ok_atom> {
      if (!end_session(self, user))
        return errc::not_logged_in;
      return caf::ok_atom::value;
    },
    [=](passwd_atom, const std::string& user,
        std::string& password) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (!valid_username(user))
        return errc::no_such_user;
      if (!valid_password(password))
        return errc::bad_password;
      if (st.changing.count(user) != 0 || st.registering.count(user) != 0)
        return errc::change_under_way;
      st.changing.emplace(user, false);
      auto rp = self->make_response_promise<caf::ok_atom>();
      change_password(self, user, std::move(password), rp);
      return rp;
    },
    [=](purge_atom,
        const std::string& user) -> caf::result<uint64_t, uint64_t> {
      auto& st = self->state;
      // The user's mail is on a node, out of the front's transaction.
      if (has_nodes(self))
        return errc::user_on_node;
      if (!valid_username(user))
        return errc::no_such_user;
      if (st.changing.count(user) != 0 || st.registering.count(user) != 0)
        return errc::change_under_way;
      st.changing.emplace(user, true);
      auto rp = self->make_response_promise<uint64_t, uint64_t>();
      with_account(
        self, user,
        [=](const std::string&) mutable { delete_user(self, user, rp); },
        [=](caf::error& err) mutable {
          self->state.changing.erase(user);
          rp.deliver(std::move(err));
        });
      return rp;
    },
    [=](node_atom, up_atom, uint64_t index) { node_went_up(self, index); },
    [=](node_atom, down_atom, uint64_t index) { node_went_down(self, index); },
    [=](penalty_atom, const std::string& user, const std::string& address) {
      // A later failure extended the penalty: its own check logs the end.
      if (self->state.throttle->penalty(user, address, now(self)).left.count()
          == 0)
        log_info("auth", "penalty ended: " + auth_subject(user, address));
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
      // Only the registry's own timer re-arms: a tick sent by anyone else
      // (a test driving the clock) sweeps once.
      if (self->current_sender() == self->ctrl())
        self->delayed_send(self, sweep_interval(self->state.cfg),
                           caf::tick_atom::value);
    },
    [=](metrics_atom) -> caf::result<registry_figures, throttle_figures> {
      auto& st = self->state;
      throttle_figures penalties{st.throttle->penalized(now(self)),
                                 st.throttle->penalties(), st.throttled_logins};
      auto rp
        = self->make_response_promise<registry_figures, throttle_figures>();
      with_figures(self, [=](registry_figures figures) mutable {
        rp.deliver(std::move(figures), penalties);
      });
      return rp;
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, registry_deps deps,
                              registry_config cfg) {
  auto host = deps.host;
  return spawn_on(sys, host, registry, std::move(deps), std::move(cfg));
}

} // namespace smsp
