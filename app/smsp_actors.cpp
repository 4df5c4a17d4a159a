// smsp-actors: the SMSP mail server executable (command line, wiring, signals).
#include <chrono>
#include <csignal>
#include <iostream>
#include <sstream>
#include <thread>

#include <pthread.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/server.hpp"

namespace {

struct options {
  smsp::server_config server;
  std::string pwhash = "interactive";
  std::string sync = "full";
  std::string trusted_networks = "127.0.0.0/8,::1/128";
  /// -1: chosen by the sync mode.
  int64_t commit_delay_us = -1;
  /// Arguments for CAF's own configuration, e.g. --scheduler.max-threads=1.
  std::vector<std::string> caf_args;
};

/// An option given in seconds, fractions allowed, that sets `target`; its
/// default shown in --help is `target`'s value.
void add_seconds_option(CLI::App& app, const std::string& name,
                        std::chrono::milliseconds& target,
                        const std::string& help, double min_secs,
                        double max_secs) {
  std::ostringstream shown;
  shown << target.count() / 1000.0;
  app
    .add_option_function<double>(
      name,
      [&target](double secs) {
        target = std::chrono::milliseconds{static_cast<int64_t>(secs * 1000)};
      },
      help)
    ->default_str(shown.str())
    ->check(CLI::Range(min_secs, max_secs));
}

/// Parses the command line with CLI11, which accepts both `--port 5000` and
/// `--port=5000` (CAF 0.17's parser knows only the second form). Returns an
/// exit code when the program should stop right away (--help, bad option).
std::optional<int> parse_command_line(int argc, char** argv, options& opts) {
  CLI::App app{"smsp-actors: a mail server for the Simple Mail Server "
               "Protocol (SMSP), built on the C++ Actor Framework.\n"
               "Options not listed here go to CAF's configuration (also read "
               "from ./caf-application.ini), e.g. --scheduler.max-threads=1."};
  auto& srv = opts.server;
  auto& conn = srv.connections;
  app
    .add_option("--host", srv.host,
                "Address to listen on. The default, 127.0.0.1, serves this "
                "machine only; --host 0.0.0.0 serves other machines")
    ->capture_default_str();
  app.add_option("--port,-p", srv.port, "TCP port; 0 picks a free port")
    ->capture_default_str();
  app
    .add_option("--data-dir", srv.data_dir,
                "Directory of the durable data (accounts, IMQ, mailboxes); "
                "created if missing, locked while the server runs")
    ->capture_default_str();
  app
    .add_option("--sync", opts.sync,
                "When a write is on disk before its OK: full (fsync at every "
                "group commit: survives kill -9 and power loss), normal "
                "(survives kill -9; a power loss may lose the last commits), "
                "off (survives kill -9; a power loss may lose commits and "
                "corrupt the file). See docs/OPERATIONS.md")
    ->check(CLI::IsMember({"full", "normal", "off"}))
    ->capture_default_str();
  app
    .add_option_function<int64_t>(
      "--commit-delay", [&opts](int64_t us) { opts.commit_delay_us = us; },
      "Microseconds a group commit may wait for more writes while many "
      "clients write (-1: 10000 with --sync=full, 0 otherwise); never longer "
      "than the last commit took")
    ->default_str("-1")
    ->check(CLI::Range(int64_t{-1}, int64_t{100000}));
  auto& boxes = srv.registry;
  add_seconds_option(
    app, "--mailbox-idle", boxes.mailbox_idle,
    "Seconds without requests after which a user's mailbox leaves memory "
    "(its mail stays on disk and is loaded again on the next request)",
    0.01, 30.0 * 24 * 3600);
  app
    .add_option("--account-cache", boxes.account_cache,
                "Password hashes kept in memory (most recently used); the "
                "others are read from disk at LOGIN")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 26));
  app
    .add_option("--max-mailbox", boxes.mail.max_mailbox,
                "Messages one mailbox holds; STORE beyond gets 'KO mailbox "
                "full' and the message stays on the IMQ")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 32));
  app
    .add_option("--max-imq-per-user", boxes.mail.max_imq_per_user,
                "Unstored IMQ messages per user; MESSAGE beyond gets 'KO too "
                "many unstored messages'")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 32));
  app
    .add_option("--pwhash", opts.pwhash,
                "Argon2id cost: interactive (64 MiB, the default), moderate "
                "(256 MiB), or min (tiny and weak: for tests and benchmarks "
                "only, never for real accounts)")
    ->check(CLI::IsMember({"interactive", "moderate", "min"}))
    ->capture_default_str();
  app
    .add_option("--hash-workers", srv.hashing.workers,
                "Password hashes computed at once, each on its own thread")
    ->capture_default_str()
    ->check(CLI::Range(1, 256));
  app
    .add_option("--hash-queue", srv.hashing.max_queue,
                "Password hashes that may wait; beyond it REGISTER and "
                "LOGIN get 'KO server busy'")
    ->capture_default_str();
  app
    .add_option("--max-request", conn.limits.max_request,
                "Longest request in bytes, terminator included")
    ->capture_default_str()
    ->check(CLI::Range(size_t{16}, size_t{1} << 30));
  app
    .add_option("--max-text", conn.limits.max_text,
                "Longest MESSAGE text in bytes")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 30));
  app
    .add_option("--max-unsent", conn.max_unsent,
                "Unread reply bytes after which a connection stops reading "
                "until its client catches up")
    ->capture_default_str();
  app
    .add_option("--max-connections", conn.max_connections,
                "Client connections served at once; one more gets "
                "'KO server busy' and is closed (each takes a file "
                "descriptor: see ulimit -n)")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app
    .add_option_function<unsigned>(
      "--idle-timeout",
      [&conn](unsigned secs) {
        conn.idle_timeout = std::chrono::seconds{secs};
      },
      "Seconds a connection may go without a complete request (and with "
      "none in flight) before it is closed; its session stays valid")
    ->default_str(std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(conn.idle_timeout)
        .count()))
    ->check(CLI::Range(1u, 30u * 24 * 3600));
  auto& penalty = boxes.throttle;
  add_seconds_option(
    app, "--login-penalty", penalty.first_penalty,
    "Seconds of the first brute-force penalty window: after 3 failed "
    "LOGINs for a username (or from an untrusted address) every LOGIN for "
    "it is refused, without hashing, as if the password were wrong; each "
    "further failure doubles the window",
    0.001, 86400.0);
  add_seconds_option(app, "--login-penalty-max", penalty.max_penalty,
                     "Seconds the penalty window grows to at most", 0.001,
                     86400.0);
  app
    .add_option("--trusted-networks", opts.trusted_networks,
                "Comma-separated networks (CIDR, IPv4 or IPv6) whose "
                "addresses are not penalized per address (usernames still "
                "are). Behind a proxy every client has the proxy's address: "
                "leave the proxy out, or '' to trust none")
    ->capture_default_str();
  app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }
  opts.caf_args = app.remaining();
  for (auto& arg : opts.caf_args)
    if (arg.rfind("--", 0) != 0) {
      std::cerr << "smsp-actors: unexpected argument '" << arg
                << "'\nRun with --help for more information.\n";
      return 2;
    }
  srv.hashing.cost = *smsp::parse_pwhash_cost(opts.pwhash);
  srv.sync = *smsp::parse_sync_mode(opts.sync);
  auto& throttle = srv.registry.throttle;
  throttle.trusted_networks.clear();
  std::stringstream networks{opts.trusted_networks};
  for (std::string net; std::getline(networks, net, ',');) {
    if (net.empty())
      continue;
    if (!smsp::parse_network(net)) {
      std::cerr << "smsp-actors: --trusted-networks: '" << net
                << "' is not a network (e.g. 10.0.0.0/8, fd00::/8, "
                   "192.0.2.7)\n";
      return 2;
    }
    throttle.trusted_networks.push_back(net);
  }
  if (throttle.max_penalty < throttle.first_penalty) {
    std::cerr << "smsp-actors: --login-penalty-max is below --login-penalty\n";
    return 2;
  }
  throttle.forget_after = std::max(
    throttle.forget_after, std::chrono::milliseconds{throttle.max_penalty});
  try {
    smsp::login_throttle check{throttle};
  } catch (const std::invalid_argument& err) {
    std::cerr << "smsp-actors: " << err.what() << "\n";
    return 2;
  }
  // Only an fsync is worth waiting for: without one, a commit is cheap.
  auto delay_us = opts.commit_delay_us >= 0
                    ? opts.commit_delay_us
                    : (srv.sync == smsp::sync_mode::full ? 10000 : 0);
  srv.commit_delay = std::chrono::microseconds{delay_us};
  return std::nullopt;
}

