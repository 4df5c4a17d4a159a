// smsp-actors' command line (CLI11) and the resolution of its defaults.
#include "app/options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <caf/config.hpp>
#include <sodium.h>
#include <sqlite3.h>

#include "actors/logic/credentials.hpp"
#include "actors/logic/throttle.hpp"
#include "actors/spawn.hpp"

namespace smsp {

namespace {

/// `text` as a whole decimal number: digits only (no sign, no spaces, no
/// hex or octal), and no wrap-around beyond 2^64 - 1.
std::optional<uint64_t> parse_decimal(const std::string& text) {
  if (text.empty() || text.size() > 20)
    return std::nullopt;
  uint64_t value = 0;
  auto first = text.data();
  auto last = text.data() + text.size();
  auto [end, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || end != last || text[0] == '-' || text[0] == '+')
    return std::nullopt;
  return value;
}

/// `text` as a finite, non-negative decimal number of seconds.
std::optional<double> parse_seconds(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789.") != text.npos)
    return std::nullopt;
  char* end = nullptr;
  auto value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(value))
    return std::nullopt;
  return value;
}

/// The longest request other than MESSAGE, in bytes: a REGISTER with the
/// longest name and password, CRLF included.
constexpr size_t longest_fixed_request = std::string_view{"REGISTER "}.size()
                                         + max_username_bytes + 1
                                         + max_password_bytes + 2;

/// What a MESSAGE adds to its text, in bytes: "MESSAGE ", the space before
/// the cookie, the cookie and CRLF.
constexpr size_t message_overhead = std::string_view{"MESSAGE "}.size() + 1
                                    + cookie_chars + 2;

std::string range_text(uint64_t min, uint64_t max) {
  return std::to_string(min) + " to " + std::to_string(max);
}

/// Adds a whole-number option with the range [min, max] that sets `target`.
/// `unit` names it in --help ("N", "BYTES", ...); the default shown is
/// `target`'s value.
template <class T>
CLI::Option* add_number(CLI::App& app, const std::string& name, T& target,
                        uint64_t min, uint64_t max, const std::string& unit,
                        const std::string& help) {
  auto flag = name.substr(0, name.find(','));
  auto range = range_text(min, max);
  return app
    .add_option_function<std::string>(
      name,
      [&target, flag, min, max, range](const std::string& text) {
        auto value = parse_decimal(text);
        if (!value || *value < min || *value > max)
          throw CLI::ValidationError(
            flag, "'" + text + "' is not a whole number from " + range);
        target = static_cast<T>(*value);
      },
      help + " (" + range + ")")
    ->type_name(unit)
    ->default_str(std::to_string(target));
}

std::string seconds_text(std::chrono::milliseconds d) {
  std::ostringstream out;
  out << d.count() / 1000.0;
  return out.str();
}

/// Adds an option in seconds, fractions allowed (to the millisecond), with
/// the range [min, max], that sets `target`.
CLI::Option* add_seconds(CLI::App& app, const std::string& name,
                         std::chrono::milliseconds& target, double min,
                         double max, const std::string& help) {
  std::ostringstream range;
  range << min << " to " << max;
  return app
    .add_option_function<std::string>(
      name,
      [&target, name, min, max, range = range.str()](const std::string& text) {
        auto value = parse_seconds(text);
        if (!value || *value < min || *value > max)
          throw CLI::ValidationError(name, "'" + text
                                             + "' is not a number of seconds "
                                               "from "
                                             + range);
        target = std::chrono::milliseconds{std::llround(*value * 1000)};
      },
      help + " (" + range.str() + ")")
    ->type_name("SECONDS")
    ->default_str(seconds_text(target));
}

/// Adds --node-cert, --node-key and --node-ca, setting `tls`.
/// --log-level, for the server and the node alike.
void add_log_level(CLI::App& app, log_level& level) {
  app
    .add_option_function<std::string>(
      "--log-level",
      [&level](const std::string& name) { level = *parse_log_level(name); },
      "Log lines of this level and above: error, warn, info (starts and "
      "stops, accounts created, failed and refused LOGINs with the client's "
      "address, penalties, connections closed by the server) or debug (also "
      "every connection opened and closed)")
    ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
    ->default_str("info");
}

void add_node_tls(CLI::App& app, node_tls& tls) {
  app
    .add_option("--node-cert", tls.cert,
                "PEM certificate of this process for mutual TLS between "
                "the front and its mailbox nodes (with --node-key and "
                "--node-ca; see docs/OPERATIONS.md)")
    ->check(CLI::ExistingFile);
  app.add_option("--node-key", tls.key, "PEM private key of --node-cert")
    ->check(CLI::ExistingFile);
  app
    .add_option("--node-ca", tls.ca,
                "PEM certificate of the CA that signs every front's and "
                "node's certificate; peers are verified against it")
    ->check(CLI::ExistingFile);
}

/// Why the TLS options do not fit together, or "".
std::string check_node_tls(const node_tls& tls) {
  auto given = int{!tls.cert.empty()} + int{!tls.key.empty()}
               + int{!tls.ca.empty()};
  if (given != 0 && given != 3)
    return "--node-cert, --node-key and --node-ca go together: give all "
           "three or none";
  return {};
}

/// Whether `host` is a loopback address (or a name for one).
bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"
         || host == "[::1]";
}

