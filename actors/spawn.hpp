// Spawn functions for smsp-actors' actors; their messages live in messages.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/logic/clock.hpp"
#include "actors/logic/credentials.hpp"
#include "actors/logic/placement.hpp"
#include "actors/logic/throttle.hpp"
#include "actors/messages.hpp"
#include "caf/fwd.hpp"
#include "caf/io/fwd.hpp"

namespace smsp {

/// Where an in-memory actor runs: on CAF's I/O thread (the middleman's
/// multiplexer), or on the scheduler's threads when null.
///
/// Why: in CAF 0.17 every broker runs on the one I/O thread, and a message
/// from another thread to a broker costs a pipe write, a wake-up of the I/O
/// thread and a futex on the way back; the profile of a mail cycle (21
/// messages, 5 of them to the connection) was two thirds kernel time. An
/// actor on the I/O thread exchanges messages with the brokers through
/// the multiplexer's own run queue, with no system call, as in a server
/// with one event loop. Slow work (SQLite, password hashes, DUMP) stays on
/// threads of its own, so the I/O thread never waits for a disk.
using actor_host = caf::io::network::multiplexer*;

/// How long an actor waits for another before answering `KO internal error`.
struct timeouts {
  /// Plain requests between in-memory actors.
  std::chrono::milliseconds request{std::chrono::seconds{10}};
  /// Requests that wait for a password hash, queue time included.
  std::chrono::milliseconds hashing{std::chrono::seconds{120}};
};

struct hasher_config {
  pwhash_cost cost = pwhash_cost::interactive;
  /// Hashes running at once, each on its own thread (and with its own
  /// 64-256 MiB of memory at the real costs).
  size_t workers = 2;
  /// Hash requests waiting beyond this get errc::server_busy.
  size_t max_queue = 1024;
};

/// A pool of detached Argon2id workers behind one queue.
hasher_actor spawn_hasher(caf::actor_system& sys, const hasher_config& cfg);

/// Per-user limits on queued mail.
struct mail_limits {
  /// Messages one mailbox holds; STORE beyond gets errc::mailbox_full.
  size_t max_mailbox = 10000;
  /// Unstored IMQ messages per poster; MESSAGE beyond gets
  /// errc::too_many_unstored.
  size_t max_imq_per_user = 1000;
};

/// The store's writer, owning `db` (an open, writable store) on a thread of
/// its own; it commits groups of writes. Under concurrent writes a group
/// waits up to `commit_delay` for more writes (zero: never waits).
writer_actor spawn_writer(caf::actor_system& sys, store db,
                          std::chrono::microseconds commit_delay = {});

/// A reader of the store in `data_dir` on a thread and connection of its
/// own. Throws store_error when the database cannot be opened.
reader_actor spawn_reader(caf::actor_system& sys, const std::string& data_dir);

/// What a mailbox actor talks to.
struct mailbox_deps {
  reader_actor reader;
  writer_actor writer;
  timeouts waits;
  mail_limits mail;
  /// The store id of the front whose IMQ moves mail here: with the IMQ id,
  /// it names a move applied here (see store::apply_move).
  std::string origin = {};
  /// Where the mailbox runs (see actor_host); null: on the scheduler.
  actor_host host = nullptr;
};

/// `owner`'s mailbox, loaded from the store. With a `predecessor` (a retiring
/// mailbox of the same owner) it first waits for that one to finish its
/// writes, so that it loads them.
mailbox_actor spawn_mailbox(caf::actor_system& sys, std::string owner,
                            mailbox_deps deps, mailbox_actor predecessor = {});

struct imq_config {
  mail_limits mail;
  /// How long a mailbox node may take to apply a move (see
  /// node_link_config::timeout).
  std::chrono::milliseconds node_timeout{1000};
  /// Where the IMQ runs (see actor_host); null: on the scheduler.
  actor_host host = nullptr;
};

/// The incoming message queue, starting with `queued` (from store::imq())
/// and the moves to nodes claimed but not settled (store::claimed_moves()).
imq_actor spawn_imq(caf::actor_system& sys, writer_actor writer,
                    std::vector<queued_message> queued,
                    std::vector<claimed_move> claimed = {},
                    imq_config cfg = {});

/// What DUMP writes to the log (--dump).
enum class dump_mode {
  /// Figures, totals, the IMQ's first texts, then the first mailboxes by name
  /// with their first texts, then how many more there are.
  full,
  /// Figures and totals only: no names, no texts.
  summary,
  /// Nothing but one line per run saying DUMP is off.
  off,
};

std::optional<dump_mode> parse_dump_mode(std::string_view name);
const char* to_string(dump_mode mode);

/// What one DUMP run may cost, whatever the state and however often DUMP is
/// sent: at most one run at a time and one per min_interval (DUMPs arriving
/// meanwhile fold into the next run and are answered with it), and a
/// bounded listing.
struct dump_config {
  dump_mode mode = dump_mode::full;
  std::chrono::milliseconds min_interval{std::chrono::seconds{1}};
  /// Mailboxes listed by name in full mode; the rest are counted.
  size_t max_mailboxes = 100;
  /// Texts shown per queue (the IMQ, each listed mailbox).
  size_t texts = 10;
  /// Where the rate limit reads the time.
  clock_fn now = steady_clock_fn();
};

/// The DUMP runner, on a thread of its own with a read connection of its own
/// to the store in `data_dir`, opened here so that a DUMP never needs a new
/// file descriptor. It asks `writer` for its figures, and each of `nodes`
/// (the front's links) for the mailboxes on it. Throws store_error when the
/// database cannot be opened.
dumper_actor spawn_dumper(caf::actor_system& sys, const std::string& data_dir,
                          writer_actor writer, dump_config cfg,
                          std::vector<node_link_actor> nodes = {});

/// The actors the registry talks to.
struct registry_deps {
  hasher_actor hasher;
  imq_actor imq;
  writer_actor writer;
  reader_actor reader;
  dumper_actor dumper;
  /// The links to the mailbox nodes, in the order of registry_config's
  /// nodes; empty: every mailbox lives in this process.
  std::vector<node_link_actor> nodes = {};
  /// Where the registry and the mailboxes it spawns run (see actor_host);
  /// null: on the scheduler.
  actor_host host = nullptr;
};

struct registry_config {
  timeouts waits;
  mail_limits mail;
  /// A mailbox without requests for this long is stopped; its mail stays in
  /// the store and the next request loads it again.
  std::chrono::milliseconds mailbox_idle{std::chrono::seconds{60}};
  /// Password hashes kept in memory, most recently used first.
  size_t account_cache = 10000;
  /// The brute-force penalty on LOGIN (validated by the caller: a bad
  /// trusted network makes the registry's spawn throw).
  throttle_config throttle;
  /// Where passivation and the login throttle read the time.
  clock_fn now = steady_clock_fn();
  /// The mailbox nodes: each user's mailbox lives on the one that
  /// rendezvous hashing picks (placement.hpp); empty: all in this process.
  std::vector<node_address> nodes = {};
  /// Accounts placed on each node when the registry starts.
  std::vector<uint64_t> users_placed = {};
  /// A request to a mailbox on a node without answer after this gets
  /// errc::mailbox_unavailable.
  std::chrono::milliseconds node_timeout{1000};
};

/// The registry of accounts and sessions; it keeps the directory of active
/// mailboxes, passivates idle ones and stops them all when it stops.
registry_actor spawn_registry(caf::actor_system& sys, registry_deps deps,
                              registry_config cfg);

// -- mailbox nodes -----------------------------------------------------------

/// smsp-actors' version (CMake's project version), which front and nodes
/// compare when they link.
std::string smsp_version();

/// The actor type name under which a node lets a front remote_spawn
/// mailboxes, with arguments (owner, origin, max_mailbox).
inline constexpr const char* node_mailbox_type = "smsp.mailbox";

/// Registers every custom message type, and the handles sent between front
/// and nodes, with CAF (add_message_type): both sides must know them.
void add_message_types(caf::actor_system_config& cfg);

/// What a node gives the mailboxes a front spawns on it; filled in once the
/// node's actors run, before it publishes its host.
struct node_mailbox_context {
  reader_actor reader;
  writer_actor writer;
  node_actor host;
  timeouts waits;
};

/// Lets fronts spawn mailboxes on this node (add_actor_type with
/// node_mailbox_type): a mailbox spawned so waits for the previous mailbox of
/// its owner on this node to finish its writes, then loads from the node's
/// store.
void add_node_mailbox_type(caf::actor_system_config& cfg,
                           std::shared_ptr<const node_mailbox_context> ctx);

/// The mailbox that add_node_mailbox_type's actor type spawns, spawned
/// here (for tests: the same actor without a remote spawn).
mailbox_actor
spawn_node_mailbox(caf::actor_system& sys, std::string owner,
                   std::string origin, uint64_t max_mailbox,
                   std::shared_ptr<const node_mailbox_context> ctx);

/// A node's host (see node_actor): answers hello and ping, and keeps the
/// directory of the node's mailboxes so that a new one retires its
/// predecessor. `store_id` is the node's store's.
node_actor spawn_node_host(caf::actor_system& sys, writer_actor writer,
                           reader_actor reader, std::string store_id);

/// How the front reaches one mailbox node.
struct node_link_config {
  std::string host;
  uint16_t port = 0;
  /// The node's place in the front's list (placement uses it).
  size_t index = 0;
  /// This front's version and store id (the origin of its moves).
  std::string version;
  std::string origin;
  /// Every request to the node (connect, hello, heartbeat, spawn) fails
  /// after this; a heartbeat without answer marks the node down.
  std::chrono::milliseconds timeout{1000};
  /// Heartbeat period; also the first reconnect delay.
  std::chrono::milliseconds heartbeat{250};
  /// The reconnect delay doubles up to this.
  std::chrono::milliseconds max_backoff{1000};
  /// Connect with TLS (libcaf-openssl, loaded by the caller).
  bool tls = false;
};

node_link_actor spawn_node_link(caf::actor_system& sys, node_link_config cfg);

// -- metrics
// -------------------------------------------------------------------

/// The actor that sums the connections' request figures (metrics_actor);
/// spawned only when the server serves metrics.
metrics_actor spawn_metrics(caf::actor_system& sys);

} // namespace smsp
