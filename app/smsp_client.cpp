// smsp-client: interactive (libedit) or scripted command-line client for an
// SMSP server.
#include "app/line_client.hpp"
#include "app/terminal_text.hpp"
#include "net/wire/codec.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <editline/readline.h>

namespace {

constexpr std::string_view blanks = " \t";

// Exit statuses of scripted mode (and of a failed first connection).
// The exit codes of all three tools: 0 success, 1 a failure at run time
// (a refused command, no connection), 2 a usage error (a bad option).
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

std::string_view trim(std::string_view str) {
  auto first = str.find_first_not_of(blanks);
  if (first == std::string_view::npos)
    return {};
  auto last = str.find_last_not_of(blanks);
  return str.substr(first, last - first + 1);
}

// Splits off the first blank-separated word; the rest keeps its inner
// spacing (message texts are sent exactly as typed).
std::pair<std::string_view, std::string_view>
split_first(std::string_view str) {
  str = trim(str);
  auto end = str.find_first_of(blanks);
  if (end == std::string_view::npos)
    return {str, {}};
  return {str.substr(0, end), trim(str.substr(end))};
}

std::vector<std::string> split_words(std::string_view str) {
  std::vector<std::string> result;
  for (;;) {
    auto [word, rest] = split_first(str);
    if (word.empty())
      return result;
    result.emplace_back(word);
    str = rest;
  }
}

std::string lowercase(std::string_view str) {
  std::string result{str};
  for (auto& c : result)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

std::string_view first_word(std::string_view reply) {
  return reply.substr(0, reply.find(' '));
}

// A command could not complete: bad input, no session, a failure reply or a
// broken connection. `what()` is meant for people.
struct command_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The server refused: `what()` starts with its reply, shown as it came.
struct server_refused : command_error {
  using command_error::command_error;
};

const char* help_text
  = "Commands (case-insensitive):\n"
    "  register <user> <password>  create an account and log in\n"
    "  login <user> <password>     log in (replaces any previous session)\n"
    "  logout                      end the session\n"
    "  message <text...>           post a text to the incoming queue "
    "(MESSAGE)\n"
    "  store <user>                deliver your latest posted text to <user> "
    "(STORE)\n"
    "  send <user> <text...>       message + store in one step\n"
    "  count                       number of messages in your mailbox\n"
    "  get                         print the oldest message in your mailbox\n"
    "  del                         delete the oldest message in your mailbox\n"
    "  dump                        ask the server to dump its state to its "
    "log\n"
    "  raw <protocol line>         send a protocol line as-is, print the "
    "reply\n"
    "  whoami                      print the session's user and cookie\n"
    "  help                        this text\n"
    "  quit, exit                  leave\n";

class shell {
public:
  // `timeout` bounds each reply as a whole; `max_text` is the server's
  // --max-text in bytes, which sets the longest reply accepted.
  shell(std::string host, uint16_t port, std::chrono::milliseconds timeout,
        size_t max_text)
    : host_(std::move(host)),
      port_(port),
      timeout_(timeout),
      max_text_(max_text) {
  }

  // Throws std::runtime_error when the server is unreachable.
  void connect() {
    conn_ = std::make_unique<smsp::line_client>(host_, port_, timeout_);
    conn_->set_max_reply(smsp::max_reply_for_text(max_text_));
  }

  std::string endpoint() const {
    auto host = host_.find(':') == std::string::npos ? host_
                                                     : "[" + host_ + "]";
    return host + ":" + std::to_string(port_);
  }

  std::string prompt() const {
    return (user_.empty() ? "" : user_ + "@") + endpoint() + "> ";
  }

  bool quit_requested() const {
    return quit_;
  }

  // Runs one input line; returns what to print on success (nothing for
  // quit), throws command_error on failure.
  std::optional<std::string> run(std::string_view line) {
    auto [word, rest] = split_first(line);
    auto cmd = lowercase(word);
    if (cmd == "raw")
      return raw(rest);
    auto args = split_words(rest);
    if (cmd == "help" || cmd == "?") {
      expect_args(args, 0, "help");
      return help_text;
    }
    if (cmd == "quit" || cmd == "exit") {
      expect_args(args, 0, cmd);
      quit_ = true;
      return std::nullopt;
    }
    if (cmd == "register" || cmd == "login") {
      expect_args(args, 2, cmd + " <user> <password>");
      auto reply = call(uppercase(cmd) + " " + args[0] + " " + args[1]);
      auto cookie = expect_ok(reply);
      if (cookie.empty() || cookie.find(' ') != std::string::npos)
        throw command_error("unexpected reply from the server: " + reply);
      user_ = args[0];
      cookie_ = std::move(cookie);
      return cmd == "register" ? "registered and logged in as " + user_
                               : "logged in as " + user_;
    }
    if (cmd == "whoami") {
      expect_args(args, 0, "whoami");
      return user_.empty() ? "not logged in" : user_ + " " + cookie_;
    }
    if (cmd == "logout") {
      expect_args(args, 0, "logout");
      require_session();
      expect_ok(call("LOGOUT " + cookie_));
      auto who = std::exchange(user_, {});
      cookie_.clear();
      return "logged out " + who;
    }
    if (cmd == "message") {
      auto text = text_arg(rest, "message <text...>");
      require_session();
      post(text);
      return "message queued";
    }
    if (cmd == "store") {
      expect_args(args, 1, "store <user>");
      require_session();
      expect_ok(call("STORE " + args[0] + " " + cookie_));
      return "stored for " + args[0];
    }
    if (cmd == "send") {
      auto [to, after] = split_first(rest);
      auto text = text_arg(after, "send <user> <text...>");
      require_session();
      post(text);
      auto reply = call("STORE " + std::string{to} + " " + cookie_);
      if (first_word(reply) != "OK")
        // STORE failures leave the text on the queue; say how to retry.
        throw server_refused(reply
                             + " (the message stays queued: "
                               "store <user> delivers it)");
      return "sent to " + std::string{to};
    }
    if (cmd == "count") {
      expect_args(args, 0, "count");
      require_session();
      auto reply = call("COUNT " + user_ + " " + cookie_);
      auto [status, n] = split_first(reply);
      if (status != "COUNTED")
        throw server_refused(reply);
      if (n.empty() || !std::all_of(n.begin(), n.end(), [](char c) {
            return c >= '0' && c <= '9';
          }))
        throw command_error("unexpected reply from the server: " + reply);
      return std::string{n};
    }
    if (cmd == "get") {
      expect_args(args, 0, "get");
      require_session();
      return expect_ok(call("GETMSG " + user_ + " " + cookie_));
    }
    if (cmd == "del") {
      expect_args(args, 0, "del");
      require_session();
      expect_ok(call("DELMSG " + user_ + " " + cookie_));
      return "deleted";
    }
    if (cmd == "dump") {
      expect_args(args, 0, "dump");
      expect_ok(call("DUMP"));
      return "dumped (see the server log)";
    }
    throw command_error("unknown command '" + std::string{word}
                        + "' (try help)");
  }

private:
  static std::string uppercase(std::string str) {
    for (auto& c : str)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return str;
  }

  static void expect_args(const std::vector<std::string>& args, size_t n,
                          const std::string& form) {
    if (args.size() != n)
      throw command_error("usage: " + form);
  }

  static std::string text_arg(std::string_view rest, const char* form) {
    auto text = trim(rest);
    if (text.empty())
      throw command_error(std::string{"usage: "} + form);
    return std::string{text};
  }

  // Returns what follows "OK " (empty for a bare "OK").
  static std::string expect_ok(const std::string& reply) {
    if (reply == "OK")
      return {};
    if (reply.compare(0, 3, "OK ") == 0)
      return reply.substr(3);
    throw server_refused(reply);
  }

  void require_session() const {
    if (cookie_.empty())
      throw command_error("not logged in (register or login first)");
  }

  void post(const std::string& text) {
    auto reply = call("MESSAGE " + text + " " + cookie_);
    expect_ok(reply);
  }

  std::string raw(std::string_view line) {
    auto reply = call(line);
    auto status = first_word(reply);
    if (status != "OK" && status != "COUNTED")
      throw server_refused(reply);
    return reply;
  }

  // One request, one reply. After any transport error the reply stream can
  // no longer be matched to requests, so the connection is dropped and the
  // next command opens a fresh one (sessions survive: they are cookies). A
  // connection the server closed meanwhile (its idle timeout) is replaced
  // before sending: nothing was sent on it, so nothing is lost or repeated.
  // The client sends LF, so a '\r' at the end of a reply is the text's own.
  std::string call(std::string_view request) {
    try {
      if (conn_ && conn_->peer_closed())
        conn_.reset();
      if (!conn_)
        connect();
      return conn_->call(request, smsp::terminator::lf);
    } catch (const smsp::reply_too_long& e) {
      conn_.reset();
      throw command_error("connection error: " + std::string{e.what()}
                          + " for message texts of up to "
                          + std::to_string(max_text_)
                          + " bytes; connection dropped (a server run with a "
                            "larger --max-text needs the same --max-text "
                            "here)");
    } catch (const std::exception& e) {
      conn_.reset();
      throw command_error(std::string{"connection error: "} + e.what());
    }
  }

  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  size_t max_text_;
  std::unique_ptr<smsp::line_client> conn_;
  std::string user_;
  std::string cookie_;
  bool quit_ = false;
};

// Whether printed text is shown escaped (--escape).
enum class escape_mode { automatic, always, never };

// Every line the client prints, but the prompt (the user's own words),
// goes through here. Much of it is the server's bytes (message texts are the
// sender's, replies may echo them), and a terminal obeys control sequences in
// them: it could be recoloured, retitled or have lines overwritten by whoever
// sent the mail. So a stream that is a terminal gets escape_for_terminal's
// rendering; a pipe or file gets the bytes unchanged, so scripts see exactly
// what was posted. Each stream is decided on its own: `printf 'get\n' |
// smsp-client` still prints to a terminal, and stdout may go to a file while
// errors reach the terminal.
class printer {
public:
  explicit printer(escape_mode mode)
    : escape_out_(decide(mode, STDOUT_FILENO)),
      escape_err_(decide(mode, STDERR_FILENO)) {
  }

  // Prints `text` and ends the line: at least one line, even for an empty
  // text.
  void out(std::string_view text) const {
    write(std::cout, text, escape_out_);
  }

  void err(std::string_view text) const {
    std::cout.flush(); // keeps stdout and stderr in order on one terminal
    write(std::cerr, text, escape_err_);
  }

private:
  static bool decide(escape_mode mode, int fd) {
    return mode == escape_mode::always
           || (mode == escape_mode::automatic && isatty(fd) == 1);
  }

  static void write(std::ostream& os, std::string_view text, bool escape) {
    if (!escape) {
      os << text;
    } else {
      // Keeps the line breaks of the client's own multi-line texts (help);
      // a reply never holds one.
      for (size_t pos = 0;;) {
        auto nl = text.find('\n', pos);
        os << smsp::escape_for_terminal(text.substr(pos, nl - pos));
        if (nl == std::string_view::npos)
          break;
        os << '\n';
        pos = nl + 1;
      }
    }
    if (text.empty() || text.back() != '\n')
      os << '\n';
    os.flush();
  }

  bool escape_out_;
  bool escape_err_;
};

void print_output(const printer& print, const std::optional<std::string>& out) {
  if (out)
    print.out(*out);
}

bool has_nul(std::string_view line) {
  return line.find('\0') != std::string_view::npos;
}

bool skip_line(std::string_view line) {
  auto text = trim(line);
  return text.empty() || text.front() == '#';
}

int run_script(shell& sh, const printer& print) {
  std::string line;
  for (size_t lineno = 1; std::getline(std::cin, line); ++lineno) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (skip_line(line))
      continue;
    // Names the command, never the line: it may hold a password.
    auto cmd = lowercase(split_first(line).first);
    auto where = "smsp-client: line " + std::to_string(lineno) + " (" + cmd
                 + "): ";
    try {
      if (has_nul(line))
        throw command_error("the line contains a NUL byte");
      // The client ends each request with LF: a CR before it would make the
      // server read a CRLF terminator, and the CR would be lost.
      if (!line.empty() && line.back() == '\r')
        throw command_error("the line ends in two CRs (a CRLF file converted "
                            "twice?); a request cannot end in CR");
      print_output(print, sh.run(line));
      if (sh.quit_requested())
        return 0;
    } catch (const command_error& e) {
      print.err(where + e.what());
      return exit_failure;
    }
  }
  return 0;
}

std::string history_path() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    auto pw = getpwuid(getuid());
    if (pw == nullptr || pw->pw_dir == nullptr)
      return {};
    home = pw->pw_dir;
  }
  return std::string{home} + "/.smsp_client_history";
}