/// What --version prints: this version and those of the libraries the
/// server runs on (CAF as compiled against, SQLite and libsodium as loaded).
std::string version_text() {
  return "smsp-actors " + smsp_version() + "\nCAF "
         + std::to_string(CAF_MAJOR_VERSION) + "."
         + std::to_string(CAF_MINOR_VERSION) + "."
         + std::to_string(CAF_PATCH_VERSION) + ", SQLite "
         + sqlite3_libversion() + ", libsodium " + sodium_version_string();
}

/// Adds --config FILE and --print-config to `app` (the server or `node`).
void add_config_options(CLI::App& app, std::string& file, bool& print,
                        const std::string& who) {
  app
    .add_option("--config", file,
                "Read options from this file (INI or TOML: one 'name = value' "
                "a line, under each option's long name, e.g. port = 5000; see "
                "docs/smsp-actors.conf.example). Options on the command line "
                "win over the file")
    ->type_name("FILE")
    ->configurable(false);
  app
    .add_flag("--print-config", print,
              "Print the effective settings (defaults, the --config file and "
              "the command line) as a config file, marking those not at "
              "their default, and exit")
    ->configurable(false);
}

/// One `name = value` of a config file.
struct config_entry {
  std::string key;
  std::vector<std::string> values;
  /// 1-based line of the key, or 0 if it was not found again.
  size_t line = 0;
};

std::string trimmed(const std::string& text) {
  auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos)
    return {};
  auto last = text.find_last_not_of(" \t\r");
  return text.substr(first, last - first + 1);
}

/// `file`'s entries (read by CLI11's TOML/INI reader), each with its line;
/// or why the file cannot be used.
std::variant<std::vector<config_entry>, std::string>
read_config_file(const std::string& file) {
  std::ifstream in{file};
  if (!in)
    return file + ": cannot read the config file";
  // CLI11 does not say where an entry was: find each key's first line.
  std::map<std::string, size_t> lines;
  size_t section_line = 0;
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    auto text = trimmed(line);
    if (text.empty() || text[0] == '#' || text[0] == ';')
      continue;
    if (text[0] == '[') {
      if (section_line == 0)
        section_line = n;
      continue;
    }
    auto key = trimmed(text.substr(0, text.find('=')));
    if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'')
        && key.back() == key.front())
      key = key.substr(1, key.size() - 2);
    if (!lines.emplace(key, n).second)
      return file + ":" + std::to_string(n) + ": " + key
             + ": given twice (first on line " + std::to_string(lines[key])
             + ")";
  }
  if (section_line != 0)
    return file + ":" + std::to_string(section_line)
           + ": sections are not used: put every setting at the top level "
             "(a node reads its own file: smsp-actors node --config FILE)";
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML{}.from_file(file);
  } catch (const CLI::ParseError& err) {
    return file + ": " + err.what();
  }
  std::vector<config_entry> entries;
  std::set<std::string> seen;
  for (auto& item : items) {
    config_entry entry{item.fullname(), item.inputs, 0};
    if (auto i = lines.find(entry.key); i != lines.end())
      entry.line = i->second;
    auto where = file + (entry.line ? ":" + std::to_string(entry.line) : "")
                 + ": ";
    if (!item.parents.empty())
      return where + "'" + entry.key
             + "' is not a setting (no dotted or sectioned names)";
    if (!seen.insert(entry.key).second)
      return where + entry.key + ": given twice";
    entries.push_back(std::move(entry));
  }
  return entries;
}

