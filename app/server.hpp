// Starting and stopping a whole smsp-actors server inside an actor system.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/spawn.hpp"
#include "app/admin_file.hpp"
#include "app/metrics_http.hpp"
#include "caf/actor.hpp"
#include "caf/expected.hpp"
#include "caf/fwd.hpp"
#include "net/acceptor.hpp"

namespace smsp {

/// Mutual TLS between a front and its mailbox nodes (libcaf-openssl): this
/// process's certificate and key, and the CA that signs every peer's.
/// All three or none.
struct node_tls {
  std::string cert;
  std::string key;
  std::string ca;
  bool enabled() const {
    return !cert.empty();
  }
};

/// Why the TLS files cannot be used (unreadable, not PEM, a key that does
/// not match the certificate, an encrypted key), or "". CAF itself would
/// notice only at the first connection, and then abort the process.
std::string check_node_tls_files(const node_tls& tls);

/// The heartbeat period on node links for a node timeout: a quarter of it,
/// from 50 ms to 1 s (CAF's heartbeats and the links' own alike).
std::chrono::milliseconds node_heartbeat(std::chrono::milliseconds timeout);

/// Heartbeats and connection timeouts on CAF's node connections (both off
/// by default in CAF 0.17, so a frozen peer would never be noticed): a
/// connection silent for 2 x `timeout` is closed, so that a reconnect is
/// not refused as a duplicate of it (CAF issue #1304). With `tls`, also
/// loads the openssl manager with its certificate settings.
void configure_node_links(caf::actor_system_config& cfg,
                          std::chrono::milliseconds timeout,
                          const node_tls& tls);

/// Everything a server is started with. Build it with resolve_options
/// (app/options.hpp), which fills in the defaults that depend on other
/// settings, so that tests run with the binary's defaults.
struct server_config {
  /// Address to listen on; 0.0.0.0 serves other machines.
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  uint16_t port = 5000;
  hasher_config hashing;
  /// Durable data: created if missing, locked while the server runs.
  std::string data_dir = default_data_dir;
  sync_mode sync = sync_mode::full;
  /// Longest wait of a group commit for more writes; see spawn_writer.
  std::chrono::microseconds commit_delay{0};
  /// Sessions, passivation, account cache, per-user limits, login throttle
  /// (its waits and data dir are filled in by start_server).
  registry_config registry;
  /// Connections: how many, their limits and waits. max_connections is
  /// lowered to what the open-file limit leaves room for (start_server).
  acceptor_config acceptor;
  /// What DUMP costs and shows.
  dump_config dump;
  /// The registry, the IMQ and the mailboxes run on CAF's I/O thread
  /// beside the connections (actor_host); false: on the scheduler.
  bool actors_on_io_thread = true;
  /// The mailbox nodes; empty keeps every mailbox in this process.
  std::vector<node_address> mailbox_nodes;
  /// Start even when the node list differs from the one recorded in the
  /// data dir (users whose node changes lose sight of their mail there).
  bool accept_node_change = false;
  /// Requests to a node fail after this; a missed heartbeat marks it down.
  std::chrono::milliseconds node_timeout{1000};
  node_tls tls;
  /// Serve /metrics (Prometheus text format) on this port (0 picks a free
  /// one); unset: no metrics endpoint, and connections count nothing.
  std::optional<uint16_t> metrics_port;
  /// Address of the metrics endpoint; the default serves this machine only.
  std::string metrics_host = "127.0.0.1";
  /// admin tool: the admin listener's port on 127.0.0.1 (0: one the OS
  /// picks); nullopt: no admin listener and no admin file.
  std::optional<uint16_t> admin_port = uint16_t{0};
};

/// Everything a mailbox node is started with.
struct node_config {
  /// 127.0.0.1 by default: any other address requires `tls`.
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string data_dir = "./smsp-node-data";
  sync_mode sync = sync_mode::full;
  std::chrono::microseconds commit_delay{0};
  std::chrono::milliseconds node_timeout{1000};
  node_tls tls;
  /// Plain requests between the node's actors.
  timeouts waits;
};

/// The actors of a running server.
struct server {
  caf::actor acceptor;
  registry_actor registry;
  imq_actor imq;
  hasher_actor hasher;
  writer_actor writer;
  reader_actor reader;
  dumper_actor dumper;
  /// One link per mailbox node.
  std::vector<node_link_actor> links;
  /// Connections served at once: max_connections, or less where the
  /// open-file limit does not allow it.
  size_t max_connections = 0;
  /// The port actually bound.
  uint16_t port = 0;
  /// With metrics_port: the actor summing the connections' figures, and
  /// the endpoint (its port() is the one bound).
  metrics_actor metrics;
  std::shared_ptr<metrics_endpoint> metrics_http;
  /// admin tool: the admin listener (net/admin.hpp), its port, and the data
  /// dir whose admin file stop_server removes; none when it is off.
  caf::actor admin;
  uint16_t admin_port = 0;
  std::string admin_data_dir;
  /// What the start found, for its log line: whether smsp.db was created
  /// (else opened), and its accounts, mailbox messages and IMQ messages
  /// (claimed moves to nodes included).
  bool created = false;
  uint64_t accounts = 0;
  uint64_t mail = 0;
  uint64_t imq_messages = 0;
};

/// CAF settings every smsp-actors actor system uses, set after the command
/// line and caf-application.ini were parsed: scheduler threads for the cores
/// left beside CAF's I/O thread (unless scheduler.max-threads was given), and
/// one read per socket event (CAF 0.17 reads up to 50 times per event, past
/// a connection's decision to stop reading, which would let one event queue
/// 800 KiB of requests).
void configure_actor_system(caf::actor_system_config& cfg);

/// CAF's own options that only steer its command-line parsing (given as
/// --name): the only CAF options without a dot, the others being settings
/// group.name.
inline constexpr std::string_view caf_parsing_options[]
  = {"config-file", "help", "long-help", "dump-config"};

/// Why the CAF settings parsed into `cfg` (from the command line and
/// ./caf-application.ini) cannot be used, or "" when they can. Only
/// scheduler.max-threads (1 to 256), scheduler.max-throughput (at least 1)
/// and scheduler.policy (stealing or sharing) are accepted, besides CAF's
/// parsing options (config-file, long-help, dump-config): CAF checks no
/// range, and the server relies on the middleman settings it sets itself.
std::string check_actor_system(const caf::actor_system_config& cfg);

/// Descriptors kept free beyond those open when the server starts listening:
/// the listening socket, connections being refused, a log file reopened.
/// The store opens all its files at start (temp_store is memory), so no
/// request ever needs a descriptor beyond its connection's.
inline constexpr size_t reserved_descriptors = 32;

/// Opens the data dir, recovers the IMQ, spawns the actors and binds the
/// listening socket; fails when the address cannot be bound (e.g. the port
/// is in use), when the open-file limit leaves no room for a connection, or
/// when libsodium cannot start. Throws store_error when the data
/// dir cannot be used (not writable, locked by another server, not ours).
caf::expected<server> start_server(caf::actor_system& sys,
                                   const server_config& cfg);

/// Closes the listening socket and every connection and stops the actors.
void stop_server(const server& srv);

/// The actors of a running mailbox node.
struct mailbox_node {
  node_actor host;
  writer_actor writer;
  reader_actor reader;
  /// The port actually bound.
  uint16_t port = 0;
};

/// Opens the node's data dir and publishes its host on cfg.host:cfg.port
/// (with TLS when cfg.tls is enabled; the actor system must have been
/// configured with configure_node_links, add_message_types and
/// add_node_mailbox_type with `ctx`, which this fills in). Throws
/// store_error when the data dir cannot be used.
caf::expected<mailbox_node>
start_node(caf::actor_system& sys, const node_config& cfg,
           const std::shared_ptr<node_mailbox_context>& ctx);

void stop_node(const mailbox_node& node);

} // namespace smsp
