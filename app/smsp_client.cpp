// smsp-client: interactive (libedit), scripted or one-shot SMSP client.
#include "app/line_client.hpp"
#include "app/terminal_text.hpp"
#include "net/wire/codec.hpp"
#include "net/wire/replies.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <histedit.h>

namespace {

constexpr std::string_view blanks = " \t";

// The exit codes of all three tools: 0 success, 1 a failure at run time
// (a refused command, no connection), 2 a usage error (a bad option, an
// unknown one-shot command or a wrong number of its arguments).
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

// The command was typed wrongly (unknown word, wrong number of arguments):
// a usage error (exit 2) when it came from the command line.
struct usage_error : command_error {
  using command_error::command_error;
};

// The server refused: `what()` starts with its reply, shown as it came.
struct server_refused : command_error {
  using command_error::command_error;
};

// -- the commands -------------------------------------------------------------

// One row per command of the client: `help` lists `syntax` and `summary`,
// `help <command>` adds `details` (what it sends, its replies, from
// PROTOCOL.md section 4). `aliases` are other words for it (the protocol's
// name where the client's differs). `one_shot` marks the commands that
// `smsp-client [options] COMMAND ARGS...` runs: each sends one protocol
// request (plus the LOGIN that gets its cookie).
struct command_info {
  std::string_view name;
  std::vector<std::string_view> aliases;
  std::string_view syntax;
  // How many blank-separated words may follow the command word; a text
  // (message, send, raw) takes any number.
  size_t min_args;
  size_t max_args;
  std::string_view summary;
  std::string_view details;
  bool one_shot;
};

constexpr size_t any = SIZE_MAX;

const std::vector<command_info> commands = {
  {"register",
   {},
   "register <user> [<password>]",
   1,
   2,
   "create an account and log in",
   "Sends REGISTER <user> <password>: creates the account with an empty\n"
   "mailbox and starts a session, whose cookie the client remembers and\n"
   "appends to later commands. <user> is 1-32 letters and digits\n"
   "(case-sensitive); <password> 1-128 printable ASCII bytes, no space.\n"
   "Without <password> it comes from SMSP_PASSWORD, else it is asked for\n"
   "without echo, twice on a terminal (the line then holds no password;\n"
   "register and login lines never reach the history either way).\n"
   "Replies: OK <cookie>; KO user exists; KO bad username;\n"
   "KO bad password.",
   true},
  {"login",
   {},
   "login [<user> [<password>]]",
   0,
   2,
   "log in (ends the user's other session)",
   "Sends LOGIN <user> <password> and remembers the new session's cookie.\n"
   "A user has one session at a time: logging in ends the one before (a\n"
   "client still using it is told its session expired). Without <user> it\n"
   "comes from SMSP_USER, else it is asked for; without <password> it comes\n"
   "from SMSP_PASSWORD, else it is asked for without echo.\n"
   "Replies: OK <cookie>;\n"
   "KO wrong username or password (also for an unknown user).",
   true},
  {"logout",
   {},
   "logout",
   0,
   0,
   "end the session",
   "Sends LOGOUT <cookie>: ends the session and forgets its cookie.\n"
   "Replies: OK; KO not logged in (the cookie is not a live session).",
   true},
  {"message",
   {},
   "message <text...>",
   1,
   any,
   "post a text to the incoming queue",
   "Sends MESSAGE <text> <cookie>: puts the text on the server's incoming\n"
   "message queue (IMQ), tagged with your account; store delivers it.\n"
   "Inner spacing is kept.\n"
   "Replies: OK; You should log in first. (no live session);\n"
   "KO when the text is empty or too long.",
   true},
  {"store",
   {},
   "store <user>",
   1,
   1,
   "deliver your latest posted text to <user>",
   "Sends STORE <user> <cookie>: takes the most recent text you posted\n"
   "with message off the incoming queue and appends it to <user>'s\n"
   "mailbox (any existing user: this is how mail is sent).\n"
   "Replies: OK; KO not logged in; KO no such user (the text stays queued);\n"
   "KO nothing to store; KO mailbox unavailable.",
   true},
  {"send",
   {},
   "send <user> <text...>",
   2,
   any,
   "message + store in one step",
   "Sends MESSAGE <text> <cookie>, then STORE <user> <cookie>.\n"
   "Replies: those of message and store; when STORE fails the text stays\n"
   "queued and store <user> delivers it later.",
   false},
  {"count",
   {},
   "count [<user>]",
   0,
   1,
   "number of messages in your mailbox",
   "Sends COUNT <user> <cookie> (<user>: yours by default) and prints the\n"
   "number of messages waiting in your mailbox.\n"
   "Replies: COUNTED <n>; KO not logged in; KO not your mailbox (<user>\n"
   "is not the session's, whether or not it exists); KO mailbox unavailable.",
   true},
  {"get",
   {"getmsg"},
   "get [<user>]",
   0,
   1,
   "print the oldest message in your mailbox",
   "Sends GETMSG <user> <cookie> (<user>: yours by default) and prints the\n"
   "oldest message's text; the message stays in the mailbox (del removes\n"
   "it).\n"
   "Replies: OK <text>; KO not logged in; KO not your mailbox;\n"
   "KO mailbox empty; KO mailbox unavailable.",
   true},
  {"del",
   {"delmsg"},
   "del [<user>]",
   0,
   1,
   "delete the oldest message in your mailbox",
   "Sends DELMSG <user> <cookie> (<user>: yours by default): removes the\n"
   "oldest message of your mailbox.\n"
   "Replies: OK; KO not logged in; KO not your mailbox; KO mailbox empty;\n"
   "KO mailbox unavailable.",
   true},
  {"dump",
   {},
   "dump",
   0,
   0,
   "ask the server to dump its state to its log",
   "Sends DUMP: the server writes its figures and a bounded listing of the\n"
   "incoming queue and the mailboxes to its own log (not to the client).\n"
   "Replies: OK (it never fails).",
   true},
  {"raw",
   {},
   "raw <protocol line>",
   1,
   any,
   "send a protocol line as-is",
   "Sends the line exactly as typed (no cookie added) and prints the reply.\n"
   "Replies: whatever the server answers; anything but OK and COUNTED\n"
   "counts as a failure.",
   false},
  {"whoami",
   {},
   "whoami",
   0,
   0,
   "print the session's user and cookie",
   "Prints the user and the cookie of the session (the cookie is what\n"
   "SMSP_COOKIE takes for one-shot commands), or 'not logged in'. Sends\n"
   "nothing.",
   false},
  {"help",
   {"?"},
   "help [<command>]",
   0,
   1,
   "list the commands, or explain one",
   "Lists the commands; help <command> explains one.",
   false},
  {"quit",
   {"exit"},
   "quit",
   0,
   0,
   "leave (so does Ctrl-D)",
   "Leaves the client. Ctrl-D on an empty line does the same; Ctrl-C\n"
   "clears the line being typed.",
   false},
};

// The row for `word` (case-insensitive, aliases included), or nullptr.
const command_info* find_command(std::string_view word) {
  auto cmd = lowercase(word);
  for (auto& info : commands) {
    if (info.name == cmd
        || std::find(info.aliases.begin(), info.aliases.end(), cmd)
             != info.aliases.end())
      return &info;
  }
  return nullptr;
}

std::string help_list() {
  std::string result = "Commands (case-insensitive; help <command> for "
                       "more):\n";
  for (auto& info : commands) {
    std::string line = "  " + std::string{info.syntax};
    line.resize(std::max(line.size() + 1, size_t{32}), ' ');
    result += line + std::string{info.summary} + "\n";
  }
  return result;
}

std::string help_for(const command_info& info) {
  std::string result = "usage: " + std::string{info.syntax} + "\n";
  if (!info.aliases.empty()) {
    result += "also:";
    for (auto alias : info.aliases)
      result += " " + std::string{alias};
    result += "\n";
  }
  return result + std::string{info.details} + "\n";
}

// -- credentials --------------------------------------------------------------

std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0')
    return std::nullopt;
  return std::string{value};
}

