// The acceptor broker and the wiring of a server's actors.
#include "net/server.hpp"

#include <algorithm>
#include <unordered_set>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/connection_state.hpp"

namespace smsp {

namespace {

struct acceptor_state {
  connection_deps deps;
  /// Live connection brokers, stopped with the acceptor.
  std::unordered_set<caf::actor> connections;
  /// Set once the acceptor was told to stop: it then quits with this reason
  /// as soon as its last connection is gone.
  caf::error stopping;
  /// Connections refused since the server was last below max_connections;
  /// logged when it accepts again, so that a flood makes two log lines.
  uint64_t refused = 0;
  /// An idle sweep is scheduled; only while there are connections.
  bool sweeping = false;
  static inline const char* name = "smsp.acceptor";
};

using acceptor_broker = caf::stateful_actor<acceptor_state, caf::io::broker>;

/// Answers a connection beyond max_connections `KO server busy` and closes
/// it; CAF still writes the reply before the close. It never reaches a
/// connection broker, so it costs the server no actor and no read buffer.
void refuse(acceptor_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  if (st.refused++ == 0)
    log_line("server: " + std::to_string(st.connections.size())
             + " connections, the --max-connections limit: refusing new ones "
               "with 'KO server busy'");
  encode_reply(error_reply(errc::server_busy), terminator::lf,
               self->wr_buf(hdl));
  self->flush(hdl);
  self->close(hdl);
}

/// Schedules the next idle sweep: every tenth of idle_timeout, each
/// connection is asked to check whether it has been idle for idle_timeout
/// (connection.cpp, check_idle), so an idle one is closed within 1.1 times
/// it. One timer for the whole server instead of one per connection: a CAF
/// 0.17 delayed message keeps its receiver's memory until it is due (about
/// 1.8 KiB per connection), so per-connection idle timers would keep every
/// connection closed in the last 10 minutes alive. Anonymous, because a
/// broker with a pending message from itself is never freed.
void sweep_later(acceptor_broker* self) {
  auto& st = self->state;
  if (st.sweeping || st.stopping || st.connections.empty())
    return;
  st.sweeping = true;
  auto interval = std::max(st.deps.idle_timeout / 10,
                           std::chrono::milliseconds{10});
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), interval,
                         caf::idle_atom::value);
}

caf::behavior acceptor(acceptor_broker* self, connection_deps deps) {
  self->state.deps = std::move(deps);
  // Monitoring, not linking: one failing connection must not stop the server.
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    for (auto i = st.connections.begin(); i != st.connections.end(); ++i)
      if (i->address() == msg.source) {
        st.connections.erase(i);
        break;
      }
    if (st.stopping && st.connections.empty())
      self->quit(st.stopping);
  });
  // Stops accepting, then waits for every connection to stop, so that no
  // connection outlives the actors it talks to.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.stopping)
      return;
    st.stopping = msg.reason ? msg.reason : caf::exit_reason::user_shutdown;
    self->close_all();
    for (auto& conn : st.connections)
      self->send_exit(conn, st.stopping);
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
      // Counted here, where connections start and end (down_msg), so the
      // count needs no message of its own.
      if (st.connections.size() >= st.deps.max_connections)
        return refuse(self, msg.handle);
      if (st.refused > 0) {
        log_line("server: accepting connections again, after refusing "
                 + std::to_string(st.refused));
        st.refused = 0;
      }
      auto conn = self->fork(connection, msg.handle, st.deps);
      self->monitor(conn);
      st.connections.emplace(std::move(conn));
      sweep_later(self);
    },
    [=](caf::idle_atom) {
      auto& st = self->state;
      st.sweeping = false;
      if (st.stopping)
        return;
      for (auto& conn : st.connections)
        caf::anon_send(conn, caf::idle_atom::value);
      sweep_later(self);
    },
  };
}

} // namespace

caf::expected<listener> listen(caf::actor_system& sys, connection_deps deps,
                               const std::string& host, uint16_t port) {
  auto acc = sys.middleman().spawn_broker(acceptor, std::move(deps));
  caf::expected<listener> result{listener{acc, 0}};
  caf::scoped_actor self{sys};
  self
    ->request(acc, std::chrono::seconds{30}, caf::open_atom::value, host, port)
    .receive([&](uint16_t bound) { result->port = bound; },
             [&](caf::error& err) { result = std::move(err); });
  if (!result)
    stop_listening(acc);
  return result;
}

void stop_listening(const caf::actor& acceptor) {
  caf::scoped_actor self{acceptor.home_system()};
  self->monitor(acceptor);
  self->send_exit(acceptor, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {},
                caf::after(std::chrono::seconds{10}) >>
                  [] {
                    log_line("server: connections did not stop within 10 s");
                  });
}

caf::expected<server> start_server(caf::actor_system& sys,
                                   const server_config& cfg) {
  if (!init_crypto())
    return caf::make_error(caf::sec::runtime_error,
                           "libsodium cannot be initialized");
  server srv;
  // Throws store_error: a data dir that cannot be used stops the start.
  auto db = store::open(cfg.data_dir, cfg.sync);
  auto queued = db.imq();
  srv.writer = spawn_writer(sys, std::move(db), cfg.commit_delay);
  try {
    srv.reader = spawn_reader(sys, cfg.data_dir);
  } catch (...) {
    stop_server(srv);
    throw;
  }
  srv.hasher = spawn_hasher(sys, cfg.hashing);
  srv.imq = spawn_imq(sys, srv.writer, std::move(queued), cfg.registry.mail);
  auto reg_cfg = cfg.registry;
  reg_cfg.waits = cfg.connections.waits;
  reg_cfg.data_dir = cfg.data_dir;
  srv.registry = spawn_registry(sys, srv.hasher, srv.imq, srv.writer,
                                srv.reader, reg_cfg);
  auto deps = cfg.connections;
  deps.registry = srv.registry;
  auto bound = listen(sys, std::move(deps), cfg.host, cfg.port);
  if (!bound) {
    stop_server(srv);
    return std::move(bound.error());
  }
  srv.acceptor = bound->acceptor;
  srv.port = bound->port;
  return srv;
}

void stop_server(const server& srv) {
  // Connections first: a request in flight when the registry stopped would
  // otherwise be answered "KO internal error".
  if (srv.acceptor)
    stop_listening(srv.acceptor);
  auto reason = caf::exit_reason::user_shutdown;
  if (srv.registry)
    caf::anon_send_exit(srv.registry, reason);
  if (srv.imq)
    caf::anon_send_exit(srv.imq, reason);
  if (srv.hasher)
    caf::anon_send_exit(srv.hasher, reason);
  if (srv.reader)
    caf::anon_send_exit(srv.reader, reason);
  // The writer commits its open group as it stops.
  if (srv.writer)
    caf::anon_send_exit(srv.writer, reason);
}

} // namespace smsp
