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
  self->receive(
    [](caf::down_msg&) {},
    caf::after(std::chrono::seconds{10}) >>
      [] { log_line("server: connections did not stop within 10 s"); });
}

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
  caf::anon_send_exit(srv.registry, reason);
  caf::anon_send_exit(srv.imq, reason);
  caf::anon_send_exit(srv.hasher, reason);
}

} // namespace smsp
