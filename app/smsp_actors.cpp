// smsp-actors: the SMSP mail server executable (command line, wiring,
// signals).
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <variant>

#include <pthread.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "actors/log.hpp"
#include "app/options.hpp"
#include "app/server.hpp"
#include "caf/all.hpp"
#include "caf/detail/scope_guard.hpp"
#include "caf/io/all.hpp"

namespace {

/// Raises the open-file limit to its hard maximum: every connection takes a
/// descriptor. start_server then serves only as many connections as the
/// limit leaves room for, and says so.
void raise_descriptor_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

/// The signals main handles: SIGINT and SIGTERM stop the server, SIGHUP
/// reopens the log. They are blocked in this thread and, since threads
/// inherit the mask, in every thread CAF starts later: only sigwait() sees
/// them. SIGPIPE is ignored: a log or client that went away must never kill
/// the server (a failed write is an error value instead).
sigset_t take_signals() {
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

/// Parses and checks CAF's own settings (command line and
/// caf-application.ini) into `cfg`; returns an exit code when the program
/// must stop (CAF printed help, or a setting is refused).
std::optional<int> configure_caf(caf::actor_system_config& cfg,
                                 const smsp::command_line& cmd) {
  cfg.load<caf::io::middleman>();
  std::vector<std::string> caf_args = cmd.caf_args;
  if (auto err = cfg.parse(caf_args)) {
    // CAF's error names no option: find the one it refuses.
    for (auto& arg : cmd.caf_args) {
      caf::actor_system_config alone;
      alone.load<caf::io::middleman>();
      std::vector<std::string> args{arg};
      if (auto why = alone.parse(args)) {
        std::cerr << "smsp-actors: CAF option " << arg.substr(0, arg.find('='))
                  << ": '" << arg << "' is refused (" << alone.render(why)
                  << ")\n";
        return smsp::exit_usage;
      }
    }
    std::cerr << "smsp-actors: CAF's configuration file "
              << cfg.config_file_path << " is refused: " << cfg.render(err)
              << "\n";
    return smsp::exit_usage;
  }
  // --long-help or --dump-config: CAF printed what was asked.
  if (cfg.cli_helptext_printed)
    return smsp::exit_ok;
  if (auto why = smsp::check_actor_system(cfg); !why.empty()) {
    std::cerr << "smsp-actors: " << why << "\n";
    return smsp::exit_usage;
  }
  smsp::configure_actor_system(cfg);
  smsp::add_message_types(cfg);
  return std::nullopt;
}

/// `dir` as an absolute path, for the log: an operator reading it cannot
/// know the working directory the server was started in.
std::string absolute_path(const std::string& dir) {
  std::error_code ec;
  auto abs = std::filesystem::weakly_canonical(dir, ec);
  return ec ? dir : abs.string();
}

/// Tells systemd (a Type=notify unit, which sets NOTIFY_SOCKET) that the
/// server accepts connections, as the `listening` line tells scripts.
/// Without NOTIFY_SOCKET sd_notify does nothing.
void notify_ready() {
  if (int rc = sd_notify(0, "READY=1"); rc < 0)
    smsp::log_warn("systemd", "cannot send READY=1 to NOTIFY_SOCKET: "
                                + std::string{std::strerror(-rc)});
}

/// Waits for SIGINT or SIGTERM, reopening the log at each SIGHUP. `who`:
/// the log's component, "server" or "node".
void wait_for_stop(const sigset_t& signals, const char* who) {
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      smsp::log_info(who, "SIGHUP: reopening the log");
      smsp::log_reopen();
      continue;
    }
    smsp::log_info(who, std::string{"stopping on "}
                          + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    // Under systemd (Type=notify): the stop has begun.
    sd_notify(0, "STOPPING=1");
    return;
  }
}

/// `smsp-actors node ...`: a mailbox node until SIGINT or SIGTERM.
int run_node(const smsp::command_line& cmd, const sigset_t& signals) {
  auto& node_cfg = cmd.node;
  if (auto why = smsp::check_node_tls_files(node_cfg.tls); !why.empty()) {
    std::cerr << "smsp-actors node: " << why << "\n";
    return smsp::exit_usage;
  }
  caf::actor_system_config cfg;
  if (auto code = configure_caf(cfg, cmd))
    return *code;
  smsp::configure_node_links(cfg, node_cfg.node_timeout, node_cfg.tls);
  auto ctx = std::make_shared<smsp::node_mailbox_context>();
  smsp::add_node_mailbox_type(cfg, ctx);
  caf::actor_system sys{cfg};
  // The mailbox type's factory (in cfg, which outlives sys) shares ctx: its
  // handles would keep the node's actors alive, and the actor system's
  // shutdown waiting for them, on every way out of this function.
  auto release_ctx = caf::detail::make_scope_guard(
    [&ctx] { *ctx = smsp::node_mailbox_context{}; });
  caf::expected<smsp::mailbox_node> node{caf::error{}};
  try {
    node = smsp::start_node(sys, node_cfg, ctx);
  } catch (const smsp::store_error& err) {
    std::cerr << "smsp-actors node: " << err.what() << "\n";
    return smsp::exit_failure;
  }
  if (!node) {
    std::cerr << "smsp-actors node: cannot listen on " << node_cfg.host << ":"
              << node_cfg.port << ": " << sys.render(node.error()) << "\n";
    return smsp::exit_failure;
  }
  smsp::log_info("node",
                 "smsp-actors node " + smsp::smsp_version()
                   + " started: data dir " + absolute_path(node_cfg.data_dir)
                   + ", sync=" + to_string(node_cfg.sync)
                   + (node_cfg.tls.enabled() ? ", mutual TLS" : ", no TLS"));
  std::cout << "smsp-actors node listening on " << node_cfg.host << ":"
            << node->port << std::endl;
  notify_ready();
  wait_for_stop(signals, "node");
  smsp::stop_node(*node);
  // A safety net: now and then CAF 0.17's shutdown of a node waits for
  // ever on the threads of its detached actors (the store's), after every
  // actor has stopped and every write is committed. A node must stop.
  std::thread{[] {
    std::this_thread::sleep_for(std::chrono::seconds{10});
    std::fputs("smsp-actors node: CAF's shutdown still waits after 10 s; "
               "exiting (every write was committed)\n",
               stderr);
    std::_Exit(smsp::exit_ok);
  }}.detach();
  return smsp::exit_ok;
}

int run(const smsp::command_line& cmd, const sigset_t& signals) {
  if (cmd.is_node)
    return run_node(cmd, signals);
  if (auto why = smsp::check_node_tls_files(cmd.server.tls); !why.empty()) {
    std::cerr << "smsp-actors: " << why << "\n";
    return smsp::exit_usage;
  }
  caf::actor_system_config cfg;
  if (auto code = configure_caf(cfg, cmd))
    return *code;
  if (!cmd.server.mailbox_nodes.empty())
    smsp::configure_node_links(cfg, cmd.server.node_timeout, cmd.server.tls);
  caf::actor_system sys{cfg};
  auto& srv_cfg = cmd.server;
  auto started = std::chrono::steady_clock::now();
  caf::expected<smsp::server> srv{caf::error{}};
  try {
    srv = smsp::start_server(sys, srv_cfg);
  } catch (const smsp::store_error& err) {
    std::cerr << "smsp-actors: " << err.what() << "\n";
    return smsp::exit_failure;
  }
  if (!srv) {
    auto& why = srv.error().context();
    // The metrics endpoint and the admin listener name their own address.
    if (why.size() == 1 && why.match_element<std::string>(0)) {
      auto& text = why.get_as<std::string>(0);
      if (text.rfind("cannot serve metrics", 0) == 0
          || text.rfind("cannot open the admin listener", 0) == 0) {
        std::cerr << "smsp-actors: " << text << "\n";
        return smsp::exit_failure;
      }
    }
    std::cerr << "smsp-actors: cannot serve " << srv_cfg.host << ":"
              << srv_cfg.port << ": ";
    if (srv.error() == caf::sec::cannot_open_port)
      std::cerr << sys.render(srv.error())
                << " (is another server using the port, or is the address "
                   "not on this machine?)\n";
    else if (auto& why = srv.error().context();
             why.size() == 1 && why.match_element<std::string>(0))
      std::cerr << why.get_as<std::string>(0) << "\n";
    else
      std::cerr << sys.render(srv.error()) << "\n";
    return smsp::exit_failure;
  }
  auto startup = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  smsp::log_info("server",
                 "smsp-actors started in " + std::to_string(startup.count())
                   + " ms: version " + smsp::smsp_version() + ", data dir "
                   + absolute_path(srv_cfg.data_dir)
                   + (srv->created ? " created" : " opened") + " ("
                   + std::to_string(srv->accounts) + " account(s), "
                   + std::to_string(srv->mail) + " mailbox message(s), "
                   + std::to_string(srv->imq_messages) + " on the IMQ), pwhash="
                   + cmd.pwhash + ", sync=" + to_string(srv_cfg.sync)
                   + ", dump=" + to_string(srv_cfg.dump.mode) + ", actors="
                   + (srv_cfg.actors_on_io_thread ? "io-thread" : "scheduler")
                   + ", at most " + std::to_string(srv->max_connections)
                   + " connections"
                   + (srv_cfg.mailbox_nodes.empty()
                        ? std::string{}
                        : ", " + std::to_string(srv_cfg.mailbox_nodes.size())
                            + " mailbox node(s)"));
  // Before the listening line (the readiness contract), so that a reader
  // waiting for that one has this one too.
  if (srv->metrics_http) {
    auto host = srv_cfg.metrics_host.find(':') != std::string::npos
                  ? "[" + srv_cfg.metrics_host + "]"
                  : srv_cfg.metrics_host;
    std::cout << "smsp-actors metrics on http://" << host << ":"
              << srv->metrics_http->port() << "/metrics" << std::endl;
  }
  std::cout << "smsp-actors listening on " << srv_cfg.host << ":" << srv->port
            << std::endl;
  notify_ready();
  wait_for_stop(signals, "server");
  smsp::stop_server(*srv);
  return smsp::exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  auto parsed = smsp::parse_command_line(argc, argv);
  if (auto code = std::get_if<int>(&parsed))
    return *code;
  auto& cmd = std::get<smsp::command_line>(parsed);
  // CAF's --long-help and --dump-config: CAF prints, and nothing starts (no
  // log file, no data dir).
  if (std::any_of(cmd.caf_args.begin(), cmd.caf_args.end(),
                  [](const std::string& arg) {
                    auto name = arg.substr(0, arg.find('='));
                    return name == "--long-help" || name == "--dump-config";
                  })) {
    caf::actor_system_config cfg;
    return configure_caf(cfg, cmd).value_or(smsp::exit_ok);
  }
  raise_descriptor_limit();
  auto signals = take_signals();
  smsp::set_log_level(cmd.log_threshold);
  if (auto why = smsp::log_start(cmd.log_file); !why.empty()) {
    std::cerr << "smsp-actors: " << why << "\n";
    return smsp::exit_failure;
  }
  // The actor system is gone when run() returns, so nothing logs any more
  // when the log stops.
  auto code = run(cmd, signals);
  // The actor system is gone: the writers committed their last groups.
  if (code == smsp::exit_ok)
    smsp::log_info(cmd.is_node ? "node" : "server",
                   "stopped cleanly: every acknowledged write is committed");
  smsp::log_stop();
  return code;
}