// The terminal settings of stdin until destroyed: the password prompt turns
// echo off and must turn it back on whatever happens.
class terminal_mode {
public:
  explicit terminal_mode(int fd) : fd_(fd) {
    saved_ok_ = ::tcgetattr(fd_, &saved_) == 0;
  }
  ~terminal_mode() {
    if (saved_ok_)
      ::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  terminal_mode(const terminal_mode&) = delete;
  terminal_mode& operator=(const terminal_mode&) = delete;

  // Byte by byte, without echo, and without signals: Ctrl-C must not end the
  // process while echo is off (the terminal would stay silent).
  bool no_echo() {
    if (!saved_ok_)
      return false;
    auto raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | ISIG);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    return ::tcsetattr(fd_, TCSAFLUSH, &raw) == 0;
  }

private:
  int fd_;
  termios saved_{};
  bool saved_ok_ = false;
};

// A password (or a username, with `secret` false) asked for on the terminal
// of stdin: the prompt goes to stderr (stdout may be a script's), a password
// is read without echo, and Enter ends it. Ctrl-C or Ctrl-D on an empty
// line cancel. When stdin is not a terminal, one line is read from it
// silently (`echo "$pw" | smsp-client COUNT alice`).
std::string ask(const std::string& prompt, bool secret) {
  std::string line;
  if (::isatty(STDIN_FILENO) != 1) {
    if (!std::getline(std::cin, line))
      throw command_error("no " + std::string{secret ? "password" : "user"}
                          + " given: stdin ended");
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    return line;
  }
  std::cout.flush();
  std::cerr << prompt << std::flush;
  terminal_mode mode{STDIN_FILENO};
  if (secret && !mode.no_echo())
    throw command_error("cannot turn off the terminal's echo for the "
                        "password: "
                        + std::string{std::strerror(errno)});
  bool cancelled = false;
  for (;;) {
    char c;
    auto n = ::read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      cancelled = line.empty();
      break;
    }
    if (c == '\n' || c == '\r')
      break;
    if (!secret) {
      line += c; // the terminal's own line editing applies (canonical mode)
      continue;
    }
    if (c == '\x03' || (c == '\x04' && line.empty())) { // Ctrl-C, Ctrl-D
      cancelled = true;
      break;
    }
    if (c == '\x7f' || c == '\b') {
      if (!line.empty())
        line.pop_back();
    } else if (c == '\x15') { // Ctrl-U
      line.clear();
    } else if (c != '\x04') {
      line += c;
    }
  }
  if (secret)
    std::cerr << '\n' << std::flush; // Enter was not echoed
  if (cancelled)
    throw command_error(secret ? "no password given" : "no user given");
  return line;
}