/// The command-line arguments that say what `entry` says to `opt`.
std::variant<std::vector<std::string>, std::string>
entry_args(const CLI::Option& opt, const config_entry& entry) {
  auto flag = "--" + entry.key + "=";
  bool is_list = opt.get_items_expected_max() > 1;
  if (!is_list && entry.values.size() > 1)
    return std::string{"one value expected, not a list"};
  std::vector<std::string> args;
  for (auto& value : entry.values) {
    // CLI11 reads "--name=" as "--name" followed by the next argument.
    if (value.empty()) {
      args.push_back("--" + entry.key);
      args.emplace_back();
    } else {
      args.push_back(flag + value);
    }
  }
  if (args.empty()) {
    args.push_back("--" + entry.key);
    args.emplace_back();
  }
  return args;
}

/// Whether two settings' texts mean the same value ("30" and "30.0").
bool same_value(const std::string& x, const std::string& y) {
  if (x == y)
    return true;
  auto a = parse_seconds(x);
  auto b = parse_seconds(y);
  return a && b && *a == *b;
}

/// A value as a config file writes it: numbers bare, text quoted.
std::string config_value(const std::string& text) {
  auto dot = text.find('.');
  auto digits = [](const std::string& x) {
    return !x.empty() && x.find_first_not_of("0123456789") == x.npos;
  };
  if (dot == text.npos
        ? digits(text)
        : digits(text.substr(0, dot)) && digits(text.substr(dot + 1)))
    return text;
  return "\"" + text + "\"";
}

/// `app`'s effective settings as a config file that --config reads back.
std::string config_text(const CLI::App& app, const std::string& who) {
  std::ostringstream out;
  out << "# " << who << " " << smsp_version()
      << ": the effective settings (defaults, --config file, command line)\n"
         "# as a config file for --config. Settings not at their default are\n"
         "# marked so; settings without a value are commented out.\n";
  for (auto* opt : app.get_options()) {
    if (!opt->get_configurable() || opt->get_lnames().empty())
      continue;
    auto key = opt->get_lnames().front();
    auto values = opt->results();
    auto def = opt->get_default_str();
    out << "\n";
    if (opt->get_expected_min() == 0) {
      bool on = opt->count() > 0 && opt->as<bool>();
      if (on)
        out << "# not the default (false)\n";
      out << key << " = " << (on ? "true" : "false") << "\n";
      continue;
    }
    if (values.empty()) {
      if (def.empty())
        out << "# " << key << " = (not set)\n";
      else
        out << key << " = " << config_value(def) << "\n";
      continue;
    }
    if (opt->get_items_expected_max() > 1) {
      out << "# not the default (not set)\n" << key << " = [";
      for (size_t i = 0; i < values.size(); ++i)
        out << (i ? ", " : "") << "\"" << values[i] << "\"";
      out << "]\n";
      continue;
    }
    if (!same_value(values.back(), def))
      out << "# not the default ("
          << (def.empty() ? "not set" : config_value(def)) << ")\n";
    out << key << " = " << config_value(values.back()) << "\n";
  }
  return out.str();
}
} // namespace

std::variant<server_config, std::string>
resolve_options(const server_options& opts) {
  auto cfg = opts.server;
  // Only an fsync is worth waiting for: without one, a commit is cheap.
  cfg.commit_delay = opts.commit_delay.value_or(
    cfg.sync == sync_mode::full ? std::chrono::microseconds{10000}
                                : std::chrono::microseconds{0});
  auto& throttle = cfg.registry.throttle;
  throttle.trusted_networks.clear();
  std::stringstream networks{opts.trusted_networks};
  for (std::string net; std::getline(networks, net, ',');) {
    if (net.empty())
      continue;
    if (!parse_network(net))
      return "--trusted-networks: '" + net
             + "' is not a network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)";
    throttle.trusted_networks.push_back(net);
  }
  auto& wire = cfg.acceptor.connection.wire;
  if (wire.max_text + message_overhead > wire.max_request)
    return "--max-text " + std::to_string(wire.max_text)
           + " does not fit in --max-request "
           + std::to_string(wire.max_request) + ": a MESSAGE with that text "
           + "takes " + std::to_string(wire.max_text + message_overhead)
           + " bytes; lower --max-text or raise --max-request";
  if (throttle.max_penalty < throttle.first_penalty)
    return std::string{"--login-penalty-max is below --login-penalty"};
  // The attempt admitted when the longest window ends keeps its slot.
  throttle.forget_after = std::max(
    throttle.forget_after, std::chrono::milliseconds{throttle.max_penalty});
  try {
    login_throttle check{throttle};
  } catch (const std::invalid_argument& err) {
    return std::string{err.what()};
  }
  // One clock and one set of waits for every actor and connection.
  auto& conn = cfg.acceptor.connection;
  conn.now = opts.now;
  cfg.registry.now = opts.now;
  cfg.dump.now = opts.now;
  // A request for a user on a mailbox node may wait for the node's remote
  // spawn (2 node timeouts), the completion of unfinished moves (a prune and
  // an apply: 2 more) and its own answer (1): its deadline covers that, so
  // a slow node is answered 'KO mailbox unavailable', not 'KO internal
  // error' from the connection's deadline.
  if (!cfg.mailbox_nodes.empty())
    conn.waits.request = std::max(conn.waits.request, 5 * cfg.node_timeout);
  cfg.registry.waits = conn.waits;
  return cfg;
}

