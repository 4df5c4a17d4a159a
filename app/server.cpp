// The wiring of a server's actors: start and stop in the right order.
#include "app/server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "actors/io_thread.hpp"
#include "actors/log.hpp"
#include "app/admin_file.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "caf/openssl/all.hpp"
#include "net/admin.hpp"

namespace smsp {

namespace {

/// Descriptors this process has open now.
size_t open_descriptors() {
  std::error_code ec;
  size_t n = 0;
  for (std::filesystem::directory_iterator i{"/proc/self/fd", ec}, end;
       !ec && i != end; i.increment(ec))
    ++n;
  // The iterator's own descriptor was counted too.
  return n > 0 ? n - 1 : 0;
}

/// How many connections fit under the open-file limit, with what is open now
/// and reserved_descriptors (plus `extra_reserve`, the admin listener's
/// descriptors) kept free: CAF 0.17's acceptor spins on accept()
/// while the table is full (EMFILE), and clients then wait unanswered in the
/// kernel's backlog, so the table must never fill. Fails when no connection
/// fits.
caf::expected<size_t> connection_room(size_t wanted, size_t extra_reserve) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
    return wanted;
  auto limit = static_cast<size_t>(lim.rlim_cur);
  auto in_use = open_descriptors();
  // The admin listener's (opened after this count) are held back too.
  auto reserve = reserved_descriptors + extra_reserve;
  if (in_use + reserve >= limit)
    return caf::make_error(caf::sec::runtime_error,
                           "the open-file limit (" + std::to_string(limit)
                             + " descriptors) leaves no room for connections: "
                             + std::to_string(in_use) + " are in use and "
                             + std::to_string(reserve)
                             + " are kept in reserve; raise it (ulimit -n)");
  auto room = limit - in_use - reserve;
  if (room < wanted)
    log_warn("server", "serving at most " + std::to_string(room)
                         + " connections, not the " + std::to_string(wanted)
                         + " of --max-connections: the open-file limit is "
                         + std::to_string(limit) + " descriptors, "
                         + std::to_string(in_use) + " are in use and "
                         + std::to_string(reserve)
                         + " kept in reserve (raise ulimit -n)");
  return std::min(room, wanted);
}

} // namespace

void configure_actor_system(caf::actor_system_config& cfg) {
  // CAF defaults to 4 scheduler threads. All brokers run on CAF's one I/O
  // thread and password hashes on their own threads, so the actors get the
  // other cores: on 2 cores, 1 scheduler thread measured 96k COUNT/s
  // against 73k with 2 (docs/BENCHMARKS.md).
  if (!caf::get_if(&cfg.content, "scheduler.max-threads")) {
    auto cores = std::max(2u, std::thread::hardware_concurrency());
    cfg.set("scheduler.max-threads", static_cast<size_t>(cores - 1));
  }
  // CAF's default, work stealing, polls for work after every job: 500
  // sleeps of 50 us, then wake-ups every 10 ms, so an idle server woke ~600
  // times a second (2.3 % of a core). The in-memory actors run on the I/O
  // thread (actor_host), and the scheduler keeps the occasional work of
  // the others (DUMP, node links, metrics): work sharing makes its threads
  // sleep on a condition variable until a job comes, at no cost measured
  // in throughput (docs/BENCHMARKS.md).
  if (!caf::get_if(&cfg.content, "scheduler.policy"))
    cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("middleman.max-consecutive-reads", size_t{1});
}

namespace {

/// OpenSSL's last error, as text.
std::string openssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

} // namespace

