// smsp-actors: the SMSP mail server executable (command line, wiring, signals).
#include <csignal>
#include <iostream>
#include <thread>

#include <pthread.h>

#include <CLI/CLI.hpp>

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/server.hpp"

namespace {

struct options {
  smsp::server_config server;
  std::string data_dir = "./smsp-data";
  std::string pwhash = "interactive";
  /// Arguments for CAF's own configuration, e.g. --scheduler.max-threads=1.
  std::vector<std::string> caf_args;
};

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
    .add_option("--data-dir", opts.data_dir,
                "Directory for durable data (reserved: this version keeps "
                "mail in memory)")
    ->capture_default_str();
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
  return std::nullopt;
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
  auto srv = smsp::start_server(sys, opts.server);
  if (!srv) {
    std::cerr << "smsp-actors: cannot listen on " << opts.server.host << ":"
              << opts.server.port << " (is another server using the port, "
              << "or is the address not on this machine?): "
              << sys.render(srv.error()) << "\n";
    return 1;
  }
  smsp::log_line("smsp-actors started: pwhash=" + opts.pwhash + ", data dir " +
                 opts.data_dir + " (mail is kept in memory in this version)");
  std::cout << "smsp-actors listening on " << opts.server.host << ":"
            << srv->port << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  smsp::log_line(std::string{"smsp-actors stopping on "} +
                 (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  smsp::stop_server(*srv);
  return 0;
}
