// smsp-admin: the operator's tool for a running smsp-actors (through its
// admin listener) or, for the read-only commands, a stopped one's data dir.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "actors/store/store.hpp"
#include "app/admin_file.hpp"
#include "app/line_client.hpp"
#include "net/wire/admin.hpp"

namespace {

// Exit codes, as for every smsp tool (docs/OPERATIONS.md).
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

/// A failure at run time: printed as "smsp-admin: <what>", exit 1.
struct failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The reply to a request as it came (OK text), or failure with the ERR text.
std::string ask(smsp::line_client& conn, const std::string& request) {
  auto line = conn.call(request);
  auto reply = smsp::admin::parse_reply(line);
  if (!reply)
    throw failure{"the admin listener sent an unexpected reply: " + line};
  if (!reply->ok)
    throw failure{reply->text};
  return reply->text;
}

/// A connection to the running server's admin listener, authenticated;
/// null when no server is reachable: no admin file, or nothing listens
/// on its port (a server that crashed leaves the file behind). Throws
/// failure when the file cannot be read or the token is refused.
std::unique_ptr<smsp::line_client> connect(const std::string& data_dir) {
  std::string why;
  auto where = smsp::read_admin_file(data_dir, &why);
  if (!where) {
    if (why == "missing")
      return nullptr;
    throw failure{why};
  }
  std::unique_ptr<smsp::line_client> conn;
  try {
    // A PASSWD waits for an Argon2id hash, possibly queued behind others.
    conn = std::make_unique<smsp::line_client>(where->host, where->port,
                                               std::chrono::seconds{150});
  } catch (const std::exception& e) {
    if (std::string{e.what()}.find("refused") != std::string::npos)
      return nullptr;
    throw failure{e.what()};
  }
  // Names and figures of a large server: far beyond an SMSP reply.
  conn->set_max_reply(size_t{256} << 20);
  try {
    ask(*conn, "AUTH " + where->token);
  } catch (const failure& e) {
    std::string why = e.what();
    // Only a wrong token is the token's fault (a stale admin file from
    // another server on that port); "too many admin connections" is not.
    if (why.find(smsp::admin::reply::wrong_token.substr(4))
        != std::string::npos)
      why += " (the admin listener at " + where->host + ":"
             + std::to_string(where->port) + " refused the token of "
             + smsp::admin_file_path(data_dir) + ")";
    throw failure{why};
  }
  return conn;
}

/// The pid in DATA_DIR/LOCK if that process still runs, else 0: only to
/// word the offline note (the lock itself is never taken here, so that
/// smsp-admin can never keep a server from starting).
long lock_holder(const std::string& data_dir) {
  std::ifstream in{data_dir + "/LOCK"};
  long pid = 0;
  if (!(in >> pid) || pid <= 0)
    return 0;
  std::ifstream comm{"/proc/" + std::to_string(pid) + "/comm"};
  std::string name;
  if (!(comm >> name) || name != "smsp-actors")
    return 0;
  // A server that exited but was not reaped yet (a zombie) runs no more.
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  std::getline(stat, line);
  if (auto close = line.rfind(')'); close != std::string::npos
                                    && close + 2 < line.size()
                                    && line[close + 2] == 'Z')
    return 0;
  return pid;
}

void offline_note(const std::string& data_dir) {
  if (auto pid = lock_holder(data_dir))
    std::cerr << "smsp-admin: the server (pid " << pid
              << ") runs without a reachable admin listener (--admin-port "
                 "off, or still starting); read from the data dir\n";
  else
    std::cerr << "smsp-admin: server not running; read from the data dir\n";
}

/// The database of a stopped server, read-only (SQLite readers never block
/// a writer, and nothing is written).
smsp::store open_offline(const std::string& data_dir) {
  if (std::error_code ec; !std::filesystem::exists(data_dir + "/smsp.db", ec))
    throw failure{"no smsp-actors database in " + data_dir
                  + " (give the server's data dir with --data-dir)"};
  try {
    return smsp::store::open_reader(data_dir);
  } catch (const smsp::store_error& e) {
    throw failure{e.what()};
  }
}

[[noreturn]] void needs_server(const std::string& what) {
  throw failure{what
                + " needs the running server (no admin listener reachable: "
                  "is smsp-actors running on this data dir?)"};
}

void print_fields(const std::string& payload) {
  auto fields = smsp::admin::decode_fields(payload);
  if (!fields)
    throw failure{"the admin listener sent unreadable figures: " + payload};
  for (auto& [key, value] : *fields)
    std::cout << key << ": " << value << "\n";
}

void print_names(const std::vector<std::string>& names) {
  for (auto& name : names)
    std::cout << name << "\n";
}

/// Reads one line from the terminal with echo off. Echo goes off before the
/// prompt shows (TCSAFLUSH drops what was typed before it), so nothing
/// typed after the prompt is echoed or lost.
std::string read_hidden(const std::string& prompt) {
  termios old{};
  bool restore = ::tcgetattr(0, &old) == 0;
  if (restore) {
    auto quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(0, TCSAFLUSH, &quiet);
  }
  std::cerr << prompt << std::flush;
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (restore)
    ::tcsetattr(0, TCSAFLUSH, &old);
  std::cerr << "\n";
  if (!got)
    throw failure{"no password given"};
  return line;
}

/// The new password: asked twice without echo on a terminal, else the
/// first line of stdin.
std::string new_password(const std::string& user) {
  std::string password;
  if (::isatty(0) == 1) {
    password = read_hidden("New password for " + user + ": ");
    if (read_hidden("Retype it: ") != password)
      throw failure{"the passwords do not match; nothing was changed"};
  } else if (!std::getline(std::cin, password)) {
    throw failure{"no password on stdin; nothing was changed"};
  }
  if (!password.empty() && password.back() == '\r')
    password.pop_back();
  if (password.empty() || password.size() > 128)
    throw failure{"bad password: 1 to 128 characters; nothing was changed"};
  for (unsigned char c : password)
    if (c < 0x21 || c > 0x7e)
      throw failure{"bad password: printable ASCII without spaces only; "
                    "nothing was changed"};
  return password;
}

struct options {
  std::string data_dir = smsp::default_data_dir;
  std::string pattern;
  std::string user;
};

int run(CLI::App& app, const options& opts) {
  auto sub = app.get_subcommands().front();
  auto name = sub->get_name();
  if (name == "user")
    name = "user delete";
  auto conn = connect(opts.data_dir);
  if (name == "stats") {
    if (conn) {
      print_fields(ask(*conn, "STATS"));
      return exit_ok;
    }
    auto db = open_offline(opts.data_dir);
    offline_note(opts.data_dir);
    auto t = db.count_rows();
    std::cout << "accounts: " << t.accounts << "\n"
              << "store_messages: " << t.mail << "\n"
              << "store_imq: " << t.imq << "\n";
    return exit_ok;
  }
  if (name == "users") {
    auto pattern = opts.pattern.empty() ? std::string{"*"} : opts.pattern;
    if (conn) {
      print_names(smsp::admin::decode_names(ask(*conn, "USERS " + pattern)));
      return exit_ok;
    }
    auto db = open_offline(opts.data_dir);
    offline_note(opts.data_dir);
    print_names(db.account_names_matching(pattern));
    return exit_ok;
  }
  if (!conn)
    needs_server(name);
  if (name == "sessions") {
    print_names(smsp::admin::decode_names(ask(*conn, "SESSIONS")));
  } else if (name == "kick") {
    ask(*conn, "KICK " + opts.user);
    std::cout << "ended the session of " << opts.user << "\n";
  } else if (name == "passwd") {
    auto password = new_password(opts.user);
    ask(*conn, "PASSWD " + opts.user + " " + password);
    std::cout << "new password set for " << opts.user
              << "; its session, if any, ended\n";
  } else {
    auto fields = smsp::admin::decode_fields(ask(*conn, "DELETE " + opts.user));
    std::cout << "deleted " << opts.user;
    if (fields)
      for (auto& [key, value] : *fields)
        std::cout << ", " << key << "=" << value;
    std::cout << "\n";
  }
  return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  // A server that closes the connection must not kill us with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{
    "smsp-admin: administer an smsp-actors server through its admin "
    "listener (127.0.0.1, the token in DATA_DIR/admin, readable only by "
    "who can read the data dir). With the server stopped, stats and users "
    "read the data dir directly. Exit status: 0 success, 1 failure (no such "
    "user, server not running for a command that needs it, token refused), "
    "2 usage error."};
  options opts;
  app
    .add_option("--data-dir", opts.data_dir,
                "the server's data directory (its --data-dir)")
    ->capture_default_str();
  app.set_version_flag("--version", "smsp-admin " SMSP_VERSION,
                       "print the version and exit");
  app.require_subcommand(1);
  app.add_subcommand("stats",
                     "uptime, version, connections, sessions, mailboxes, "
                     "IMQ and store figures (offline: the store's counts)");
  app.add_subcommand("users", "list the accounts, all or matching PATTERN")
    ->add_option("PATTERN", opts.pattern,
                 "glob: * any, ? one character, [a-z] a set, [^a] not "
                 "(case-sensitive)")
    ->check([](const std::string& text) {
      return smsp::admin::valid_pattern(text)
               ? std::string{}
               : "letters, digits and * ? [ ] ^ - only, at most 64";
    });
  auto user = app.add_subcommand(
    "user", "user delete NAME: remove the account, its session, its mailbox "
            "and its unstored messages");
  user->require_subcommand(1);
  user->add_subcommand("delete", "delete the user NAME")
    ->add_option("NAME", opts.user, "username")
    ->required();
  app
    .add_subcommand("passwd",
                    "set NAME's password (asked twice without echo on a "
                    "terminal, else the first line of stdin); ends its "
                    "session")
    ->add_option("NAME", opts.user, "username")
    ->required();
  app.add_subcommand("sessions", "list the users with a live session");
  app.add_subcommand("kick", "end NAME's session")
    ->add_option("NAME", opts.user, "username")
    ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? exit_ok : exit_usage;
  }
  try {
    return run(app, opts);
  } catch (const failure& e) {
    std::cerr << "smsp-admin: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "smsp-admin: " << e.what() << "\n";
  }
  return exit_failure;
}