std::string check_node_tls_files(const node_tls& tls) {
  if (!tls.enabled())
    return {};
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{
    SSL_CTX_new(TLS_method()), SSL_CTX_free};
  if (!ctx)
    return "OpenSSL cannot start: " + openssl_error();
  // Never prompt for a passphrase: CAF is given none.
  SSL_CTX_set_default_passwd_cb(ctx.get(),
                                [](char*, int, int, void*) { return 0; });
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert.c_str()) != 1)
    return "--node-cert " + tls.cert
           + " is not a usable PEM certificate: " + openssl_error();
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM)
      != 1)
    return "--node-key " + tls.key
           + " is not a usable unencrypted PEM private key: " + openssl_error();
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    return "--node-key " + tls.key + " does not belong to --node-cert "
           + tls.cert + ": " + openssl_error();
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca.c_str(), nullptr) != 1)
    return "--node-ca " + tls.ca
           + " is not a usable PEM CA certificate: " + openssl_error();
  return {};
}

std::chrono::milliseconds node_heartbeat(std::chrono::milliseconds timeout) {
  using std::chrono::milliseconds;
  return std::clamp(timeout / 4, milliseconds{50}, milliseconds{1000});
}

void configure_node_links(caf::actor_system_config& cfg,
                          std::chrono::milliseconds timeout,
                          const node_tls& tls) {
  cfg.set("middleman.heartbeat-interval",
          caf::timespan{node_heartbeat(timeout)});
  cfg.set("middleman.connection-timeout", caf::timespan{timeout * 2});
  if (tls.enabled()) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = tls.cert;
    cfg.openssl_key = tls.key;
    cfg.openssl_cafile = tls.ca;
  }
}

namespace {

/// A numeric CAF setting smsp-actors accepts, with its range.
struct caf_number {
  const char* name;
  int64_t min;
  int64_t max;
};

/// CAF checks none of these: scheduler.max-threads=0 divides by zero,
/// max-throughput=0 makes the scheduler spin, a million threads exhaust
/// memory.
constexpr caf_number caf_numbers[] = {
  {"scheduler.max-threads", 1, 256},
  {"scheduler.max-throughput", 1, std::numeric_limits<int64_t>::max()},
};

/// Appends every leaf of `xs` to `out`, named by its dotted path.
void flatten(
  const caf::settings& xs, const std::string& prefix,
  std::vector<std::pair<std::string, const caf::config_value*>>& out) {
  for (auto& [key, value] : xs) {
    auto name = prefix.empty() ? key : prefix + "." + key;
    if (auto group = caf::get_if<caf::settings>(&value))
      flatten(*group, name, out);
    else
      out.emplace_back(name, &value);
  }
}

/// Why the CAF settings `xs`, read from `source`, cannot be used, or "".
std::string check_settings(const caf::settings& xs, const std::string& source) {
  std::vector<std::pair<std::string, const caf::config_value*>> leaves;
  flatten(xs, "", leaves);
  for (auto& [name, value] : leaves) {
    auto is = [&name = name](std::string_view x) { return name == x; };
    if (std::any_of(std::begin(caf_parsing_options),
                    std::end(caf_parsing_options), is))
      continue;
    auto number = std::find_if(std::begin(caf_numbers), std::end(caf_numbers),
                               [&](auto& x) { return is(x.name); });
    if (number != std::end(caf_numbers)) {
      auto n = caf::get_if<caf::config_value::integer>(value);
      if (!n || *n < number->min || *n > number->max)
        return "CAF setting " + name + " (" + source + "): '"
               + caf::to_string(*value) + "' is not a whole number from "
               + std::to_string(number->min) + " to "
               + std::to_string(number->max);
      continue;
    }
    if (is("scheduler.policy")) {
      auto policy = caf::get_if<caf::atom_value>(value);
      if (!policy
          || (*policy != caf::atom("stealing")
              && *policy != caf::atom("sharing")))
        return "CAF setting scheduler.policy (" + source + "): "
               + caf::to_string(*value) + " is neither stealing nor sharing";
      continue;
    }
    return "CAF setting " + name + " (" + source
           + ") is not one smsp-actors accepts (it accepts "
             "scheduler.max-threads, scheduler.max-throughput and "
             "scheduler.policy, on the command line or in "
             "./caf-application.ini)";
  }
  return {};
}

} // namespace

