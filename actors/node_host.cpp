// Node host actor: a mailbox node's published actor (hello, heartbeat) and
// the directory of the node's mailboxes.
#include <chrono>
#include <unordered_map>

#include <malloc.h>

#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct host_state {
  writer_actor writer;
  reader_actor reader;
  std::string store_id;
  struct hosted {
    mailbox_actor box;
    /// The store id of the front that spawned it.
    std::string origin;
  };
  /// The mailbox of each owner spawned here most recently. Invariant: a
  /// newer one has asked for (and retires) the one it replaced.
  std::unordered_map<std::string, hosted> mailboxes;
  struct live_mailbox {
    mailbox_actor box;
    std::string owner;
  };
  /// Every mailbox here not known to have stopped, a retiring predecessor
  /// too, by address (so that a stop is found in constant time, also when
  /// 100,000 passivate at once): the node stops them all when it stops.
  std::unordered_map<caf::actor_addr, live_mailbox> live;
  /// Mailboxes stopped since the last return of free memory.
  bool trim_due = false;
  /// The link actors of the fronts that said hello, monitored, with their
  /// store ids: when the last link of a front goes down (it stopped or the
  /// connection broke), the mailboxes it spawned are retired, so none is
  /// left behind (a front that comes back spawns new ones).
  std::unordered_map<caf::actor_addr, std::string> fronts;
  uint64_t commits = 0;
  uint64_t writes = 0;
  uint64_t applied = 0;
  static inline const char* name = "smsp.node_host";
};

using host_pointer = node_actor::stateful_pointer<host_state>;

node_figures figures_of(host_pointer self) {
  auto& st = self->state;
  node_figures f;
  f.version = smsp_version();
  f.store_id = st.store_id;
  f.mailboxes = st.mailboxes.size();
  f.commits = st.commits;
  f.writes = st.writes;
  f.applied = st.applied;
  return f;
}

/// Refreshes the store's figures for the next answer (a heartbeat answers
/// at once with the last ones, so a busy writer never delays it).
void refresh_figures(host_pointer self) {
  auto& st = self->state;
  self->request(st.writer, caf::infinite, stats_atom::value)
    .then(
      [=](uint64_t commits, uint64_t writes) {
        self->state.commits = commits;
        self->state.writes = writes;
      },
      [](caf::error&) {});
  self->request(st.reader, caf::infinite, stats_atom::value)
    .then([=](uint64_t applied) { self->state.applied = applied; },
          [](caf::error&) {});
}

/// Retires the mailboxes spawned by the front with store id `origin`: their
/// writes finish, then they stop (the down message then erases them).
size_t retire_spawned_by(host_pointer self, const std::string& origin) {
  size_t n = 0;
  for (auto& [owner, entry] : self->state.mailboxes)
    if (entry.origin == origin) {
      caf::anon_send(entry.box, retire_atom::value);
      ++n;
    }
  return n;
}

node_actor::behavior_type node_host(host_pointer self, writer_actor writer,
                                    reader_actor reader, std::string store_id) {
  auto& st = self->state;
  st.writer = std::move(writer);
  st.reader = std::move(reader);
  st.store_id = std::move(store_id);
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [addr, entry] : self->state.live)
      self->send_exit(entry.box, msg.reason);
    self->quit(msg.reason);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (auto front = st.fronts.find(msg.source); front != st.fronts.end()) {
      auto origin = std::move(front->second);
      st.fronts.erase(front);
      for (auto& [link, other] : st.fronts)
        if (other == origin)
          return; // The same front, linked again already.
      auto n = retire_spawned_by(self, origin);
      log_info("node", "front " + origin + " gone ("
                         + self->system().render(msg.reason) + "): retiring "
                         + std::to_string(n) + " of its mailbox(es)");
      return;
    }
    auto stopped = st.live.find(msg.source);
    if (stopped == st.live.end())
      return;
    auto current = st.mailboxes.find(stopped->second.owner);
    if (current != st.mailboxes.end()
        && current->second.box.address() == msg.source)
      st.mailboxes.erase(current);
    st.live.erase(stopped);
    if (!st.trim_due) {
      // glibc keeps freed memory for reuse: give back what the stopped
      // mailboxes used, once a second at most, on a thread of its own.
      st.trim_due = true;
      self->delayed_send(self, std::chrono::seconds{1}, caf::tick_atom::value);
    }
  });
  return {
    [=](hello_atom, const std::string& version, const std::string& origin,
        caf::actor& front) -> caf::result<node_figures> {
      if (version != smsp_version()) {
        auto why = "version mismatch: this node runs smsp-actors "
                   + smsp_version() + ", the front runs " + version
                   + "; run the same version on both";
        log_warn("node", "refused a front: " + why);
        return caf::make_error(caf::sec::runtime_error, std::move(why));
      }
      auto& st = self->state;
      if (front && st.fronts.emplace(front.address(), origin).second) {
        self->monitor(front);
        log_info("node", "front " + origin + " linked from "
                           + caf::to_string(front.node()));
      }
      refresh_figures(self);
      return figures_of(self);
    },
    [=](ping_atom) {
      refresh_figures(self);
      return figures_of(self);
    },
    [=](caf::tick_atom) {
      self->state.trim_due = false;
      self->spawn<caf::detached>([] { ::malloc_trim(0); });
    },
    [=](dump_atom, uint64_t texts, uint64_t max_mailboxes) {
      return self->delegate(self->state.reader, dump_atom::value, texts,
                            max_mailboxes);
    },
    [=](activate_atom, const std::string& owner, std::string& origin,
        mailbox_actor& box) -> mailbox_actor {
      auto& st = self->state;
      self->monitor(box);
      st.live.emplace(box.address(), host_state::live_mailbox{box, owner});
      auto& slot = st.mailboxes[owner];
      auto predecessor = std::move(slot.box);
      slot = host_state::hosted{std::move(box), std::move(origin)};
      return predecessor;
    },
  };
}

} // namespace

node_actor spawn_node_host(caf::actor_system& sys, writer_actor writer,
                           reader_actor reader, std::string store_id) {
  return sys.spawn(node_host, std::move(writer), std::move(reader),
                   std::move(store_id));
}

} // namespace smsp