namespace {

/// smsp-actors' command line: the CLI11 app and the settings its options
/// write. One is made for each parse (the command line alone, each item of
/// a config file, then both), so it is neither copied nor moved.
struct parser {
  CLI::App app{"smsp-actors: a mail server for the Simple Mail Server "
               "Protocol (SMSP), built on the C++ Actor Framework.\n"
               "Besides the options below, it accepts three of CAF's "
               "settings, on the command line or in ./caf-application.ini: "
               "--scheduler.max-threads=N (1 to 256; default: the cores "
               "less one), --scheduler.max-throughput=N (messages per actor "
               "run, at least 1) and --scheduler.policy=sharing|stealing "
               "(default: sharing)."};
  server_options opts;
  command_line result;
  std::string pwhash = "interactive";
  CLI::App* node_cmd = nullptr;
  /// --config and --print-config of the server and of `node`.
  std::string config_file;
  std::string node_config_file;
  bool print_config = false;
  bool node_print_config = false;

  parser();
  parser(const parser&) = delete;
  parser& operator=(const parser&) = delete;
};

parser::parser() {
  auto& opts = this->opts;
  auto& result = this->result;
  auto& srv = opts.server;
  auto& conn = srv.acceptor.connection;
  auto& boxes = srv.registry;
  auto& pwhash = this->pwhash;
  app
    .add_option("--host", srv.host,
                "Address to listen on. The default, 127.0.0.1, serves this "
                "machine only; --host 0.0.0.0 serves other machines")
    ->capture_default_str();
  add_number(app, "--port,-p", srv.port, 0, 65535, "N",
             "TCP port; 0 picks a free port");
  app
    .add_option("--data-dir", srv.data_dir,
                "Directory of the durable data (accounts, IMQ, mailboxes); "
                "created if missing, locked while the server runs")
    ->capture_default_str();
  app
    .add_option_function<std::string>(
      "--sync",
      [&srv](const std::string& name) { srv.sync = *parse_sync_mode(name); },
      "When a write is on disk before its OK: full (fsync at every "
      "group commit: survives kill -9 and power loss), normal "
      "(survives kill -9; a power loss may lose the last commits), "
      "off (survives kill -9; a power loss may lose commits and "
      "corrupt the file). See docs/OPERATIONS.md")
    ->check(CLI::IsMember({"full", "normal", "off"}))
    ->default_str("full");
  app
    .add_option_function<std::string>(
      "--commit-delay",
      [&opts](const std::string& text) {
        if (text == "auto") {
          opts.commit_delay.reset();
          return;
        }
        auto value = parse_decimal(text);
        if (!value || *value > 100000)
          throw CLI::ValidationError("--commit-delay",
                                     "'" + text
                                       + "' is neither auto nor a whole "
                                         "number from "
                                       + range_text(0, 100000));
        opts.commit_delay = std::chrono::microseconds{*value};
      },
      "Microseconds a group commit may wait for more writes while many "
      "clients write; never longer than the last commit took. auto: 10000 "
      "with --sync=full, 0 otherwise (0 to 100000, or auto)")
    ->type_name("MICROSECONDS")
    ->default_str("auto");
  add_seconds(app, "--mailbox-idle", boxes.mailbox_idle, 0.01, 30.0 * 86400,
              "Seconds without requests after which a user's mailbox leaves "
              "memory (its mail stays on disk and is loaded again on the "
              "next request)");
  add_number(app, "--account-cache", boxes.account_cache, 1, uint64_t{1} << 26,
             "N",
             "Password hashes kept in memory (most recently used); the "
             "others are read from disk at LOGIN");
  add_number(app, "--max-mailbox", boxes.mail.max_mailbox, 1, uint64_t{1} << 32,
             "N",
             "Messages one mailbox holds; STORE beyond gets 'KO mailbox "
             "full' and the message stays on the IMQ");
  add_number(app, "--max-imq-per-user", boxes.mail.max_imq_per_user, 1,
             uint64_t{1} << 32, "N",
             "Unstored IMQ messages per user; MESSAGE beyond gets 'KO too "
             "many unstored messages'");
  app
    .add_option("--pwhash", pwhash,
                "Argon2id cost: interactive (64 MiB, the default), moderate "
                "(256 MiB), or min (tiny and weak: for tests and benchmarks "
                "only, never for real accounts)")
    ->check(CLI::IsMember({"interactive", "moderate", "min"}))
    ->capture_default_str();
  add_number(app, "--hash-workers", srv.hashing.workers, 1, 256, "N",
             "Password hashes computed at once, each on its own thread");
  add_number(app, "--hash-queue", srv.hashing.max_queue, 0, uint64_t{1} << 20,
             "N",
             "Password hashes that may wait for a worker; beyond it REGISTER "
             "and LOGIN get 'KO server busy'");
  add_number(app, "--max-request", conn.wire.max_request, longest_fixed_request,
             uint64_t{1} << 30, "BYTES",
             "Longest request in bytes, terminator included; at least the "
             "longest REGISTER, and a MESSAGE of --max-text bytes must fit");
  add_number(app, "--max-text", conn.wire.max_text, 1, max_text_ceiling,
             "BYTES", "Longest MESSAGE text in bytes");
  add_number(app, "--max-unsent", conn.max_unsent, 1024, uint64_t{1} << 30,
             "BYTES",
             "Reply bytes one connection may have outstanding (unread by its "
             "client, or still to come for requests in flight); beyond it the "
             "connection starts no request and stops reading until its client "
             "reads");
  add_number(app, "--max-unsent-total", srv.acceptor.max_unsent_total,
             uint64_t{1} << 20, uint64_t{1} << 40, "BYTES",
             "Outstanding reply bytes of all connections together beyond "
             "each one's longest reply; when they are out, connections whose "
             "clients do not read wait and stop reading");
  add_number(app, "--max-connections", srv.acceptor.max_connections, 1,
             uint64_t{1} << 24, "N",
             "Client connections served at once; one more gets 'KO server "
             "busy' and is closed. Each takes a file descriptor: the server "
             "serves fewer when the open-file limit (ulimit -n) requires, and "
             "says so at start");
  add_seconds(app, "--idle-timeout", conn.idle_timeout, 0.01, 30.0 * 86400,
              "Seconds a connection may go without a complete request (with "
              "none in flight), or with replies its client does not read, "
              "before it is closed; its session stays valid");
  auto& penalty = boxes.throttle;
  add_seconds(app, "--login-penalty", penalty.first_penalty, 0.001, 86400.0,
              "Seconds of the first brute-force penalty window: after 3 "
              "failed LOGINs from one address (for one name, or for any "
              "name from an untrusted address), or for a name guessed from "
              "several addresses, LOGINs there are refused without hashing, "
              "as if the password were wrong; each further failure doubles "
              "the window (see docs/SECURITY.md)");
  add_seconds(app, "--login-penalty-max", penalty.max_penalty, 0.001, 86400.0,
              "Seconds the penalty window grows to at most");
  app
    .add_option("--trusted-networks", opts.trusted_networks,
                "Comma-separated networks (CIDR, IPv4 or IPv6) whose "
                "addresses are not penalized across usernames (each "
                "username from such an address still is). Behind a proxy "
                "every client has the proxy's address: leave the proxy out, "
                "or '' to trust none")
    ->capture_default_str();
  app
    .add_option_function<std::string>(
      "--actors",
      [&srv](const std::string& name) {
        srv.actors_on_io_thread = name == "io-thread";
      },
      "Where the registry, the IMQ and the mailboxes run: io-thread (beside "
      "the connections: their messages need no system call, the fastest per "
      "request; all in-memory work shares one core) or scheduler (CAF's "
      "worker threads: more cores for deeply pipelined clients). Figures in "
      "docs/BENCHMARKS.md")
    ->check(CLI::IsMember({"io-thread", "scheduler"}))
    ->default_str("io-thread");
  app
    .add_option_function<std::string>(
      "--dump",
      [&srv](const std::string& name) {
        srv.dump.mode = *parse_dump_mode(name);
      },
      "What DUMP writes to the log: full (figures, totals, the IMQ and the "
      "first 100 mailboxes by name, 10 texts each), summary (figures and "
      "totals only, no mail text), off (nothing). DUMP always answers OK")
    ->check(CLI::IsMember({"full", "summary", "off"}))
    ->default_str("full");
  add_seconds(app, "--dump-interval", srv.dump.min_interval, 0.0, 3600.0,
              "At most one DUMP run per this many seconds; DUMPs sent "
              "meanwhile fold into the next run and are answered with it. 0 "
              "lifts the limit, and with it the bound on the log DUMPs "
              "write: for tests, never on a server that untrusted clients "
              "reach");
  add_log_level(app, result.log_threshold);
  app
    .add_option("--log-file", result.log_file,
                "Append the log to this file instead of stderr; reopened on "
                "SIGHUP (for logrotate)")
    ->check([](const std::string& path) {
      return path.empty() ? "a path is needed (leave the option out to log "
                            "to stderr)"
                          : "";
    });
  app
    .add_option_function<std::string>(
      "--metrics-port",
      [&srv](const std::string& text) {
        auto value = parse_decimal(text);
        if (!value || *value > 65535)
          throw CLI::ValidationError(
            "--metrics-port", "'" + text + "' is not a whole number from "
                                + range_text(0, 65535));
        srv.metrics_port = static_cast<uint16_t>(*value);
      },
      "Serve Prometheus metrics at http://HOST:N/metrics (HOST from "
      "--metrics-host); 0 picks a free port. Off unless given (0 to 65535)")
    ->type_name("N");
  app
    .add_option("--metrics-host", srv.metrics_host,
                "Address of the metrics endpoint (--metrics-port). The "
                "default, 127.0.0.1, serves this machine only")
    ->capture_default_str();
  app
    .add_option_function<std::vector<std::string>>(
      "--mailbox-node",
      [&srv](const std::vector<std::string>& texts) {
        for (auto& text : texts) {
          std::string why;
          auto node = parse_node_address(text, &why);
          if (!node)
            throw CLI::ValidationError("--mailbox-node", why);
          srv.mailbox_nodes.push_back(*node);
        }
      },
      "HOST:PORT of a mailbox node (smsp-actors node); repeat for each. "
      "Each user's mailbox lives on one of them, chosen by rendezvous "
      "hashing of the username; without any, every mailbox stays in this "
      "process")
    ->type_name("HOST:PORT")
    ->take_all();
  app.add_flag("--accept-node-change", srv.accept_node_change,
               "Start although the mailbox nodes differ from those recorded "
               "in the data dir: users placed on another node then find an "
               "empty mailbox there (their mail is not moved; see "
               "docs/OPERATIONS.md)");
  add_seconds(app, "--node-timeout", srv.node_timeout, 0.05, 60.0,
              "Seconds a mailbox node may take to answer before its users' "
              "requests get 'KO mailbox unavailable'; a node missing a "
              "heartbeat for this long is marked down");
  add_node_tls(app, srv.tls);
  // admin tool
  app
    .add_option_function<std::string>(
      "--admin-port",
      [&srv](const std::string& text) {
        if (text == "off") {
          srv.admin_port.reset();
          return;
        }
        auto value = parse_decimal(text);
        if (!value || *value > 65535)
          throw CLI::ValidationError("--admin-port",
                                     "'" + text
                                       + "' is neither off nor a whole "
                                         "number from "
                                       + range_text(0, 65535));
        srv.admin_port = static_cast<uint16_t>(*value);
      },
      "Port of the admin listener (smsp-admin; docs/OPERATIONS.md, 'The "
      "admin tool') on 127.0.0.1: 0 lets the system pick one, off "
      "disables it. Its port and a fresh token are written to "
      "DATA_DIR/admin (mode 0600) at start and removed at a clean stop "
      "(0 to 65535, or off)")
    ->type_name("N")
    ->default_str("0");

  auto& node = result.node;
  auto node_cmd = this->node_cmd = app.add_subcommand(
    "node", "Run a mailbox node: it holds the mailboxes of the users a front "
            "(smsp-actors --mailbox-node HOST:PORT) places on it, in its own "
            "data dir, and serves no client itself");
  node_cmd
    ->add_option("--host", node.host,
                 "Address to listen on for fronts. Any address other than "
                 "loopback requires --node-cert, --node-key and --node-ca")
    ->capture_default_str();
  add_number(*node_cmd, "--port,-p", node.port, 1, 65535, "N",
             "TCP port for fronts")
    ->required();
  node_cmd
    ->add_option("--data-dir", node.data_dir,
                 "Directory of the node's durable mailboxes; created if "
                 "missing, locked while the node runs")
    ->capture_default_str();
  node_cmd
    ->add_option_function<std::string>(
      "--sync",
      [&node](const std::string& name) { node.sync = *parse_sync_mode(name); },
      "As the server's --sync, for the node's mailboxes")
    ->check(CLI::IsMember({"full", "normal", "off"}))
    ->default_str("full");
  add_seconds(*node_cmd, "--node-timeout", node.node_timeout, 0.05, 60.0,
              "Seconds without a heartbeat after which a front's connection "
              "counts as dead (twice this) and its mailboxes here are "
              "retired; give the front's value");
  add_node_tls(*node_cmd, node.tls);
  add_log_level(*node_cmd, result.log_threshold);
  node_cmd
    ->add_option("--log-file", result.log_file,
                 "Append the log to this file instead of stderr; reopened on "
                 "SIGHUP")
    ->check([](const std::string& path) {
      return path.empty() ? "a path is needed" : "";
    });
  add_config_options(app, config_file, print_config, "smsp-actors");
  add_config_options(*node_cmd, node_config_file, node_print_config,
                     "smsp-actors node");
  app.set_version_flag("--version", version_text,
                       "Print the versions of smsp-actors and of the "
                       "libraries it runs on, and exit");
  node_cmd->allow_extras();
  app.allow_extras();
}

} // namespace

