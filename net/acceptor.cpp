// The acceptor broker: accepts or refuses connections, sweeps them for the
// idle rule and owns the server-wide budget of unsent replies.
#include "net/acceptor.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/connection_state.hpp"
#include "net/output_budget.hpp"
#include "net/wire/replies.hpp"

namespace smsp {

namespace {

struct acceptor_state {
  acceptor_config cfg;
  registry_actor registry;
  /// Live connection brokers, stopped with the acceptor.
  std::unordered_map<caf::actor_addr, caf::actor> connections;
  /// Set once the acceptor was told to stop: it then quits with this reason
  /// as soon as its last connection is gone.
  caf::error stopping;
  /// Connections refused since the server was last below max_connections;
  /// logged when it accepts again, so that a flood makes two log lines.
  uint64_t refused = 0;
  /// Connections accepted, and refused as busy, since start (the metrics).
  uint64_t accepted_total = 0;
  uint64_t refused_total = 0;
  /// An idle sweep is scheduled; only while there are connections.
  bool sweeping = false;
  /// Unsent reply bytes beyond the connections' free allowances.
  std::optional<output_budget<caf::actor_addr>> budget;
  /// The grant each waiting connection will get.
  std::unordered_map<caf::actor_addr, caf::response_promise> waiting;
  /// The budget ran out; logged once, and again when it is enough again.
  bool short_of_budget = false;
  static inline const char* name = "smsp.acceptor";
};

using acceptor_broker = caf::stateful_actor<acceptor_state, caf::io::broker>;

/// Answers a connection beyond max_connections `KO server busy` and closes
/// it; CAF still writes the reply before the close. It never reaches a
/// connection broker, so it costs the server no actor and no read buffer.
void refuse(acceptor_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  ++st.refused_total;
  if (st.refused++ == 0)
    log_warn("server",
             std::to_string(st.connections.size())
               + " connections, the limit (--max-connections, or what the "
                 "open-file limit allows): refusing new ones with 'KO server "
                 "busy', first "
               + self->remote_addr(hdl) + ":"
               + std::to_string(self->remote_port(hdl)));
  else if (log_enabled(log_level::debug))
    log_debug("conn", self->remote_addr(hdl) + ":"
                        + std::to_string(self->remote_port(hdl))
                        + " refused: server busy");
  encode_reply(reply::failure(errc::server_busy), terminator::lf,
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
  auto interval = std::max(st.cfg.connection.idle_timeout / 10,
                           std::chrono::milliseconds{10});
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), interval,
                         caf::idle_atom::value);
}

/// Delivers grants that fit again.
void deliver(acceptor_broker* self,
             const std::vector<output_budget<caf::actor_addr>::grant>& grants) {
  auto& st = self->state;
  for (auto& g : grants) {
    if (auto i = st.waiting.find(g.holder); i != st.waiting.end()) {
      i->second.deliver(uint64_t{g.bytes});
      st.waiting.erase(i);
    }
  }
  if (st.short_of_budget && st.budget->waiting() == 0) {
    st.short_of_budget = false;
    log_info("server", "unsent replies back within --max-unsent-total");
  }
}

caf::behavior acceptor(acceptor_broker* self, registry_actor registry,
                       acceptor_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.registry = std::move(registry);
  st.budget.emplace(st.cfg.max_unsent_total);
  // Monitoring, not linking: one failing connection must not stop the server.
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    st.connections.erase(msg.source);
    st.waiting.erase(msg.source);
    deliver(self, st.budget->forget(msg.source));
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
      // Counted here, where connections start and end (down_msg), so the
      // count needs no message of its own.
      if (st.connections.size() >= st.cfg.max_connections)
        return refuse(self, msg.handle);
      if (st.refused > 0) {
        log_info("server", "accepting connections again, after refusing "
                             + std::to_string(st.refused));
        st.refused = 0;
      }
      ++st.accepted_total;
      connection_deps deps{st.registry, caf::actor_cast<caf::actor>(self),
                           st.cfg.connection, st.cfg.metrics};
      auto conn = self->fork(connection, msg.handle, std::move(deps));
      self->monitor(conn);
      st.connections.emplace(conn.address(), std::move(conn));
      sweep_later(self);
    },
    [=](grant_atom, uint64_t bytes) -> caf::result<uint64_t> {
      auto& st = self->state;
      auto who = caf::actor_cast<caf::actor_addr>(self->current_sender());
      if (st.budget->request(who, bytes))
        return bytes;
      if (!st.short_of_budget) {
        st.short_of_budget = true;
        log_warn("server",
                 "unsent replies reached --max-unsent-total ("
                   + std::to_string(st.budget->total())
                   + " bytes): connections whose clients do not read wait");
      }
      // Those holding more than they need now give it back.
      for (auto& holder : st.budget->holders())
        if (auto i = st.connections.find(holder); i != st.connections.end())
          self->send(i->second, reclaim_atom::value);
      auto rp = self->make_response_promise();
      st.waiting[who] = rp;
      return rp;
    },
    [=](release_atom, uint64_t bytes) {
      auto& st = self->state;
      auto who = caf::actor_cast<caf::actor_addr>(self->current_sender());
      deliver(self, st.budget->release(who, bytes));
    },
    // admin tool: the live connections, for STATS.
    [=](conns_atom) { return uint64_t{self->state.connections.size()}; },
    [=](caf::idle_atom) {
      auto& st = self->state;
      st.sweeping = false;
      if (st.stopping)
        return;
      for (auto& conn : st.connections)
        caf::anon_send(conn.second, caf::idle_atom::value);
      sweep_later(self);
    },
    [=](metrics_atom) {
      auto& st = self->state;
      return acceptor_figures{st.connections.size(), st.accepted_total,
                              st.refused_total};
    },
  };
}

} // namespace

caf::expected<listener> listen(caf::actor_system& sys, registry_actor registry,
                               acceptor_config cfg, const std::string& host,
                               uint16_t port) {
  auto acc = sys.middleman().spawn_broker(acceptor, std::move(registry),
                                          std::move(cfg));
  // The acceptor handles metrics_atom as acceptor_metrics_actor says.
  caf::expected<listener> result{
    listener{acc, caf::actor_cast<acceptor_metrics_actor>(acc), 0}};
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
                    log_warn("server", "connections did not stop within 10 s");
                  });
}

} // namespace smsp
