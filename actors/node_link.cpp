// Node link actor: the front's connection to one mailbox node (connect with
// capped backoff, version check, heartbeats, remote spawn of mailboxes).
#include <algorithm>
#include <optional>

#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/openssl/middleman_actor.hpp"

namespace smsp {

namespace {

struct link_state {
  node_link_config cfg;
  /// Connects (plain or TLS) and spawns on the node.
  caf::io::middleman_actor connector;
  caf::io::middleman_actor spawner;
  node_listener listener;
  /// Valid while up.
  caf::node_id node;
  node_actor host;
  bool up = false;
  bool connecting = false;
  bool ping_in_flight = false;
  /// Numbers the connection attempts, so that a late answer to an old one
  /// changes nothing.
  uint64_t attempt = 0;
  std::optional<steady_time> last_heartbeat;
  steady_time next_attempt;
  std::chrono::milliseconds backoff{0};
  std::string why = "not connected yet";
  /// The last failure logged, so that a node that stays down is logged
  /// once, not at every attempt.
  std::string logged;
  node_figures figures;
  static inline const char* name = "smsp.node_link";
};

using link_pointer = node_link_actor::stateful_pointer<link_state>;

std::string address_of(const link_state& st) {
  return st.cfg.host + ":" + std::to_string(st.cfg.port);
}

std::string describe(link_pointer self, const caf::error& err) {
  return self->system().render(err);
}

void schedule_retry(link_pointer self) {
  auto& st = self->state;
  using std::chrono::milliseconds;
  st.backoff = std::clamp(st.backoff * 2, st.cfg.heartbeat, st.cfg.max_backoff);
  st.next_attempt = steady_clock_fn()() + st.backoff;
}

void went_down(link_pointer self, std::string why) {
  auto& st = self->state;
  st.why = std::move(why);
  st.ping_in_flight = false;
  if (st.up) {
    st.up = false;
    self->demonitor(st.host.address());
    st.host = nullptr;
    log_warn("link", "node " + address_of(st) + " down: " + st.why);
    st.logged = st.why;
    if (st.listener)
      self->send(st.listener, node_atom::value, down_atom::value,
                 uint64_t{st.cfg.index});
  }
  schedule_retry(self);
}

void attempt_failed(link_pointer self, uint64_t attempt, std::string why) {
  auto& st = self->state;
  if (attempt != st.attempt)
    return;
  st.connecting = false;
  if (why != st.logged) {
    log_warn("link", "node " + address_of(st) + " unreachable: " + why);
    st.logged = why;
  }
  st.why = std::move(why);
  schedule_retry(self);
}

void went_up(link_pointer self, caf::node_id node, node_actor host,
             node_figures figures) {
  auto& st = self->state;
  st.connecting = false;
  st.up = true;
  st.node = std::move(node);
  st.host = std::move(host);
  st.figures = std::move(figures);
  st.last_heartbeat = steady_clock_fn()();
  st.backoff = std::chrono::milliseconds{0};
  st.why.clear();
  st.logged.clear();
  self->monitor(st.host);
  log_info("link", "node " + address_of(st) + " up: smsp-actors "
                     + st.figures.version + ", store " + st.figures.store_id
                     + ", " + std::to_string(st.figures.mailboxes)
                     + " active mailbox(es)");
  if (st.listener)
    self->send(st.listener, node_atom::value, up_atom::value,
               uint64_t{st.cfg.index});
}

/// Connects, then says hello; a node of another version refuses.
void connect(link_pointer self) {
  auto& st = self->state;
  st.connecting = true;
  auto attempt = ++st.attempt;
  self
    ->request(st.connector, st.cfg.timeout, caf::connect_atom::value,
              st.cfg.host, st.cfg.port)
    .then(
      [=](caf::node_id& node, caf::strong_actor_ptr& ptr,
          std::set<std::string>& interface) {
        auto& st = self->state;
        if (attempt != st.attempt)
          return;
        auto& sys = self->system();
        if (!ptr) {
          attempt_failed(self, attempt, "nothing published on that port");
          return;
        }
        if (!sys.assignable(interface, sys.message_types<node_actor>())) {
          attempt_failed(self, attempt,
                         "the process on that port is not a mailbox node of "
                         "this version of smsp-actors ("
                           + st.cfg.version + ")");
          return;
        }
        auto host = caf::actor_cast<node_actor>(std::move(ptr));
        self
          ->request(host, st.cfg.timeout, hello_atom::value, st.cfg.version,
                    st.cfg.origin, caf::actor_cast<caf::actor>(self))
          .then(
            [=](node_figures& figures) mutable {
              if (attempt == self->state.attempt)
                went_up(self, std::move(node), std::move(host),
                        std::move(figures));
            },
            [=](caf::error& err) {
              attempt_failed(self, attempt, describe(self, err));
            });
      },
      [=](caf::error& err) {
        attempt_failed(self, attempt, describe(self, err));
      });
}

void heartbeat(link_pointer self) {
  auto& st = self->state;
  if (st.ping_in_flight)
    return;
  st.ping_in_flight = true;
  auto host = st.host;
  self->request(st.host, st.cfg.timeout, ping_atom::value)
    .then(
      [=](node_figures& figures) {
        auto& st = self->state;
        if (st.host != host)
          return;
        st.ping_in_flight = false;
        st.figures = std::move(figures);
        st.last_heartbeat = steady_clock_fn()();
      },
      [=](caf::error& err) {
        if (self->state.host != host)
          return;
        went_down(self, "no heartbeat answer within "
                          + std::to_string(self->state.cfg.timeout.count())
                          + " ms (" + describe(self, err) + ")");
      });
}

node_link_actor::behavior_type node_link(link_pointer self,
                                         node_link_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  // A connector of its own (a detached middleman actor on CAF's one BASP
  // broker): CAF's connect() blocks its middleman actor, so with a shared
  // one a node whose address drops packets would stall the connects and
  // remote spawns of every other node's link.
  auto& sys = self->system();
  auto basp
    = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  st.connector = st.cfg.tls ? caf::openssl::make_middleman_actor(sys, basp)
                            : caf::io::make_middleman_actor(sys, basp);
  st.spawner = st.connector;
  st.next_attempt = steady_clock_fn()();
  self->set_exit_handler([=](caf::exit_msg& msg) {
    self->send_exit(self->state.connector, msg.reason);
    self->quit(msg.reason);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.up && msg.source == st.host.address())
      went_down(self, "connection lost (" + describe(self, msg.reason) + ")");
  });
  connect(self);
  self->send(self, caf::tick_atom::value);
  return {
    [=](caf::spawn_atom, std::string& owner,
        uint64_t max_mailbox) -> caf::result<mailbox_actor> {
      auto& st = self->state;
      if (!st.up)
        return make_error(errc::mailbox_unavailable);
      auto rp = self->make_response_promise<mailbox_actor>();
      auto host = st.host;
      self
        ->request(st.spawner, st.cfg.timeout, caf::spawn_atom::value, st.node,
                  std::string{node_mailbox_type},
                  caf::make_message(std::move(owner), st.cfg.origin,
                                    max_mailbox),
                  self->system().message_types<mailbox_actor>())
        .then(
          [=](caf::strong_actor_ptr& ptr) mutable {
            if (!ptr) {
              rp.deliver(make_error(errc::mailbox_unavailable));
              return;
            }
            rp.deliver(caf::actor_cast<mailbox_actor>(std::move(ptr)));
          },
          [=](caf::error& err) mutable {
            log_warn("link",
                     "node " + address_of(self->state)
                       + ": remote spawn failed: " + describe(self, err));
            rp.deliver(make_error(errc::mailbox_unavailable));
          });
      return rp;
    },
    [=](dump_atom, uint64_t texts,
        uint64_t max_mailboxes) -> caf::result<node_listing> {
      auto& st = self->state;
      if (!st.up)
        return make_error(errc::mailbox_unavailable);
      auto rp = self->make_response_promise<node_listing>();
      // A listing reads more than a heartbeat: a few timeouts' worth.
      self
        ->request(st.host, st.cfg.timeout * 5, dump_atom::value, texts,
                  max_mailboxes)
        .then([=](node_listing& listing) mutable { rp.deliver(listing); },
              [=](caf::error&) mutable {
                rp.deliver(make_error(errc::mailbox_unavailable));
              });
      return rp;
    },
    [=](stats_atom) {
      auto& st = self->state;
      node_status out;
      out.address = address_of(st);
      out.up = st.up;
      if (st.last_heartbeat)
        out.heartbeat_age_ms
          = std::chrono::duration_cast<std::chrono::milliseconds>(
              steady_clock_fn()() - *st.last_heartbeat)
              .count();
      out.why = st.why;
      out.node = st.figures;
      return out;
    },
    [=](node_atom, node_listener& listener) {
      auto& st = self->state;
      st.listener = std::move(listener);
      if (st.up)
        self->send(st.listener, node_atom::value, up_atom::value,
                   uint64_t{st.cfg.index});
    },
    [=](caf::tick_atom) {
      auto& st = self->state;
      if (st.up)
        heartbeat(self);
      else if (!st.connecting && steady_clock_fn()() >= st.next_attempt)
        connect(self);
      self->delayed_send(self, st.cfg.heartbeat, caf::tick_atom::value);
    },
  };
}

} // namespace

node_link_actor spawn_node_link(caf::actor_system& sys, node_link_config cfg) {
  return sys.spawn(node_link, std::move(cfg));
}

} // namespace smsp
