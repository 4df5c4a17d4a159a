// The admin listener: an acceptor broker and one thin broker per admin
// connection (parse a line, ask the actor that owns the answer, write it).
#include "net/admin.hpp"

#include <deque>
#include <memory>
#include <unordered_map>

#include <sodium.h>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/wire/admin.hpp"
#include "net/wire/codec.hpp"

namespace smsp {

namespace {

/// An unauthenticated connection is closed after this long.
constexpr std::chrono::seconds auth_timeout{10};

/// Requests read ahead of the one being answered; more closes the
/// connection (smsp-admin sends one at a time).
constexpr size_t max_queued = 64;

struct admin_conn_state {
  admin_deps deps;
  caf::io::connection_handle hdl;
  framer frames{admin::max_request};
  std::deque<frame> queued;
  bool authenticated = false;
  /// A request is being answered; the next waits for it (replies in order).
  bool busy = false;
  /// The connection is being closed: nothing more is read or answered.
  bool closing = false;
  static inline const char* name = "smsp.admin.connection";
};

using admin_conn = caf::stateful_actor<admin_conn_state, caf::io::broker>;

void pump(admin_conn* self);

void write_line(admin_conn* self, std::string_view line) {
  auto& out = self->wr_buf(self->state.hdl);
  out.insert(out.end(), line.begin(), line.end());
  out.push_back('\n');
  self->flush(self->state.hdl);
}

/// Writes `line`, then closes: CAF 0.17's close sends what is buffered
/// first.
void close_with(admin_conn* self, std::string_view line) {
  write_line(self, line);
  self->state.closing = true;
  self->state.queued.clear();
  self->close(self->state.hdl);
  self->quit();
}

/// The reply to a failed request: a domain error's own line; anything
/// else (a timeout, a dead actor) is logged and answered internal_error.
std::string failure_line(admin_conn* self, const caf::error& err) {
  if (err.category() == error_category)
    return std::string{admin::reply::failure(static_cast<errc>(err.code()))};
  log_error("admin", "a request failed: " + self->system().render(err));
  return std::string{admin::reply::internal_error};
}

/// Writes the answer of the request under way and starts the next.
void answered(admin_conn* self, std::string_view line) {
  if (self->state.closing)
    return;
  write_line(self, line);
  self->state.busy = false;
  pump(self);
}

/// Handlers for `request(...).then(...)`: every request has a deadline and
/// an error handler, so a missing answer never stops the broker.
auto on_error(admin_conn* self) {
  return [=](caf::error& err) { answered(self, failure_line(self, err)); };
}

/// STATS: asks the registry, the imq, the writer, the reader and the SMSP
/// acceptor at once, and answers when all have.
void stats(admin_conn* self) {
  struct figures {
    registry_figures registry;
    uint64_t imq = 0;
    uint64_t commits = 0;
    uint64_t writes = 0;
    uint64_t accounts = 0;
    uint64_t mail = 0;
    uint64_t stored_imq = 0;
    uint64_t connections = 0;
    caf::error failed;
    size_t pending = 0;
  };
  auto& deps = self->state.deps;
  auto wait = deps.waits.request;
  auto f = std::make_shared<figures>();
  f->pending = deps.acceptor ? 5 : 4;
  auto done = [=] {
    if (--f->pending > 0)
      return;
    if (f->failed) {
      answered(self, failure_line(self, f->failed));
      return;
    }
    using std::to_string;
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::steady_clock::now() - self->state.deps.started);
    auto active = f->registry.active_mailboxes;
    std::vector<admin::field> fields{
      {"version", smsp_version()},
      {"uptime_s", to_string(uptime.count())},
      {"connections", to_string(f->connections)},
      {"sessions", to_string(f->registry.sessions)},
      {"accounts", to_string(f->accounts)},
      {"mailboxes_active", to_string(active)},
      {"mailboxes_passivated",
       to_string(f->accounts > active ? f->accounts - active : 0)},
      {"activations", to_string(f->registry.activations)},
      {"passivations", to_string(f->registry.passivations)},
      {"cached_accounts", to_string(f->registry.cached_accounts)},
      {"imq", to_string(f->imq)},
      {"store_messages", to_string(f->mail)},
      {"store_imq", to_string(f->stored_imq)},
      {"store_commits", to_string(f->commits)},
      {"store_writes", to_string(f->writes)},
      {"nodes", to_string(f->registry.nodes.size())},
    };
    answered(self, admin::reply::ok_with(admin::encode_fields(fields)));
  };
  auto fail = [=](caf::error& err) {
    if (!f->failed)
      f->failed = std::move(err);
    done();
  };
  self->request(deps.registry, wait, stats_atom::value)
    .then(
      [=](registry_figures& r) {
        f->registry = std::move(r);
        done();
      },
      fail);
  self->request(deps.imq, wait, count_atom::value)
    .then(
      [=](uint64_t n) {
        f->imq = n;
        done();
      },
      fail);
  self->request(deps.writer, wait, stats_atom::value)
    .then(
      [=](uint64_t commits, uint64_t writes) {
        f->commits = commits;
        f->writes = writes;
        done();
      },
      fail);
  self->request(deps.reader, wait, totals_atom::value)
    .then(
      [=](uint64_t accounts, uint64_t mail, uint64_t imq) {
        f->accounts = accounts;
        f->mail = mail;
        f->stored_imq = imq;
        done();
      },
      fail);
  if (deps.acceptor)
    self->request(deps.acceptor, wait, conns_atom::value)
      .then(
        [=](uint64_t n) {
          f->connections = n;
          done();
        },
        fail);
}

/// Runs one authenticated request; its answer comes through answered().
void run(admin_conn* self, admin::request& req) {
  auto& deps = self->state.deps;
  auto wait = deps.waits.request;
  auto long_wait = deps.waits.request + deps.waits.hashing;
  auto ok = [=](caf::ok_atom) { answered(self, admin::reply::ok); };
  auto names = [=](std::vector<std::string>& xs) {
    answered(self, admin::reply::ok_with(admin::encode_names(xs)));
  };
  switch (req.v) {
    case admin::verb::auth:
      answered(self, admin::reply::ok);
      return;
    case admin::verb::stats:
      stats(self);
      return;
    case admin::verb::users: {
      auto pattern = req.args.empty() ? std::string{"*"} : req.args[0];
      self->request(deps.reader, wait, users_atom::value, pattern)
        .then(names, on_error(self));
      return;
    }
    case admin::verb::sessions:
      self->request(deps.registry, wait, sessions_atom::value)
        .then(names, on_error(self));
      return;
    case admin::verb::kick:
      self->request(deps.registry, wait, kick_atom::value, req.args[0])
        .then(ok, on_error(self));
      return;
    case admin::verb::passwd:
      self
        ->request(deps.registry, long_wait, passwd_atom::value, req.args[0],
                  req.args[1])
        .then(ok, on_error(self));
      return;
    case admin::verb::remove: {
      auto user = req.args[0];
      self->request(deps.registry, long_wait, purge_atom::value, user)
        .then(
          [=](uint64_t mail, uint64_t posts) {
            answered(self, admin::reply::ok_with(admin::encode_fields(
                             {{"messages", std::to_string(mail)},
                              {"unstored", std::to_string(posts)}})));
          },
          on_error(self));
      return;
    }
  }
}

/// Whether `token` is the server's, compared in constant time.
bool token_matches(const std::string& expected, const std::string& token) {
  return token.size() == expected.size()
         && sodium_memcmp(token.data(), expected.data(), token.size()) == 0;
}

/// Answers the queued requests one at a time, in order. Before the
/// connection has authenticated, only AUTH with the right token is
/// processed; anything else ends it.
void pump(admin_conn* self) {
  auto& st = self->state;
  while (!st.busy && !st.closing && !st.queued.empty()) {
    auto f = std::move(st.queued.front());
    st.queued.pop_front();
    if (f.too_long) {
      if (!st.authenticated)
        return close_with(self, admin::reply::too_long);
      write_line(self, admin::reply::too_long);
      continue;
    }
    auto parsed = admin::parse(f.line);
    if (auto err = std::get_if<std::string>(&parsed)) {
      if (!st.authenticated)
        return close_with(self, admin::reply::auth_first);
      write_line(self, *err);
      continue;
    }
    auto& req = std::get<admin::request>(parsed);
    if (!st.authenticated) {
      if (req.v != admin::verb::auth)
        return close_with(self, admin::reply::auth_first);
      if (!token_matches(st.deps.token, req.args[0])) {
        log_warn("admin", "refused a connection: wrong token");
        return close_with(self, admin::reply::wrong_token);
      }
      st.authenticated = true;
      write_line(self, admin::reply::ok);
      continue;
    }
    st.busy = true;
    run(self, req);
  }
}

caf::behavior admin_connection(admin_conn* self, caf::io::connection_handle hdl,
                               admin_deps deps) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.hdl = hdl;
  self->configure_read(hdl, caf::io::receive_policy::at_most(4096));
  // Anonymous: a CAF 0.17 broker with a message from itself pending is
  // never freed (see net/connection.cpp).
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), auth_timeout,
                         caf::tick_atom::value);
  return {
    [=](const caf::io::new_data_msg& msg) {
      auto& st = self->state;
      if (st.closing)
        return;
      std::vector<frame> frames;
      st.frames.feed(msg.buf.data(), msg.buf.size(), frames);
      for (auto& f : frames)
        st.queued.push_back(std::move(f));
      if (st.queued.size() > max_queued)
        return close_with(self, admin::reply::too_long);
      pump(self);
    },
    [=](caf::tick_atom) {
      if (!self->state.authenticated && !self->state.closing)
        close_with(self, admin::reply::auth_first);
    },
    [=](const caf::io::connection_closed_msg&) { self->quit(); },
  };
}

