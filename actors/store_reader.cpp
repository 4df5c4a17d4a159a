// The store's read side: the reader (account lookups, mailbox loads) and
// the dumper (DUMP), each on a thread and read connection of its own.
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "actors/log.hpp"
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct reader_state {
  std::shared_ptr<store> db;
  static inline const char* name = "smsp.reader";
};

reader_actor::behavior_type
reader(reader_actor::stateful_pointer<reader_state> self,
       std::shared_ptr<store> db) {
  self->state.db = std::move(db);
  return {
    [=](lookup_atom, const std::string& name) -> caf::result<std::string> {
      try {
        if (auto hash = self->state.db->password_hash(name))
          return std::move(*hash);
        return make_error(errc::no_such_user);
      } catch (const store_error& err) {
        log_error("store", std::string{"lookup failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
    },
    [=](load_atom,
        const std::string& owner) -> caf::result<std::vector<stored_mail>> {
      try {
        return self->state.db->mailbox(owner);
      } catch (const store_error& err) {
        log_error("store",
                  std::string{"loading a mailbox failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
    },
    [=](dump_atom, uint64_t texts,
        uint64_t max_mailboxes) -> caf::result<node_listing> {
      node_listing out;
      store::dump_sink sink;
      sink.totals = [&](uint64_t, uint64_t mail, uint64_t) { out.mail = mail; };
      sink.imq = [](uint64_t, const auto&) {};
      sink.mailbox = [&](const std::string& owner, uint64_t count,
                         const std::vector<std::string>& first) {
        out.mailboxes.push_back(mailbox_listing{owner, count, first});
      };
      try {
        self->state.db->dump(sink, static_cast<size_t>(texts),
                             static_cast<size_t>(max_mailboxes),
                             store::dump_names::mail_owners);
      } catch (const store_error& err) {
        log_error("store",
                  std::string{"DUMP of the node failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
      return out;
    },
    [=](stats_atom) -> caf::result<uint64_t> {
      try {
        return self->state.db->applied_count();
      } catch (const store_error& err) {
        log_error("store",
                  std::string{"counting applied moves failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
    },
    // admin tool
    [=](users_atom,
        const std::string& glob) -> caf::result<std::vector<std::string>> {
      try {
        return self->state.db->account_names_matching(glob);
      } catch (const store_error& err) {
        log_error("store",
                  std::string{"listing accounts failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
    },
    [=](totals_atom) -> caf::result<uint64_t, uint64_t, uint64_t> {
      try {
        auto t = self->state.db->count_rows();
        return {t.accounts, t.mail, t.imq};
      } catch (const store_error& err) {
        log_error("store", std::string{"counting rows failed: "} + err.what());
        return make_error(errc::storage_failed);
      }
    },
  };
}

// -- the dumper ---------------------------------------------------------------

struct dumper_state {
  /// Opened at spawn and kept: a DUMP never needs a new file descriptor.
  std::shared_ptr<store> db;
  writer_actor writer;
  /// The front's links to its mailbox nodes, whose mailboxes a run lists.
  std::vector<node_link_actor> nodes;
  dump_config cfg;
  /// DUMPs that the next run answers, in arrival order.
  std::vector<caf::typed_response_promise<caf::ok_atom>> waiting;
  /// The figures of the latest DUMP: the registry's state when it was sent.
  registry_figures figures;
  /// A run has asked the writer for its figures and not listed yet.
  bool running = false;
  /// A tick to start the next run is on its way.
  bool tick_scheduled = false;
  /// When the last run started.
  std::optional<steady_time> last_run;
  static inline const char* name = "smsp.dumper";
};

using dumper_pointer = dumper_actor::stateful_pointer<dumper_state>;

void log_figures(const registry_figures& f) {
  log_info("dump", "DUMP registry: " + std::to_string(f.sessions)
                     + " live session(s), " + std::to_string(f.active_mailboxes)
                     + " active mailbox(es) (" + std::to_string(f.activations)
                     + " activated, " + std::to_string(f.passivations)
                     + " passivated), " + std::to_string(f.cached_accounts)
                     + " cached account(s)");
  for (auto& node : f.nodes) {
    std::string line = "DUMP node " + node.address + ": "
                       + (node.up ? "up" : "down") + ", "
                       + std::to_string(node.users_placed) + " user(s) placed, "
                       + std::to_string(node.active_mailboxes)
                       + " active mailbox(es), last heartbeat ";
    line += node.heartbeat_age_ms < 0
              ? std::string{"never"}
              : std::to_string(node.heartbeat_age_ms) + " ms ago";
    if (node.up)
      line += ", smsp-actors " + node.node.version + ", "
              + std::to_string(node.node.applied)
              + " applied move(s) unsettled";
    if (!node.why.empty())
      line += " (" + node.why + ")";
    log_info("dump", line);
  }
}

void log_writer_figures(uint64_t commits, uint64_t writes) {
  auto per_commit = commits == 0 ? 0.0 : double(writes) / commits;
  char avg[32];
  std::snprintf(avg, sizeof(avg), "%.1f", per_commit);
  log_info("dump", "DUMP store: " + std::to_string(commits) + " commit(s) of "
                     + std::to_string(writes) + " write(s) since start, " + avg
                     + " per commit");
}

/// Logs the store's contents as cfg.mode says, from one read snapshot.
void log_store(dumper_pointer self) {
  auto& cfg = self->state.cfg;
  bool full = cfg.mode == dump_mode::full;
  // With mailbox nodes, the front's store holds accounts and the IMQ only:
  // listing its (empty) mailboxes would mislead.
  auto nodes = self->state.figures.nodes.size();
  uint64_t accounts = 0;
  uint64_t listed = 0;
  store::dump_sink sink;
  sink.totals = [&](uint64_t n_accounts, uint64_t mail, uint64_t imq) {
    accounts = n_accounts;
    log_info("dump",
             "DUMP totals: " + std::to_string(n_accounts) + " account(s), "
               + (nodes > 0 ? std::string{"mailboxes on the nodes (below)"}
                            : std::to_string(mail) + " message(s) in mailboxes")
               + ", " + std::to_string(imq) + " on the IMQ");
  };
  sink.imq = [&](uint64_t count, const auto& first) {
    if (!full)
      return;
    auto line = "DUMP imq: " + std::to_string(count) + " message(s)";
    for (auto& [poster, text] : first)
      line += " [" + poster + ": " + printable(text) + "]";
    log_info("dump", line);
  };
  sink.mailbox = [&](const std::string& owner, uint64_t count,
                     const std::vector<std::string>& texts) {
    ++listed;
    auto line = "DUMP mailbox " + owner + ": " + std::to_string(count)
                + " message(s)";
    for (auto& text : texts)
      line += " [" + printable(text) + "]";
    log_info("dump", line);
  };
  try {
    self->state.db->dump(sink, full ? cfg.texts : 0,
                         full && nodes == 0 ? cfg.max_mailboxes : 0);
  } catch (const store_error& err) {
    log_error("dump", std::string{"DUMP failed: "} + err.what());
    return;
  }
  if (nodes > 0)
    return; // Listed by list_nodes.
  if (full && accounts > listed)
    log_info("dump", "DUMP mailboxes: and " + std::to_string(accounts - listed)
                       + " more not listed (the first "
                       + std::to_string(cfg.max_mailboxes) + " by name are)");
}

/// Answers every DUMP folded into this run.
void finish_run(dumper_pointer self) {
  auto& st = self->state;
  st.running = false;
  auto n = st.waiting.size();
  log_info("dump", n == 1 ? std::string{"DUMP done: 1 request answered"}
                          : "DUMP done: " + std::to_string(n)
                              + " requests answered by this one run ("
                              + std::to_string(n - 1) + " folded)");
  for (auto& rp : st.waiting)
    rp.deliver(caf::ok_atom::value);
  st.waiting.clear();
}

/// Lists the mailboxes on nodes `k...` (asking one node at a time, so a
/// DUMP costs each node one bounded read), then answers the run's DUMPs.
void list_nodes(dumper_pointer self, size_t k) {
  auto& st = self->state;
  if (k >= st.nodes.size()) {
    finish_run(self);
    return;
  }
  bool full = st.cfg.mode == dump_mode::full;
  auto address = k < st.figures.nodes.size() ? st.figures.nodes[k].address
                                             : std::to_string(k);
  self
    ->request(st.nodes[k], std::chrono::seconds{10}, dump_atom::value,
              uint64_t{full ? st.cfg.texts : 0},
              uint64_t{full ? st.cfg.max_mailboxes : 0})
    .then(
      [=](node_listing& listing) {
        log_info("dump", "DUMP node " + address + " mailboxes: "
                           + std::to_string(listing.mail) + " message(s)");
        for (auto& box : listing.mailboxes) {
          auto line = "DUMP mailbox " + box.owner + " (node " + address
                      + "): " + std::to_string(box.count) + " message(s)";
          for (auto& text : box.texts)
            line += " [" + printable(text) + "]";
          log_info("dump", line);
        }
        if (full && listing.mailboxes.size() >= self->state.cfg.max_mailboxes)
          log_info("dump", "DUMP node " + address + ": only the first "
                             + std::to_string(self->state.cfg.max_mailboxes)
                             + " mailboxes with mail are listed");
        list_nodes(self, k + 1);
      },
      [=](caf::error& err) {
        log_info("dump", "DUMP node " + address + " mailboxes: not listed ("
                           + (err == make_error(errc::mailbox_unavailable)
                                ? std::string{"node unavailable"}
                                : to_string(err))
                           + ")");
        list_nodes(self, k + 1);
      });
}

/// Starts a run for the DUMPs waiting: the figures, then the store.
void run(dumper_pointer self) {
  auto& st = self->state;
  st.running = true;
  st.last_run = st.cfg.now();
  if (st.cfg.mode == dump_mode::off) {
    log_info("dump", "DUMP: off (--dump=off), nothing listed");
    finish_run(self);
    return;
  }
  log_figures(st.figures);
  // DUMPs arriving while the writer answers join this run: its snapshot is
  // taken after they arrived.
  self->request(st.writer, std::chrono::seconds{10}, stats_atom::value)
    .then(
      [=](uint64_t commits, uint64_t writes) {
        log_writer_figures(commits, writes);
        log_store(self);
        list_nodes(self, 0);
      },
      [=](caf::error& err) {
        log_warn("dump", "DUMP store: no figures: " + to_string(err));
        log_store(self);
        list_nodes(self, 0);
      });
}

/// Makes sure a tick starts the next run as soon as the rate limit allows.
/// The tick goes behind the DUMPs already queued, so they fold into it.
void schedule(dumper_pointer self) {
  auto& st = self->state;
  if (st.tick_scheduled || st.running)
    return;
  st.tick_scheduled = true;
  auto due = st.last_run ? *st.last_run + st.cfg.min_interval : steady_time{};
  auto t = st.cfg.now();
  if (due <= t)
    self->send(self, caf::tick_atom::value);
  else
    self->delayed_send(self, due - t, caf::tick_atom::value);
}

dumper_actor::behavior_type
dumper(dumper_pointer self, std::shared_ptr<store> db, writer_actor writer,
       dump_config cfg, std::vector<node_link_actor> nodes) {
  auto& st = self->state;
  st.db = std::move(db);
  st.writer = std::move(writer);
  st.nodes = std::move(nodes);
  st.cfg = std::move(cfg);
  return {
    [=](dump_atom, registry_figures& figures) {
      auto& st = self->state;
      st.figures = figures;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.waiting.push_back(rp);
      schedule(self);
      return rp;
    },
    [=](caf::tick_atom) {
      auto& st = self->state;
      st.tick_scheduled = false;
      if (st.running || st.waiting.empty())
        return;
      if (st.last_run && st.cfg.now() < *st.last_run + st.cfg.min_interval) {
        // Early (the clock was moved, or a timer fired a little soon).
        schedule(self);
        return;
      }
      run(self);
    },
  };
}

} // namespace

reader_actor spawn_reader(caf::actor_system& sys, const std::string& data_dir) {
  return sys.spawn<caf::detached>(
    reader, std::make_shared<store>(store::open_reader(data_dir)));
}

dumper_actor spawn_dumper(caf::actor_system& sys, const std::string& data_dir,
                          writer_actor writer, dump_config cfg,
                          std::vector<node_link_actor> nodes) {
  return sys.spawn<caf::detached>(
    dumper, std::make_shared<store>(store::open_reader(data_dir)),
    std::move(writer), std::move(cfg), std::move(nodes));
}

std::optional<dump_mode> parse_dump_mode(std::string_view name) {
  if (name == "full")
    return dump_mode::full;
  if (name == "summary")
    return dump_mode::summary;
  if (name == "off")
    return dump_mode::off;
  return std::nullopt;
}

const char* to_string(dump_mode mode) {
  switch (mode) {
    case dump_mode::full:
      return "full";
    case dump_mode::summary:
      return "summary";
    default:
      return "off";
  }
}

} // namespace smsp