std::string user_from_env_or_ask() {
  if (auto user = env_value("SMSP_USER"))
    return *user;
  return ask("user: ", false);
}

// With `confirm` (a new account), a password typed on a terminal is asked
// for twice: a typo unseen without echo would lock the account at once.
std::string password_from_env_or_ask(const std::string& user,
                                     bool confirm = false) {
  if (auto password = env_value("SMSP_PASSWORD"))
    return *password;
  auto password = ask("password for " + user + ": ", true);
  if (confirm && ::isatty(STDIN_FILENO) == 1
      && ask("the same again: ", true) != password)
    throw command_error("the two passwords differ (nothing was sent)");
  return password;
}

// -- the session --------------------------------------------------------------

// Whether `reply` says the cookie sent is not a live session: the server
// restarted (sessions are not durable), the user logged in elsewhere or
// logged out. MESSAGE answers with the original protocol's literal.
bool session_gone(std::string_view reply) {
  return reply == "KO not logged in" || reply == "KO not a live session"
         || reply == smsp::reply::log_in_first;
}

// Throws usage_error unless `rest`, what follows the command word, holds as
// many words as `info` takes.
void check_args(const command_info& info, std::string_view rest) {
  auto n = split_words(rest).size();
  if (n < info.min_args || n > info.max_args)
    throw usage_error("usage: " + std::string{info.syntax});
}

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

  // Shows the session's user: after a session expired it is gone again.
  std::string prompt() const {
    return (user_.empty() ? "" : user_ + "@") + endpoint() + "> ";
  }

  bool quit_requested() const {
    return quit_;
  }

  bool logged_in() const {
    return !cookie_.empty();
  }

  // The latest reply of the server, as it came.
  const std::string& last_reply() const {
    return last_reply_;
  }

  // Uses a session started elsewhere (SMSP_COOKIE); `user` may be empty
  // when the commands name theirs.
  void adopt_session(std::string user, std::string cookie) {
    user_ = std::move(user);
    cookie_ = std::move(cookie);
  }

  // Logs in; throws server_refused with the reply when refused.
  void login(const std::string& user, const std::string& password) {
    start_session("LOGIN", user, password);
  }

  // Ends the session, ignoring any failure: used when leaving.
  void logout_quietly() {
    if (cookie_.empty())
      return;
    try {
      call("LOGOUT " + cookie_);
    } catch (const command_error&) {
      // Leaving anyway; the session lapses at the next login or restart.
    }
    user_.clear();
    cookie_.clear();
  }

  // Runs one input line; returns what to print on success (nothing for
  // quit), throws command_error on failure.
  std::optional<std::string> run(std::string_view line) {
    auto [word, rest] = split_first(line);
    auto info = find_command(word);
    if (info == nullptr)
      throw usage_error("unknown command '" + std::string{word}
                        + "' (try help)");
    auto cmd = info->name;
    check_args(*info, rest);
    if (cmd == "raw")
      return raw(rest);
    auto args = split_words(rest);
    if (cmd == "help") {
      if (args.empty())
        return help_list();
      auto about = find_command(args[0]);
      if (about == nullptr)
        throw usage_error("no command '" + args[0] + "' (try help)");
      return help_for(*about);
    }
    if (cmd == "quit") {
      quit_ = true;
      return std::nullopt;
    }
    if (cmd == "register" || cmd == "login") {
      // A missing password is asked for, so it need not be typed on a
      // line; register names its user (it creates it).
      auto user = args.empty() ? user_from_env_or_ask() : args[0];
      auto password = args.size() == 2
                        ? args[1]
                        : password_from_env_or_ask(user, cmd == "register");
      start_session(cmd == "register" ? "REGISTER" : "LOGIN", user, password);
      return cmd == "register" ? "registered and logged in as " + user_
                               : "logged in as " + user_;
    }
    if (cmd == "whoami") {
      return user_.empty() && cookie_.empty() ? "not logged in"
                                              : user_ + " " + cookie_;
    }
    if (cmd == "logout") {
      require_session();
      expect_ok(session_call("LOGOUT " + cookie_));
      auto who = std::exchange(user_, {});
      cookie_.clear();
      return "logged out " + who;
    }
    if (cmd == "message") {
      auto text = text_arg(rest, *info);
      require_session();
      post(text);
      return "message queued";
    }
    if (cmd == "store") {
      require_session();
      expect_ok(session_call("STORE " + args[0] + " " + cookie_));
      return "stored for " + args[0];
    }
    if (cmd == "send") {
      auto [to, after] = split_first(rest);
      auto text = text_arg(after, *info);
      require_session();
      post(text);
      auto reply = session_call("STORE " + std::string{to} + " " + cookie_);
      if (first_word(reply) != "OK")
        // STORE failures leave the text on the queue; say how to retry.
        throw server_refused(reply
                             + " (the message stays queued: "
                               "store <user> delivers it)");
      return "sent to " + std::string{to};
    }
    if (cmd == "count") {
      require_session();
      auto reply = session_call("COUNT " + mailbox(args) + " " + cookie_);
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
      require_session();
      return expect_ok(session_call("GETMSG " + mailbox(args) + " " + cookie_));
    }
    if (cmd == "del") {
      require_session();
      expect_ok(session_call("DELMSG " + mailbox(args) + " " + cookie_));
      return "deleted";
    }
    if (cmd == "dump") {
      expect_ok(call("DUMP"));
      return "dumped (see the server log)";
    }
    throw std::logic_error("command '" + std::string{cmd}
                           + "' has a help row but no code");
  }