std::string check_actor_system(const caf::actor_system_config& cfg) {
  // CAF's reader drops without a word a value of the wrong type for a
  // setting it knows (policy="sharing", max-threads=3.5) and skips a file it
  // cannot read: so the file is read again here, as written, and checked.
  const auto& path = cfg.config_file_path;
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(status)) {
    if (std::filesystem::is_directory(status))
      return "the configuration file " + path + " is a directory";
    if (std::ifstream probe{path}; !probe)
      return "cannot read the configuration file " + path + ": "
             + std::strerror(errno);
    auto raw = caf::actor_system_config::parse_config_file(path.c_str());
    if (!raw)
      return "cannot parse the configuration file " + path + ": "
             + caf::to_string(raw.error());
    if (auto why = check_settings(*raw, path); !why.empty())
      return why;
  }
  return check_settings(cfg.content, "command line or " + path);
}

namespace {

/// Compares the node list with the one recorded in the data dir (none
/// recorded: every mailbox was in the front) and records the new one; or
/// says why the server must not start: users would find their mailbox on
/// another node, without their mail.
std::string check_node_list_change(store& db, const server_config& cfg) {
  std::vector<node_address> recorded;
  try {
    recorded = load_node_list(cfg.data_dir).value_or(recorded);
  } catch (const std::runtime_error& err) {
    return err.what();
  }
  if (recorded == cfg.mailbox_nodes)
    return {};
  auto users = db.account_names();
  auto change = compare_placement(users, recorded, cfg.mailbox_nodes);
  auto file = (std::filesystem::path{cfg.data_dir} / node_list_file).string();
  if (change.moved > 0) {
    auto why = describe_node_change(file, recorded, cfg.mailbox_nodes, change,
                                    users.size());
    if (!cfg.accept_node_change)
      return why;
    // The refusal's last clause tells how to accept; it is accepted.
    if (auto cut = why.rfind("; start with --accept-node-change");
        cut != std::string::npos)
      why.erase(cut);
    log_warn("server", "accepted with --accept-node-change: " + why);
  }
  try {
    save_node_list(cfg.data_dir, cfg.mailbox_nodes);
  } catch (const std::runtime_error& err) {
    return err.what();
  }
  return {};
}

/// admin tool: opens the admin listener on 127.0.0.1 and writes the admin
/// file (its port and a fresh token) into the data dir.
caf::error start_admin(caf::actor_system& sys, server& srv,
                       const server_config& cfg) {
  admin_deps deps;
  deps.registry = srv.registry;
  deps.imq = srv.imq;
  deps.writer = srv.writer;
  deps.reader = srv.reader;
  deps.acceptor = srv.acceptor;
  deps.token = new_admin_token();
  deps.waits = cfg.acceptor.connection.waits;
  const std::string host = "127.0.0.1";
  auto token = deps.token;
  auto bound = listen_admin(sys, std::move(deps), host, *cfg.admin_port);
  if (!bound)
    return caf::make_error(caf::sec::runtime_error,
                           "cannot open the admin listener on " + host + ":"
                             + std::to_string(*cfg.admin_port)
                             + (bound.error() == caf::sec::cannot_open_port
                                  ? std::string{" (is the port in use? "
                                                "--admin-port 0 picks a free "
                                                "one)"}
                                  : ": " + sys.render(bound.error())));
  srv.admin = bound->acceptor;
  srv.admin_port = bound->port;
  auto why = write_admin_file(
    cfg.data_dir, admin::endpoint{host, bound->port, token,
                                  static_cast<int64_t>(::getpid())});
  if (!why.empty())
    return caf::make_error(caf::sec::runtime_error,
                           "cannot write the admin file: " + why);
  srv.admin_data_dir = cfg.data_dir;
  log_info("admin", "listening on " + host + ":"
                      + std::to_string(srv.admin_port) + " (its token is in "
                      + admin_file_path(cfg.data_dir) + ")");
  return {};
}

} // namespace

