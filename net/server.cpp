// The acceptor broker and the wiring of a server's actors.
#include "net/server.hpp"

#include <unordered_set>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/connection_impl.hpp"

namespace smsp {

namespace {

struct acceptor_state {
  connection_deps deps;
  /// Live connection brokers, stopped with the acceptor.
  std::unordered_set<caf::actor> connections;
  /// Set once the acceptor was told to stop: it then quits with this reason
  /// as soon as its last connection is gone.
  caf::error stopping;
  static inline const char* name = "smsp.acceptor";
};

using acceptor_broker = caf::stateful_actor<acceptor_state, caf::io::broker>;

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
      auto conn = self->fork(connection, msg.handle, self->state.deps);
      self->monitor(conn);
      self->state.connections.emplace(std::move(conn));
    },
  };
}

} // namespace

caf::expected<server> start_server(caf::actor_system& sys,
                                   const server_config& cfg) {
  if (!init_crypto())
    return caf::make_error(caf::sec::runtime_error,
                           "libsodium cannot be initialized");
  server srv;
  auto waits = cfg.connections.waits;
  srv.hasher = spawn_hasher(sys, cfg.hashing);
  srv.imq = spawn_imq(sys, waits);
  srv.registry = spawn_registry(sys, srv.hasher, srv.imq, waits);
  auto deps = cfg.connections;
  deps.registry = srv.registry;
  deps.imq = srv.imq;
  srv.acceptor = sys.middleman().spawn_broker(acceptor, std::move(deps));
  caf::error failure;
  caf::scoped_actor self{sys};
  self
    ->request(srv.acceptor, std::chrono::seconds{30}, caf::open_atom::value,
              cfg.host, cfg.port)
    .receive([&](uint16_t port) { srv.port = port; },
             [&](caf::error& err) { failure = std::move(err); });
  if (failure) {
    stop_server(srv);
    return failure;
  }
  return srv;
}

void stop_server(const server& srv) {
  auto reason = caf::exit_reason::user_shutdown;
  if (srv.acceptor) {
    // Connections first: a request in flight when the registry stopped
    // would otherwise be answered "KO internal error".
    caf::scoped_actor self{srv.acceptor.home_system()};
    self->monitor(srv.acceptor);
    self->send_exit(srv.acceptor, reason);
    self->receive(
      [](caf::down_msg&) {},
      caf::after(std::chrono::seconds{10}) >>
        [] { log_line("server: connections did not stop within 10 s"); });
  }
  caf::anon_send_exit(srv.registry, reason);
  caf::anon_send_exit(srv.imq, reason);
  caf::anon_send_exit(srv.hasher, reason);
}

} // namespace smsp