private:
  static std::string text_arg(std::string_view rest, const command_info& info) {
    auto text = trim(rest);
    if (text.empty())
      throw usage_error("usage: " + std::string{info.syntax});
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

  // The mailbox a command names: the one given, else the session's user's.
  std::string mailbox(const std::vector<std::string>& args) const {
    if (!args.empty())
      return args[0];
    if (user_.empty())
      throw usage_error("name the mailbox: the session's user is not known "
                        "(set SMSP_USER with SMSP_COOKIE)");
    return user_;
  }

  void require_session() const {
    if (cookie_.empty())
      throw command_error("not logged in (register or login first)");
  }

  void start_session(const char* verb, const std::string& user,
                     const std::string& password) {
    auto reply = call(std::string{verb} + " " + user + " " + password);
    auto cookie = expect_ok(reply);
    if (cookie.empty() || cookie.find(' ') != std::string::npos)
      throw command_error("unexpected reply from the server: " + reply);
    user_ = user;
    cookie_ = std::move(cookie);
  }

  void post(const std::string& text) {
    expect_ok(session_call("MESSAGE " + text + " " + cookie_));
  }

  // A request carrying the session's cookie. When the server says the
  // session is gone (it restarted, or the user logged in elsewhere), the
  // cookie is useless: it is forgotten, so the prompt drops the user and
  // the next command says to log in rather than failing the same way.
  std::string session_call(const std::string& request) {
    auto reply = call(request);
    if (session_gone(reply)) {
      auto who = std::exchange(user_, {});
      cookie_.clear();
      throw server_refused(reply + " (the session"
                           + (who.empty() ? "" : " of " + who)
                           + " expired: the server restarted, or the "
                             "session was ended by a login elsewhere, a "
                             "LOGOUT or an administrator; log in again)");
    }
    return reply;
  }

  std::string raw(std::string_view line) {
    auto reply = call(line);
    auto status = first_word(reply);
    if (status != "OK" && status != "COUNTED")
      throw server_refused(reply);
    return reply;
  }

  void open_connection() {
    try {
      connect();
    } catch (const std::exception& e) {
      throw command_error(std::string{"connection error: "} + e.what()
                          + " (the command was not sent)");
    }
  }

  // One request, one reply, on one connection kept between commands.
  //
  // A command is sent at most once: a request that may have reached the
  // server is never repeated (a repeated MESSAGE would post twice, a
  // repeated DELMSG delete two messages). Before sending, a connection the
  // server closed meanwhile (its --idle-timeout; sessions survive, they are
  // cookies) is replaced: nothing was sent on it. A failed send is retried
  // once on a new connection: the request's LF is its last byte, so a send
  // that failed never delivered a complete request, and the server never
  // applies a partial one. Once sent, a missing reply (the connection closed
  // or timed out) leaves the outcome unknown: the connection is dropped
  // (later replies could not be matched to their requests) and the error
  // says so. The client sends LF, so a '\r' at the end of a reply is the
  // text's own.
  std::string call(std::string_view request) {
    if (conn_ && conn_->peer_closed())
      conn_.reset();
    bool fresh = !conn_;
    if (!conn_)
      open_connection();
    std::string line{request};
    line += '\n';
    try {
      conn_->send_raw(line);
    } catch (const std::exception& e) {
      conn_.reset();
      if (fresh)
        throw command_error(std::string{"connection error: "} + e.what()
                            + " (the command was not sent)");
      open_connection();
      try {
        conn_->send_raw(line);
      } catch (const std::exception& again) {
        conn_.reset();
        throw command_error(std::string{"connection error: "} + again.what()
                            + " (the command was not sent)");
      }
    }
    try {
      auto reply = conn_->read_reply(smsp::terminator::lf);
      if (!reply)
        throw std::runtime_error("the server closed the connection before "
                                 "replying");
      last_reply_ = *reply;
      return *reply;
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
      throw command_error(std::string{"connection error: "} + e.what()
                          + "; the command was sent, so whether the server "
                            "carried it out is unknown (not sent again)");
    }
  }

  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  size_t max_text_;
  std::unique_ptr<smsp::line_client> conn_;
  std::string user_;
  std::string cookie_;
  std::string last_reply_;
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

// -- interactive mode ---------------------------------------------------------

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

// Lines holding passwords never reach the history, not even via raw (a
// login or register line without its password is left out as well: one
// rule that cannot be got wrong).
bool keep_in_history(std::string_view line) {
  auto [word, rest] = split_first(line);
  auto cmd = lowercase(word);
  if (cmd == "raw")
    cmd = lowercase(split_first(rest).first);
  return cmd != "register" && cmd != "login";
}

// The first line of a libedit history file.
constexpr std::string_view history_cookie = "_HiStOrY_V2_\n";

// The history kept in memory is bounded; the file is cut back to it when it
// has grown to twice that.
constexpr int history_size = 1000;

// The history file, shared by every client of the user: each line typed is
// appended to it at once, with one write() on a descriptor opened with
// O_APPEND, so clients running at the same time add their lines between
// each other's instead of each overwriting the file with its own history
// (libedit's H_SAVE, the old write_history, rewrites the whole file).
class history_file {
public:
  history_file(History* hist, std::string path)
    : hist_(hist), path_(std::move(path)) {
    if (path_.empty())
      return;
    // Created private to the user: texts typed here are mail. Only the
    // client that creates it writes the header libedit's H_LOAD expects.
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND,
                    0600);
    if (fd >= 0) {
      write_all(fd, history_cookie);
      ::close(fd);
    } else if (errno != EEXIST) {
      path_.clear();
      return;
    }
    HistEvent ev;
    int loaded = ::history(hist_, &ev, H_LOAD, path_.c_str());
    if (loaded > 2 * history_size)
      trim_file();
  }

  // Adds `line` to the history in memory and appends it to the file.
  void add(const std::string& line) {
    HistEvent ev;
    ::history(hist_, &ev, H_ENTER, line.c_str());
    if (path_.empty())
      return;
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND);
    if (fd < 0) {
      path_.clear(); // gone or unwritable: keep the history in memory only
      return;
    }
    write_all(fd, encode(line));
    ::close(fd);
  }