caf::expected<server> start_server(caf::actor_system& sys,
                                   const server_config& cfg) {
  if (!init_crypto())
    return caf::make_error(caf::sec::runtime_error,
                           "libsodium cannot be initialized");
  server srv;
  auto start_time = std::chrono::duration<double>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::error_code ec;
  srv.created = !std::filesystem::exists(
    std::filesystem::path{cfg.data_dir} / "smsp.db", ec);
  // Throws store_error: a data dir that cannot be used stops the start.
  auto db = store::open(cfg.data_dir, cfg.sync);
  // admin tool: with the data dir's lock held, any admin file is stale (a
  // server killed before its clean stop); without a listener it must go.
  if (!cfg.admin_port)
    remove_admin_file(cfg.data_dir);
  auto queued = db.imq();
  srv.accounts = db.account_count();
  srv.mail = db.mail_count();
  auto claimed = db.claimed_moves();
  srv.imq_messages = queued.size();
  auto reg_cfg = cfg.registry;
  if (auto why = check_node_list_change(db, cfg); !why.empty())
    return caf::make_error(caf::sec::runtime_error, std::move(why));
  if (cfg.mailbox_nodes.empty() && !claimed.empty())
    // Their nodes may have applied them or not: only those nodes can tell,
    // so they stay on the IMQ, claimed, until the server runs with them.
    log_warn("server",
             std::to_string(claimed.size())
               + " STORE(s) to mailbox nodes are unfinished; they complete "
                 "when the server runs with its mailbox nodes again (see "
                 "docs/OPERATIONS.md, 'Changing the node list')");
  if (!cfg.mailbox_nodes.empty()) {
    reg_cfg.nodes = cfg.mailbox_nodes;
    reg_cfg.node_timeout = cfg.node_timeout;
    reg_cfg.users_placed.assign(cfg.mailbox_nodes.size(), 0);
    for (auto& user : db.account_names())
      ++reg_cfg.users_placed[rendezvous_place(user, cfg.mailbox_nodes)];
    for (size_t k = 0; k < cfg.mailbox_nodes.size(); ++k) {
      node_link_config link;
      link.host = cfg.mailbox_nodes[k].host;
      link.port = cfg.mailbox_nodes[k].port;
      link.index = k;
      link.version = smsp_version();
      link.origin = db.store_id();
      link.timeout = cfg.node_timeout;
      link.heartbeat = node_heartbeat(cfg.node_timeout);
      link.max_backoff = cfg.node_timeout;
      link.tls = cfg.tls.enabled();
      srv.links.push_back(spawn_node_link(sys, std::move(link)));
    }
  }
  srv.writer = spawn_writer(sys, std::move(db), cfg.commit_delay);
  try {
    srv.reader = spawn_reader(sys, cfg.data_dir);
  } catch (...) {
    stop_server(srv);
    throw;
  }
  try {
    srv.dumper = spawn_dumper(sys, cfg.data_dir, srv.writer, cfg.dump,
                              srv.links);
  } catch (...) {
    stop_server(srv);
    throw;
  }
  srv.hasher = spawn_hasher(sys, cfg.hashing);
  // The in-memory actors share the connections' I/O thread (actor_host).
  auto host = cfg.actors_on_io_thread ? io_thread_of(sys) : nullptr;
  srv.imq = spawn_imq(sys, srv.writer, std::move(queued), std::move(claimed),
                      imq_config{cfg.registry.mail, cfg.node_timeout, host});
  reg_cfg.waits = cfg.acceptor.connection.waits;
  srv.registry
    = spawn_registry(sys,
                     registry_deps{srv.hasher, srv.imq, srv.writer, srv.reader,
                                   srv.dumper, srv.links, host},
                     reg_cfg);
  auto room = connection_room(cfg.acceptor.max_connections,
                              cfg.admin_port ? admin_descriptors : 0);
  if (!room) {
    stop_server(srv);
    return std::move(room.error());
  }
  auto acceptor_cfg = cfg.acceptor;
  acceptor_cfg.max_connections = srv.max_connections = *room;
  acceptor_cfg.connection.mailboxes_on_nodes = !cfg.mailbox_nodes.empty();
  if (cfg.metrics_port)
    acceptor_cfg.metrics = srv.metrics = spawn_metrics(sys);
  auto bound = listen(sys, srv.registry, acceptor_cfg, cfg.host, cfg.port);
  if (!bound) {
    stop_server(srv);
    return std::move(bound.error());
  }
  srv.acceptor = bound->acceptor;
  srv.port = bound->port;
  if (cfg.metrics_port) {
    metrics_sources sources{srv.metrics, bound->metrics, srv.registry,
                            srv.imq,     srv.writer,     srv.hasher};
    metrics_endpoint_config http{cfg.metrics_host, *cfg.metrics_port};
    http.start_time = start_time;
    auto endpoint = metrics_endpoint::start(sys, std::move(sources), http);
    if (!endpoint) {
      stop_server(srv);
      return std::move(endpoint.error());
    }
    srv.metrics_http = std::move(*endpoint);
  }
  if (cfg.admin_port) {
    if (auto err = start_admin(sys, srv, cfg)) {
      stop_server(srv);
      return err;
    }
  }
  return srv;
}