/// Raises the open-file limit to its hard maximum: every connection takes a
/// descriptor, and when they run out CAF 0.17 spins on the listening
/// socket. Warns when --max-connections still does not fit.
void fit_descriptor_limit(size_t max_connections) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  // Room for the store, the listening socket, logs and CAF's own pipes.
  constexpr size_t reserve = 64;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < max_connections + reserve)
    smsp::log_line("warning: --max-connections "
                   + std::to_string(max_connections)
                   + " exceeds what the open-file limit allows ("
                   + std::to_string(lim.rlim_cur)
                   + " descriptors; raise "
                     "ulimit -n or lower --max-connections)");
}

/// Blocks SIGINT and SIGTERM in this thread and, since threads inherit the
/// mask, in every thread CAF starts later: only sigwait() sees them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

} // namespace

int main(int argc, char** argv) {
  options opts;
  if (auto code = parse_command_line(argc, argv, opts))
    return *code;
  fit_descriptor_limit(opts.server.connections.max_connections);
  auto stop_signals = block_stop_signals();
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  // CAF defaults to 4 scheduler threads. All brokers run on CAF's one I/O
  // thread and password hashes on their own threads, so the actors get the
  // other cores: on 2 cores, 1 scheduler thread measured 96k COUNT/s
  // against 73k with 2 (docs/BENCHMARKS.md). The command line or the ini
  // file may still override.
  auto cores = std::max(2u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", static_cast<size_t>(cores - 1));
  std::vector<std::string> caf_args = opts.caf_args;
  if (auto err = cfg.parse(caf_args)) {
    std::cerr << "smsp-actors: bad CAF option: " << cfg.render(err) << "\n";
    return 2;
  }
  caf::actor_system sys{cfg};
  auto started = std::chrono::steady_clock::now();
  caf::expected<smsp::server> srv{caf::error{}};
  try {
    srv = smsp::start_server(sys, opts.server);
  } catch (const smsp::store_error& err) {
    std::cerr << "smsp-actors: " << err.what() << "\n";
    return 1;
  }
  if (!srv) {
    std::cerr << "smsp-actors: cannot listen on " << opts.server.host << ":"
              << opts.server.port << " (is another server using the port, "
              << "or is the address not on this machine?): "
              << sys.render(srv.error()) << "\n";
    return 1;
  }
  auto startup = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  smsp::log_line("smsp-actors started in " + std::to_string(startup.count())
                 + " ms: pwhash=" + opts.pwhash + ", data dir "
                 + opts.server.data_dir + ", sync=" + opts.sync);
  std::cout << "smsp-actors listening on " << opts.server.host << ":"
            << srv->port << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  smsp::log_line(std::string{"smsp-actors stopping on "}
                 + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  smsp::stop_server(*srv);
  return 0;
}