private:
  // A line as libedit stores it (strvis with VIS_WHITE, read back by
  // strunvis): a byte that is not printable ASCII, a blank or a backslash
  // becomes a backslash and three octal digits.
  static std::string encode(const std::string& line) {
    std::string out;
    for (unsigned char c : line) {
      if (c > 0x20 && c < 0x7F && c != '\\') {
        out += static_cast<char>(c);
      } else {
        out += '\\';
        out += static_cast<char>('0' + (c >> 6));
        out += static_cast<char>('0' + ((c >> 3) & 7));
        out += static_cast<char>('0' + (c & 7));
      }
    }
    return out + '\n';
  }

  static void write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::write(fd, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return; // the history is a convenience: a full disk is not fatal
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Rewrites the file with the history in memory (its newest lines), via a
  // new file renamed over it. A line another client appends meanwhile may
  // be lost: this happens once per history_size lines.
  void trim_file() {
    auto tmp = path_ + ".new";
    HistEvent ev;
    if (::history(hist_, &ev, H_SAVE, tmp.c_str()) < 0
        || ::rename(tmp.c_str(), path_.c_str()) != 0)
      ::unlink(tmp.c_str());
  }

  History* hist_;
  std::string path_;
};

std::string current_prompt;

char* prompt_text(EditLine*) {
  return current_prompt.data();
}