namespace {

/// Parses `args` (argv[0] first) with `p`; returns the exit code when it
/// must stop (help, version, an error: printed), or nothing.
std::optional<int> parse_args(parser& p, const std::vector<std::string>& args,
                              bool* missing_required = nullptr) {
  std::vector<const char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.c_str());
  try {
    p.app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::RequiredError& err) {
    if (missing_required == nullptr)
      return p.app.exit(err) == 0 ? exit_ok : exit_usage;
    *missing_required = true;
  } catch (const CLI::ParseError& err) {
    return p.app.exit(err) == 0 ? exit_ok : exit_usage;
  }
  return std::nullopt;
}

/// Parses the command line, with the --config file's settings under the
/// options the command line does not give. Returns the parser holding the
/// result, or the exit code.
std::variant<std::unique_ptr<parser>, int>
parse_with_config(const std::vector<std::string>& args) {
  auto first = std::make_unique<parser>();
  bool missing_required = false;
  if (auto code = parse_args(*first, args, &missing_required))
    return *code;
  bool is_node = first->node_cmd->parsed();
  const auto& file = is_node ? first->node_config_file : first->config_file;
  if (file.empty()) {
    if (missing_required) {
      // Again, to have CLI11 say what is missing.
      auto again = std::make_unique<parser>();
      if (auto code = parse_args(*again, args))
        return *code;
    }
    return first;
  }
  std::string who = is_node ? "smsp-actors node: " : "smsp-actors: ";
  auto read = read_config_file(file);
  if (auto why = std::get_if<std::string>(&read)) {
    std::cerr << who << *why << "\n";
    return exit_usage;
  }
  // Where the file's settings go: after `node`, or first.
  size_t at = 1;
  if (is_node)
    at = static_cast<size_t>(std::find(args.begin() + 1, args.end(), "node")
                             - args.begin())
         + 1;
  std::vector<std::string> prefix(args.begin(), args.begin() + at);
  std::vector<std::string> file_args;
  const auto& target = is_node ? *first->node_cmd : first->app;
  for (auto& entry : std::get<std::vector<config_entry>>(read)) {
    auto where = file + (entry.line ? ":" + std::to_string(entry.line) : "")
                 + ": ";
    auto* opt = target.get_option_no_throw("--" + entry.key);
    if (opt == nullptr || !opt->get_configurable()) {
      std::cerr << who << where << "unknown setting '" << entry.key
                << "' (settings are the long option names, without --; see "
                << (is_node ? "smsp-actors node --help" : "--help") << ")\n";
      return exit_usage;
    }
    auto entry_argv = entry_args(*opt, entry);
    std::string why;
    if (auto text = std::get_if<std::string>(&entry_argv)) {
      why = *text;
    } else {
      // Each setting alone, so that an error names the file's line.
      auto& more = std::get<std::vector<std::string>>(entry_argv);
      auto alone = prefix;
      alone.insert(alone.end(), more.begin(), more.end());
      parser check;
      std::vector<const char*> argv;
      for (auto& arg : alone)
        argv.push_back(arg.c_str());
      try {
        check.app.parse(static_cast<int>(argv.size()), argv.data());
      } catch (const CLI::RequiredError&) {
        // Another setting (node --port) may give it.
      } catch (const CLI::ParseError& err) {
        why = err.what();
        auto name = "--" + entry.key + ": ";
        if (why.rfind(name, 0) == 0)
          why.erase(0, name.size());
      }
      // The command line wins (the file's value is checked all the same).
      if (opt->count() == 0)
        file_args.insert(file_args.end(), more.begin(), more.end());
    }
    if (!why.empty()) {
      std::cerr << who << where << entry.key << ": " << why << "\n";
      return exit_usage;
    }
  }
  auto combined = prefix;
  combined.insert(combined.end(), file_args.begin(), file_args.end());
  combined.insert(combined.end(), args.begin() + at, args.end());
  auto last = std::make_unique<parser>();
  if (auto code = parse_args(*last, combined))
    return *code;
  return last;
}

} // namespace