struct admin_acceptor_state {
  admin_deps deps;
  std::unordered_map<caf::actor_addr, caf::actor> connections;
  caf::error stopping;
  static inline const char* name = "smsp.admin";
};

using admin_acceptor
  = caf::stateful_actor<admin_acceptor_state, caf::io::broker>;

caf::behavior admin_acceptor_fn(admin_acceptor* self, admin_deps deps) {
  self->state.deps = std::move(deps);
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    st.connections.erase(msg.source);
    if (st.stopping && st.connections.empty())
      self->quit(st.stopping);
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.stopping)
      return;
    st.stopping = msg.reason ? msg.reason : caf::exit_reason::user_shutdown;
    self->close_all();
    for (auto& conn : st.connections)
      self->send_exit(conn.second, st.stopping);
    if (st.connections.empty())
      self->quit(st.stopping);
  });
  return {
    [=](caf::open_atom, const std::string& host,
        uint16_t port) -> caf::result<uint16_t> {
      auto bound = self->add_tcp_doorman(port, host.c_str(), true);
      if (!bound)
        return std::move(bound.error());
      return bound->second;
    },
    [=](const caf::io::new_connection_msg& msg) {
      auto& st = self->state;
      if (st.connections.size() >= max_admin_connections) {
        auto& out = self->wr_buf(msg.handle);
        auto line = admin::reply::busy;
        out.insert(out.end(), line.begin(), line.end());
        out.push_back('\n');
        self->flush(msg.handle);
        self->close(msg.handle);
        return;
      }
      auto conn = self->fork(admin_connection, msg.handle, st.deps);
      self->monitor(conn);
      st.connections.emplace(conn.address(), std::move(conn));
    },
  };
}

} // namespace

std::string new_admin_token() {
  unsigned char bytes[admin::token_chars / 2];
  randombytes_buf(bytes, sizeof(bytes));
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

caf::expected<admin_listener>
listen_admin(caf::actor_system& sys, admin_deps deps, const std::string& host,
             uint16_t port) {
  auto acc = sys.middleman().spawn_broker(admin_acceptor_fn, std::move(deps));
  caf::expected<admin_listener> result{admin_listener{acc, 0}};
  caf::scoped_actor self{sys};
  self
    ->request(acc, std::chrono::seconds{30}, caf::open_atom::value, host, port)
    .receive([&](uint16_t bound) { result->port = bound; },
             [&](caf::error& err) { result = std::move(err); });
  if (!result)
    stop_admin(acc);
  return result;
}

void stop_admin(const caf::actor& acceptor) {
  caf::scoped_actor self{acceptor.home_system()};
  self->monitor(acceptor);
  self->send_exit(acceptor, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {},
                caf::after(std::chrono::seconds{10}) >>
                  [] {
                    log_warn("admin", "connections did not stop within 10 s");
                  });
}

} // namespace smsp