// Lines holding passwords never reach the history, not even via raw.
bool keep_in_history(std::string_view line) {
  auto [word, rest] = split_first(line);
  auto cmd = lowercase(word);
  if (cmd == "raw")
    cmd = lowercase(split_first(rest).first);
  return cmd != "register" && cmd != "login";
}

int run_interactive(shell& sh, const printer& print) {
  using_history();
  stifle_history(1000);
  auto path = history_path();
  if (!path.empty()) {
    // Creates the file private to the user: texts typed here are mail.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::close(fd);
      read_history(path.c_str());
    } else {
      path.clear();
    }
  }
  print.out("Connected to " + sh.endpoint()
            + ". Type help for commands, quit to leave.");
  while (!sh.quit_requested()) {
    auto prompt = sh.prompt();
    char* input = readline(prompt.c_str());
    if (input == nullptr) {
      std::cout << std::endl;
      break;
    }
    std::string line{input};
    std::free(input);
    if (skip_line(line))
      continue;
    if (keep_in_history(line)) {
      add_history(line.c_str());
      if (!path.empty() && write_history(path.c_str()) != 0)
        path.clear();
    }
    try {
      print_output(print, sh.run(line));
    } catch (const server_refused& e) {
      print.out(e.what());
    } catch (const command_error& e) {
      print.err(std::string{"error: "} + e.what());
    }
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{
    "smsp-client: talk to an SMSP mail server. Interactive on a "
    "terminal; otherwise runs one command per stdin line and "
    "exits 1 at the first failure or if it cannot connect (2 for a bad "
    "option). Received "
    "text reaches a terminal escaped (see --escape), a pipe or file "
    "byte for byte."};
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  double timeout_s = 30;
  app.add_option("--host", host, "server host")->capture_default_str();
  app.add_option("--port", port, "server port")
    ->check(CLI::Range(1, 65535))
    ->capture_default_str();
  app
    .add_option("--timeout", timeout_s,
                "seconds to wait for each whole reply: a deadline, however "
                "slowly its bytes trickle in; past it the command fails and "
                "the connection is dropped")
    // poll() takes an int of milliseconds: a day is plenty. NaN passes
    // every comparison, so CLI::Range alone would let it through.
    ->check(
      [](const std::string& text) {
        return std::isfinite(std::strtod(text.c_str(), nullptr))
                 ? std::string{}
                 : "'" + text + "' is not a number";
      },
      "finite")
    ->check(CLI::Range(0.001, 86400.0))
    ->capture_default_str();
  size_t max_text = smsp::wire_limits{}.max_text;
  app
    .add_option("--max-text", max_text,
                "the server's --max-text, in bytes: a reply longer than a "
                "GETMSG of a text this long fails the command and drops the "
                "connection (bounds the memory a server can make the client "
                "use)")
    // The server's own range for --max-text.
    ->check(CLI::Range(size_t{1}, smsp::max_text_ceiling))
    ->capture_default_str();
  std::string escape = "auto";
  app
    .add_option("--escape", escape,
                "show control bytes (C0, DEL, C1) and invalid UTF-8 in "
                "printed text as \\xHH, and a backslash as \\\\: auto does "
                "so on stdout and on stderr each when it is a terminal (a "
                "pipe or file gets the server's bytes unchanged); always, "
                "never")
    ->check(CLI::IsMember({"auto", "always", "never"}))
    ->capture_default_str();
  app.set_version_flag("--version", "smsp-client " SMSP_VERSION,
                       "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : exit_usage;
  }
  printer print{escape == "always"  ? escape_mode::always
                : escape == "never" ? escape_mode::never
                                    : escape_mode::automatic};

  auto timeout = std::chrono::milliseconds{
    static_cast<int64_t>(std::ceil(timeout_s * 1000))};
  shell sh{host, port, timeout, max_text};
  try {
    sh.connect();
  } catch (const std::exception& e) {
    print.err(std::string{"smsp-client: "} + e.what());
    return exit_failure;
  }
  return isatty(0) ? run_interactive(sh, print) : run_script(sh, print);
}