// Ctrl-C at the prompt: empties the line being typed and stays at the
// prompt. The terminal's signal keys are off while libedit reads (see
// run_interactive), so Ctrl-C reaches it as a key instead of ending the
// client.
unsigned char clear_line(EditLine* el, int) {
  auto line = el_line(el);
  el_cursor(el, static_cast<int>(line->lastchar - line->cursor));
  line = el_line(el);
  el_deletestr(el, static_cast<int>(line->cursor - line->buffer));
  return CC_REDISPLAY;
}

int run_interactive(shell& sh, const printer& print) {
  std::unique_ptr<History, void (*)(History*)> hist{::history_init(),
                                                    ::history_end};
  std::unique_ptr<EditLine, void (*)(EditLine*)> el{
    el_init("smsp-client", stdin, stdout, stderr), el_end};
  if (!hist || !el) {
    print.err("smsp-client: cannot start the line editor");
    return exit_failure;
  }
  HistEvent ev;
  ::history(hist.get(), &ev, H_SETSIZE, history_size);
  ::history(hist.get(), &ev, H_SETUNIQUE, 1);
  el_set(el.get(), EL_EDITOR, "emacs");
  el_set(el.get(), EL_PROMPT, prompt_text);
  el_set(el.get(), EL_HIST, ::history, hist.get());
  el_set(el.get(), EL_SIGNAL, 1);
  // The wide call: the narrow EL_ADDFN copies both strings and never frees
  // them (a leak libedit's own source notes); these are static.
  el_wset(el.get(), EL_ADDFN, L"smsp-clear-line", L"Clear the line",
          clear_line);
  el_set(el.get(), EL_BIND, "^C", "smsp-clear-line", nullptr);
  el_set(el.get(), EL_SETTY, "-d", "-isig", nullptr);
  el_source(el.get(), nullptr); // the user's ~/.editrc, as readline did
  history_file history{hist.get(), history_path()};
  print.out("Connected to " + sh.endpoint()
            + ". Type help for commands, quit to leave.");
  while (!sh.quit_requested()) {
    current_prompt = sh.prompt();
    int count = 0;
    const char* input = el_gets(el.get(), &count);
    if (input == nullptr || count <= 0) {
      std::cout << std::endl;
      break;
    }
    std::string line{input};
    if (!line.empty() && line.back() == '\n')
      line.pop_back();
    if (skip_line(line))
      continue;
    if (keep_in_history(line))
      history.add(line);
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

// -- one-shot mode ------------------------------------------------------------

// `smsp-client [options] COMMAND ARGS...`: one protocol request, its reply
// printed as it came (stdout on success, stderr on failure), the exit status
// from it. A command that needs a session uses SMSP_COOKIE when set, else
// logs in (SMSP_USER or the mailbox the command names, SMSP_PASSWORD or a
// prompt) and logs out again afterwards.
int run_one_shot(shell& sh, const printer& print,
                 const std::vector<std::string>& words) {
  auto fail = [&](const std::string& why, int status) {
    print.err("smsp-client: " + why);
    return status;
  };
  if (words[0].size() > 1 && words[0][0] == '-')
    return fail("unknown option " + words[0]
                  + " (options go before the command; see --help)",
                exit_usage);
  for (auto& word : words)
    if (word.find_first_of("\r\n") != std::string::npos)
      return fail("an argument holds a line break (a request is one line)",
                  exit_usage);
  auto info = find_command(words[0]);
  if (info == nullptr || !(info->one_shot || info->name == "help"))
    return fail("'" + words[0]
                  + "' is not a command to run from the command line: "
                    "REGISTER, LOGIN, LOGOUT, MESSAGE, STORE, COUNT, GETMSG, "
                    "DELMSG, DUMP or help (see --help)",
                exit_usage);
  std::string rest;
  for (size_t i = 1; i < words.size(); ++i)
    rest += (i > 1 ? " " : "") + words[i];
  try {
    check_args(*info, rest);
  } catch (const usage_error& e) {
    return fail(e.what(), exit_usage);
  }
  auto line = words[0] + " " + rest;
  if (info->name == "help") {
    print.out(*sh.run(line));
    return 0;
  }
  auto cmd = info->name;
  bool needs_session = cmd != "register" && cmd != "login" && cmd != "dump";
  bool own_session = false;
  try {
    sh.connect();
  } catch (const std::exception& e) {
    return fail(e.what(), exit_failure);
  }
  try {
    if (needs_session) {
      auto user = env_value("SMSP_USER");
      if (auto cookie = env_value("SMSP_COOKIE")) {
        sh.adopt_session(user.value_or(""), *cookie);
      } else {
        // COUNT alice: alice's own mailbox, so log in as alice.
        bool names_mailbox = cmd == "count" || cmd == "get" || cmd == "del";
        if (!user && names_mailbox && words.size() == 2)
          user = words[1];
        if (!user)
          user = user_from_env_or_ask();
        try {
          sh.login(*user, password_from_env_or_ask(*user));
        } catch (const server_refused& e) {
          return fail(std::string{"LOGIN as "} + *user + ": " + e.what(),
                      exit_failure);
        }
        own_session = true;
      }
    }
    sh.run(line);
    print.out(sh.last_reply());
  } catch (const usage_error& e) {
    if (own_session)
      sh.logout_quietly();
    return fail(e.what(), exit_usage);
  } catch (const command_error& e) {
    if (own_session)
      sh.logout_quietly();
    return fail(e.what(), exit_failure);
  }
  if (own_session && cmd != "logout")
    sh.logout_quietly();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{
    "smsp-client: talk to an SMSP mail server.\n"
    "  smsp-client [options]                  interactive on a terminal; "
    "else one command per stdin line, stopping at the first failure\n"
    "  smsp-client [options] COMMAND ARGS...  one request: the protocol's "
    "form without the cookie, e.g. COUNT alice, MESSAGE hi there, STORE "
    "bob, REGISTER alice [PASSWORD], GETMSG alice, DELMSG alice, LOGOUT, "
    "DUMP; prints the server's reply\n"
    "Received text reaches a terminal escaped (see --escape), a pipe or "
    "file byte for byte."};
  app.footer(
    "The cookie: a one-shot command that needs one takes SMSP_COOKIE when "
    "set (e.g. the one printed by LOGIN, or by whoami in the interactive "
    "client, which remembers the cookie of its last login or register); "
    "else it logs in as SMSP_USER (for COUNT, GETMSG and DELMSG, by default "
    "the user it names) with SMSP_PASSWORD, asking for what is missing (a "
    "password without echo; from stdin when that is not a terminal), and "
    "logs out afterwards. Logging in ends the user's other session.\n"
    "Exit status: 0 for a reply OK or COUNTED; 1 for any other reply "
    "(KO ..., 'You should log in first.'), a failed login, or no "
    "connection; 2 for a usage error (bad option, unknown command, wrong "
    "number of arguments). A command whose reply was lost is not sent "
    "again: the client says its outcome is unknown.\n"
    "Interactive: help lists the commands, help COMMAND explains one; "
    "Ctrl-C clears the line, Ctrl-D or quit leaves; the history is in "
    "~/.smsp_client_history (register and login lines are never kept).");
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  double timeout_s = 30;
  app.add_option("--host", host, "server host")->capture_default_str();
  app.add_option("--port,-p", port, "server port")
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
  // Everything from the first word that is not an option on is the
  // one-shot command: its words are never taken for options.
  app.prefix_command();
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
  auto words = app.remaining();
  if (!words.empty())
    return run_one_shot(sh, print, words);
  try {
    sh.connect();
  } catch (const std::exception& e) {
    print.err(std::string{"smsp-client: "} + e.what());
    return exit_failure;
  }
  return isatty(0) ? run_interactive(sh, print) : run_script(sh, print);
}