void stop_server(const server& srv) {
  // The metrics endpoint first: its scrapes ask the actors below.
  if (srv.metrics_http)
    srv.metrics_http->stop();
  // admin tool: the admin file goes first, so that smsp-admin no longer
  // finds a server that is stopping.
  if (!srv.admin_data_dir.empty())
    remove_admin_file(srv.admin_data_dir);
  if (srv.admin)
    stop_admin(srv.admin);
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
  if (srv.dumper)
    caf::anon_send_exit(srv.dumper, reason);
  if (srv.metrics)
    caf::anon_send_exit(srv.metrics, reason);
  for (auto& link : srv.links)
    caf::anon_send_exit(link, reason);
  // The writer commits its open group as it stops.
  if (srv.writer)
    caf::anon_send_exit(srv.writer, reason);
}

caf::expected<mailbox_node>
start_node(caf::actor_system& sys, const node_config& cfg,
           const std::shared_ptr<node_mailbox_context>& ctx) {
  mailbox_node node;
  // Throws store_error: a data dir that cannot be used stops the start.
  auto db = store::open(cfg.data_dir, cfg.sync);
  auto store_id = db.store_id();
  node.writer = spawn_writer(sys, std::move(db), cfg.commit_delay);
  try {
    node.reader = spawn_reader(sys, cfg.data_dir);
  } catch (...) {
    stop_node(node);
    throw;
  }
  node.host = spawn_node_host(sys, node.writer, node.reader, store_id);
  // Filled in before the host is published: no front can spawn a mailbox
  // before then.
  ctx->reader = node.reader;
  ctx->writer = node.writer;
  ctx->host = node.host;
  ctx->waits = cfg.waits;
  auto port
    = cfg.tls.enabled()
        ? caf::openssl::publish(node.host, cfg.port, cfg.host.c_str(), true)
        : sys.middleman().publish(node.host, cfg.port, cfg.host.c_str(), true);
  if (!port) {
    stop_node(node);
    return std::move(port.error());
  }
  node.port = *port;
  return node;
}

void stop_node(const mailbox_node& node) {
  auto reason = caf::exit_reason::user_shutdown;
  if (node.host)
    caf::anon_send_exit(node.host, reason);
  if (node.reader)
    caf::anon_send_exit(node.reader, reason);
  // The writer commits its open group as it stops.
  if (node.writer)
    caf::anon_send_exit(node.writer, reason);
}

} // namespace smsp