std::variant<command_line, int> parse_command_line(int argc,
                                                   const char* const* argv) {
  std::vector<std::string> args(argv, argv + argc);
  auto parsed = parse_with_config(args);
  if (auto code = std::get_if<int>(&parsed))
    return *code;
  auto& p = *std::get<std::unique_ptr<parser>>(parsed);
  auto& app = p.app;
  auto* node_cmd = p.node_cmd;
  auto& result = p.result;
  auto& opts = p.opts;
  auto& srv = opts.server;
  auto& node = result.node;
  auto& pwhash = p.pwhash;
  result.is_node = node_cmd->parsed();
  result.caf_args = result.is_node ? node_cmd->remaining() : app.remaining();
  for (auto& arg : result.caf_args) {
    auto name = arg.substr(0, arg.find('='));
    auto is_parsing_option = [&name](std::string_view x) {
      return name.size() == x.size() + 2 && name.compare(2, x.size(), x) == 0;
    };
    bool caf_option
      = arg.rfind("--", 0) == 0
        && (name.find('.') != std::string::npos
            || std::any_of(std::begin(caf_parsing_options),
                           std::end(caf_parsing_options), is_parsing_option));
    if (!caf_option) {
      std::cerr << "smsp-actors: unknown option or unexpected argument '" << arg
                << "'\nRun with --help for more information.\n";
      return exit_usage;
    }
  }
  if (result.is_node) {
    // The front's options mean nothing to a node.
    size_t front_options = 0;
    for (auto* opt : app.get_options())
      front_options += opt->count();
    if (front_options > 0) {
      std::cerr << "smsp-actors: options before 'node' are the server's; a "
                   "node takes its own (smsp-actors node --help)\n";
      return exit_usage;
    }
    if (auto why = check_node_tls(node.tls); !why.empty()) {
      std::cerr << "smsp-actors node: " << why << "\n";
      return exit_usage;
    }
    if (!is_loopback(node.host) && !node.tls.enabled()) {
      std::cerr << "smsp-actors node: listening on " << node.host
                << " (not loopback) requires --node-cert, --node-key and "
                   "--node-ca: a node's port gives access to every mailbox "
                   "on it, so fronts must prove who they are (see "
                   "docs/SECURITY.md)\n";
      return exit_usage;
    }
    node.commit_delay = node.sync == sync_mode::full
                          ? std::chrono::microseconds{10000}
                          : std::chrono::microseconds{0};
    if (p.node_print_config) {
      std::cout << config_text(*node_cmd, "smsp-actors node");
      return exit_ok;
    }
    return result;
  }
  if (auto why = check_node_tls(srv.tls); !why.empty()) {
    std::cerr << "smsp-actors: " << why << "\n";
    return exit_usage;
  }
  if (auto why = check_node_list(srv.mailbox_nodes)) {
    std::cerr << "smsp-actors: --mailbox-node: " << *why << "\n";
    return exit_usage;
  }
  if (!srv.tls.enabled())
    for (auto& node : srv.mailbox_nodes)
      if (!is_loopback(node.host)) {
        std::cerr << "smsp-actors: --mailbox-node " << to_string(node)
                  << " is not on this machine: links to other machines "
                     "need mutual TLS (--node-cert, --node-key, --node-ca; "
                     "see docs/SECURITY.md)\n";
        return exit_usage;
      }
  srv.hashing.cost = *parse_pwhash_cost(pwhash);
  result.pwhash = pwhash;
  auto resolved = resolve_options(opts);
  if (auto why = std::get_if<std::string>(&resolved)) {
    std::cerr << "smsp-actors: " << *why << "\n";
    return exit_usage;
  }
  result.server = std::move(std::get<server_config>(resolved));
  if (p.print_config) {
    std::cout << config_text(app, "smsp-actors");
    return exit_ok;
  }
  return result;
}

} // namespace smsp
