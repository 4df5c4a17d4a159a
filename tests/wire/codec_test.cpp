// Catch2 tests of the pure SMSP wire codec (net/codec) against PROTOCOL.md.
#include <catch2/catch.hpp>

#include "net/wire/codec.hpp"
#include "net/wire/replies.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace smsp;
using namespace std::string_literals;

namespace {

constexpr size_t max_request = 64 * 1024; // 65536, terminator included
constexpr size_t max_text = 16 * 1024;    // 16384

const char* term_name(terminator t) {
  switch (t) {
    case terminator::lf:
      return "lf";
    case terminator::crlf:
      return "crlf";
    case terminator::nul:
      return "nul";
  }
  return "?";
}

std::string escape(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  return out;
}

// A compact, exact description of a frame, so that vectors of frames can be
// compared with readable failure output even for 64 KiB lines.
std::string describe(const frame& f) {
  std::string s = term_name(f.term);
  if (f.too_long)
    s += " TOO_LONG";
  s += " [" + std::to_string(f.line.size()) + "] ";
  if (f.line.size() <= 120)
    s += escape(f.line);
  else
    s += escape(f.line.substr(0, 60)) + "...#"
         + std::to_string(std::hash<std::string>{}(f.line));
  return s;
}

std::vector<std::string> describe(const std::vector<frame>& frames) {
  std::vector<std::string> out;
  for (auto& f : frames)
    out.push_back(describe(f));
  return out;
}

// Feeds `bytes` in chunks of `chunk` bytes (0 = all at once).
std::vector<frame> feed_chunks(framer& fr, std::string_view bytes,
                               size_t chunk = 0) {
  std::vector<frame> out;
  if (chunk == 0)
    chunk = bytes.size();
  for (size_t pos = 0; pos < bytes.size(); pos += chunk)
    fr.feed(bytes.data() + pos, std::min(chunk, bytes.size() - pos), out);
  return out;
}

std::vector<frame> frames_of(std::string_view bytes, size_t chunk = 0) {
  framer fr;
  return feed_chunks(fr, bytes, chunk);
}

frame lf_frame(std::string line) {
  frame f;
  f.line = std::move(line);
  f.term = terminator::lf;
  return f;
}

parse_result parse_line(std::string line, const wire_limits& limits = {}) {
  return parse(lf_frame(std::move(line)), limits);
}

// The reply a line gets at the codec level: "" for a well-formed request,
// otherwise the error reply.
std::string reply_to(std::string line, const wire_limits& limits = {}) {
  auto res = parse_line(std::move(line), limits);
  if (auto err = std::get_if<parse_error>(&res))
    return reply::failure(*err);
  return "";
}

request parse_ok(std::string line) {
  auto res = parse_line(line);
  INFO("line: " << escape(line));
  if (auto err = std::get_if<parse_error>(&res))
    FAIL("unexpected parse error: " << reply::failure(*err));
  return std::get<request>(res);
}

std::string encoded(std::string_view reply, terminator term) {
  std::vector<char> out;
  encode_reply(reply, term, out);
  return std::string(out.begin(), out.end());
}

// The spec's command table, written out independently of net/codec.cpp.
struct expected_command {
  command cmd;
  const char* word;
  size_t args;
  bool needs_session;
  const char* usage;
};

const std::vector<expected_command>& spec_commands() {
  static const std::vector<expected_command> cmds{
    {command::register_user, "REGISTER", 2, false,
     "KO usage: REGISTER <username> <password>"},
    {command::login, "LOGIN", 2, false,
     "KO usage: LOGIN <username> <password>"},
    {command::logout, "LOGOUT", 1, true, "KO usage: LOGOUT <cookie>"},
    {command::message, "MESSAGE", 2, true, "KO usage: MESSAGE <text> <cookie>"},
    {command::store, "STORE", 2, true, "KO usage: STORE <username> <cookie>"},
    {command::count, "COUNT", 2, true, "KO usage: COUNT <username> <cookie>"},
    {command::getmsg, "GETMSG", 2, true,
     "KO usage: GETMSG <username> <cookie>"},
    {command::delmsg, "DELMSG", 2, true,
     "KO usage: DELMSG <username> <cookie>"},
    {command::dump, "DUMP", 0, false, "KO usage: DUMP"},
  };
  return cmds;
}

std::string repeat(char c, size_t n) {
  return std::string(n, c);
}

} // namespace

// -- command table ------------------------------------------------------------

TEST_CASE("the command table matches the spec", "[codec]") {
  auto& table = command_table();
  auto& spec = spec_commands();
  REQUIRE(table.size() == spec.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    INFO("command " << spec[i].word);
    CHECK(table[i].cmd == spec[i].cmd);
    CHECK(table[i].name == spec[i].word);
    CHECK(table[i].args == spec[i].args);
    CHECK(table[i].needs_session == spec[i].needs_session);
    CHECK("KO usage: " + std::string{table[i].usage} == spec[i].usage);
    CHECK(find_command(spec[i].word) == &table[i]);
  }
}

TEST_CASE("find_command matches whole words only, in any case", "[codec]") {
  CHECK(find_command("register") != nullptr);
  CHECK(find_command("rEgIsTeR") == find_command("REGISTER"));
  CHECK(find_command("") == nullptr);
  CHECK(find_command("REG") == nullptr);
  CHECK(find_command("REGISTERX") == nullptr);
  CHECK(find_command("DUMP ") == nullptr);
  CHECK(find_command("MSG") == nullptr);
  CHECK(find_command("GET") == nullptr);
  CHECK(find_command("\xff\xfe") == nullptr);
}

// -- parsing: every command ---------------------------------------------------

TEST_CASE("REGISTER and LOGIN parse username and password", "[codec]") {
  auto r = parse_ok("REGISTER alice s3cret");
  CHECK(r.cmd() == command::register_user);
  CHECK(r.args == std::vector<std::string>{"alice", "s3cret"});
  CHECK_FALSE(r.spec->needs_session);

  auto l = parse_ok("LOGIN bob hunter22");
  CHECK(l.cmd() == command::login);
  CHECK(l.args == std::vector<std::string>{"bob", "hunter22"});
  CHECK_FALSE(l.spec->needs_session);

  // The codec does not judge names or passwords: the actors do.
  auto odd = parse_ok("REGISTER al!ce p\x01ss");
  CHECK(odd.args == std::vector<std::string>{"al!ce", "p\x01ss"});
}

TEST_CASE("LOGOUT parses its cookie", "[codec]") {
  auto r = parse_ok("LOGOUT 9f0c1e7a5b2d48c6a1e3f5d7b9c0a2e4");
  CHECK(r.cmd() == command::logout);
  CHECK(r.args == std::vector<std::string>{"9f0c1e7a5b2d48c6a1e3f5d7b9c0a2e4"});
  CHECK(r.cookie() == "9f0c1e7a5b2d48c6a1e3f5d7b9c0a2e4");
  CHECK(r.spec->needs_session);
}

TEST_CASE("MESSAGE parses text and cookie", "[codec]") {
  auto r = parse_ok("MESSAGE hello bob, lunch at noon? ck");
  CHECK(r.cmd() == command::message);
  REQUIRE(r.args.size() == 2);
  CHECK(r.args[0] == "hello bob, lunch at noon?");
  CHECK(r.args[1] == "ck");
  CHECK(r.cookie() == "ck");
  CHECK(r.spec->needs_session);

  auto one = parse_ok("MESSAGE hi ck");
  CHECK(one.args == std::vector<std::string>{"hi", "ck"});
}

TEST_CASE("STORE, COUNT, GETMSG, DELMSG parse username and cookie", "[codec]") {
  struct row {
    const char* word;
    command cmd;
  };
  for (auto [word, cmd] :
       {row{"STORE", command::store}, row{"COUNT", command::count},
        row{"GETMSG", command::getmsg}, row{"DELMSG", command::delmsg}}) {
    INFO(word);
    auto r = parse_ok(std::string{word} + " bob 0d3a55");
    CHECK(r.cmd() == cmd);
    CHECK(r.args == std::vector<std::string>{"bob", "0d3a55"});
    CHECK(r.cookie() == "0d3a55");
    CHECK(r.spec->needs_session);
  }
}

TEST_CASE("DUMP parses with no arguments", "[codec]") {
  auto r = parse_ok("DUMP");
  CHECK(r.cmd() == command::dump);
  CHECK(r.args.empty());
  CHECK_FALSE(r.spec->needs_session);
}

TEST_CASE("wrong token counts get KO usage with the command's form",
          "[codec]") {
  struct row {
    const char* line;
    const char* reply;
  };
  std::vector<row> rows{
    {"REGISTER", "KO usage: REGISTER <username> <password>"},
    {"REGISTER alice", "KO usage: REGISTER <username> <password>"},
    {"REGISTER alice pw extra", "KO usage: REGISTER <username> <password>"},
    {"LOGIN", "KO usage: LOGIN <username> <password>"},
    {"LOGIN alice", "KO usage: LOGIN <username> <password>"},
    {"LOGIN alice pw extra", "KO usage: LOGIN <username> <password>"},
    {"LOGOUT", "KO usage: LOGOUT <cookie>"},
    {"LOGOUT ck extra", "KO usage: LOGOUT <cookie>"},
    {"MESSAGE", "KO usage: MESSAGE <text> <cookie>"},
    {"MESSAGE ck", "KO usage: MESSAGE <text> <cookie>"},
    {"MESSAGE    ck   ", "KO usage: MESSAGE <text> <cookie>"},
    {"STORE", "KO usage: STORE <username> <cookie>"},
    {"STORE bob", "KO usage: STORE <username> <cookie>"},
    {"STORE bob ck extra", "KO usage: STORE <username> <cookie>"},
    {"COUNT", "KO usage: COUNT <username> <cookie>"},
    {"COUNT bob", "KO usage: COUNT <username> <cookie>"},
    {"COUNT bob ck extra", "KO usage: COUNT <username> <cookie>"},
    {"GETMSG", "KO usage: GETMSG <username> <cookie>"},
    {"GETMSG bob", "KO usage: GETMSG <username> <cookie>"},
    {"GETMSG bob ck extra", "KO usage: GETMSG <username> <cookie>"},
    {"DELMSG", "KO usage: DELMSG <username> <cookie>"},
    {"DELMSG bob", "KO usage: DELMSG <username> <cookie>"},
    {"DELMSG bob ck extra", "KO usage: DELMSG <username> <cookie>"},
    {"DUMP x", "KO usage: DUMP"},
    {"DUMP x y", "KO usage: DUMP"},
    // The form is always the canonical upper-case one.
    {"dump x", "KO usage: DUMP"},
    {"store bob", "KO usage: STORE <username> <cookie>"},
  };
  for (auto& r : rows) {
    INFO("line: " << r.line);
    auto res = parse_line(r.line);
    auto err = std::get_if<parse_error>(&res);
    REQUIRE(err != nullptr);
    CHECK(err->code == parse_errc::wrong_arity);
    REQUIRE(err->spec != nullptr);
    CHECK(reply::failure(*err) == r.reply);
  }
}

TEST_CASE("command words are case-insensitive", "[codec]") {
  for (auto word : {"getmsg", "GetMsg", "GETMSG", "gETmSG"}) {
    INFO(word);
    auto r = parse_ok(std::string{word} + " bob ck");
    CHECK(r.cmd() == command::getmsg);
    CHECK(r.args == std::vector<std::string>{"bob", "ck"});
  }
  for (auto& c : spec_commands()) {
    std::string lower = c.word;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    INFO(lower);
    CHECK(find_command(lower) != nullptr);
    CHECK(find_command(lower)->cmd == c.cmd);
  }
  // Arguments keep their case: usernames are case-sensitive.
  auto r = parse_ok("login Alice PassWord");
  CHECK(r.args == std::vector<std::string>{"Alice", "PassWord"});
}

TEST_CASE("spaces: leading, trailing and repeated separators", "[codec]") {
  auto r = parse_ok("   STORE    bob     ck   ");
  CHECK(r.cmd() == command::store);
  CHECK(r.args == std::vector<std::string>{"bob", "ck"});

  auto d = parse_ok("  DUMP  ");
  CHECK(d.cmd() == command::dump);
  CHECK(d.args.empty());

  auto reg = parse_ok(" REGISTER  alice  pw");
  CHECK(reg.args == std::vector<std::string>{"alice", "pw"});

  // Only the space is a separator: a tab is part of a token.
  CHECK(reply_to("DUMP\t") == "KO unknown command");
  auto tab = parse_ok("LOGOUT \tck");
  CHECK(tab.args == std::vector<std::string>{"\tck"});
  CHECK(reply_to("STORE bob\tck") == "KO usage: STORE <username> <cookie>");
}

// -- MESSAGE text -------------------------------------------------------------

TEST_CASE("MESSAGE text keeps inner spacing and drops separators", "[codec]") {
  auto r = parse_ok("MESSAGE  a  b   c  ck");
  CHECK(r.args == std::vector<std::string>{"a  b   c", "ck"});

  auto lead = parse_ok("   message     x    y     ck    ");
  CHECK(lead.args == std::vector<std::string>{"x    y", "ck"});

  // Punctuation and the other commands' words are just text.
  auto words = parse_ok("MESSAGE STORE bob ck2 DUMP ck");
  CHECK(words.args == std::vector<std::string>{"STORE bob ck2 DUMP", "ck"});
}

TEST_CASE("MESSAGE text length limit", "[codec]") {
  std::string ok_text = repeat('x', max_text);
  auto r = parse_ok("MESSAGE " + ok_text + " ck");
  CHECK(r.args[0].size() == max_text);
  CHECK(r.args[0] == ok_text);
  CHECK(r.args[1] == "ck");

  // The limit counts text bytes, not separators around it.
  auto spaced = parse_ok("MESSAGE      " + ok_text + "      ck");
  CHECK(spaced.args[0] == ok_text);

  // Inner spaces count.
  std::string inner = "a" + repeat(' ', max_text - 2) + "b";
  auto in = parse_ok("MESSAGE " + inner + " ck");
  CHECK(in.args[0] == inner);

  auto res = parse_line("MESSAGE " + repeat('x', max_text + 1) + " ck");
  auto err = std::get_if<parse_error>(&res);
  REQUIRE(err != nullptr);
  CHECK(err->code == parse_errc::text_too_long);
  CHECK(reply::failure(*err) == "KO message text too long");

  std::string inner_long = "a" + repeat(' ', max_text - 1) + "b";
  CHECK(reply_to("MESSAGE " + inner_long + " ck")
        == "KO message text too long");

  // A configured limit is honoured.
  wire_limits small;
  small.max_text = 5;
  CHECK(reply_to("MESSAGE abcde ck", small).empty());
  CHECK(reply_to("MESSAGE a b c ck", small).empty());
  CHECK(reply_to("MESSAGE abcdef ck", small) == "KO message text too long");
}

TEST_CASE("MESSAGE text keeps binary bytes exactly", "[codec]") {
  std::string text = "a\x01"
                     "b\xff"
                     "c\rd\te\x7f"
                     "f\x80";
  auto r = parse_ok("MESSAGE " + text + " ck");
  CHECK(r.args[0] == text);
  CHECK(r.args[1] == "ck");

  // Every byte value except the terminators and the space.
  std::string all;
  for (int c = 1; c < 256; ++c)
    if (c != '\n' && c != ' ')
      all += static_cast<char>(c);
  auto full = parse_ok("MESSAGE x " + all + " y ck");
  CHECK(full.args[0] == "x " + all + " y");

  // Through the framer too: a CR in the middle is not a terminator.
  auto frames = frames_of("MESSAGE a\rb\t\x01\xff ck\r\n");
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].term == terminator::crlf);
  auto res = parse(frames[0]);
  REQUIRE(std::holds_alternative<request>(res));
  CHECK(std::get<request>(res).args[0] == "a\rb\t\x01\xff");
}

// -- framing ------------------------------------------------------------------

TEST_CASE("LF, CRLF and NUL terminators are recognised and recorded",
          "[codec]") {
  auto lf = frames_of("DUMP\n");
  REQUIRE(lf.size() == 1);
  CHECK(lf[0].line == "DUMP");
  CHECK(lf[0].term == terminator::lf);
  CHECK_FALSE(lf[0].too_long);

  auto crlf = frames_of("DUMP\r\n");
  REQUIRE(crlf.size() == 1);
  CHECK(crlf[0].line == "DUMP");
  CHECK(crlf[0].term == terminator::crlf);

  auto nul = frames_of("DUMP"s + '\0');
  REQUIRE(nul.size() == 1);
  CHECK(nul[0].line == "DUMP");
  CHECK(nul[0].term == terminator::nul);

  // A CR before a NUL is content, not part of the terminator.
  auto crnul = frames_of("DUMP\r"s + '\0');
  REQUIRE(crnul.size() == 1);
  CHECK(crnul[0].line == "DUMP\r");
  CHECK(crnul[0].term == terminator::nul);

  // Only the last CR belongs to a CRLF.
  auto crcr = frames_of("DUMP\r\r\n");
  REQUIRE(crcr.size() == 1);
  CHECK(crcr[0].line == "DUMP\r");
  CHECK(crcr[0].term == terminator::crlf);
}

TEST_CASE("a lone CR is not a terminator", "[codec]") {
  framer fr;
  std::vector<frame> out;
  std::string bytes = "DUMP\rDUMP\r";
  fr.feed(bytes.data(), bytes.size(), out);
  CHECK(out.empty());
  CHECK(fr.buffered() == bytes.size());
  fr.feed("\n", 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].line == "DUMP\rDUMP");
  CHECK(out[0].term == terminator::crlf);
  CHECK(fr.buffered() == 0);

  // A CR followed by something else stays in the line.
  auto f = frames_of("LOGOUT a\rb\n");
  REQUIRE(f.size() == 1);
  CHECK(f[0].line == "LOGOUT a\rb");
  CHECK(f[0].term == terminator::lf);
}

TEST_CASE("many requests in one chunk", "[codec]") {
  std::string bytes = "REGISTER alice pw\nLOGIN alice pw\r\nDUMP"s + '\0'
                      + "\n\r\nCOUNT alice ck\n";
  auto frames = frames_of(bytes);
  REQUIRE(frames.size() == 6);
  CHECK(describe(frames)
        == std::vector<std::string>{
          "lf [17] REGISTER alice pw", "crlf [14] LOGIN alice pw",
          "nul [4] DUMP", "lf [0] ", "crlf [0] ", "lf [14] COUNT alice ck"});
  CHECK(reply_to(frames[3].line) == "KO empty request");
  CHECK(reply_to(frames[4].line) == "KO empty request");
}

TEST_CASE("a request split over many chunks", "[codec]") {
  framer fr;
  std::vector<frame> out;
  for (std::string part : {"MES", "SAGE hel", "lo  wor", "ld c", "k"}) {
    fr.feed(part.data(), part.size(), out);
    CHECK(out.empty());
  }
  CHECK(fr.buffered() == "MESSAGE hello  world ck"s.size());
  fr.feed("\nDU", 3, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].line == "MESSAGE hello  world ck");
  CHECK(fr.buffered() == 2);
  fr.feed("MP\n", 3, out);
  REQUIRE(out.size() == 2);
  CHECK(out[1].line == "DUMP");
  CHECK(fr.buffered() == 0);

  // Empty feeds change nothing.
  fr.feed("", 0, out);
  fr.feed(nullptr, 0, out);
  CHECK(out.size() == 2);
}

TEST_CASE("CRLF split across two chunks gives crlf", "[codec]") {
  framer fr;
  std::vector<frame> out;
  fr.feed("LOGOUT ck\r", 10, out);
  CHECK(out.empty());
  fr.feed("\nDUMP\r", 6, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].line == "LOGOUT ck");
  CHECK(out[0].term == terminator::crlf);
  fr.feed("\n", 1, out);
  REQUIRE(out.size() == 2);
  CHECK(out[1].line == "DUMP");
  CHECK(out[1].term == terminator::crlf);

  // A CR at a chunk end followed by a NUL: the CR is content.
  fr.feed("DUMP\r", 5, out);
  fr.feed("\0", 1, out);
  REQUIRE(out.size() == 3);
  CHECK(out[2].line == "DUMP\r");
  CHECK(out[2].term == terminator::nul);
}

namespace {

struct generated_session {
  std::string bytes;
  std::vector<std::string> expected; // describe() of each frame
};

// A pipelined session of random requests: random command words and case,
// random spacing, random terminators, binary text, empty and oversized lines.
generated_session generate_session(std::mt19937& rng, size_t requests) {
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> words{
    "REGISTER", "login",  "LogOut", "MESSAGE", "store", "COUNT",
    "getmsg",   "DelMsg", "DUMP",   "FROB",    "",
  };
  generated_session s;
  for (size_t i = 0; i < requests; ++i) {
    std::string line;
    auto kind = pick(20);
    if (kind == 0) {
      // Oversized: well above the limit, sometimes just above.
      size_t n = pick(2) == 0 ? max_request + pick(3) : 70000 + pick(100000);
      line = repeat('z', n);
    } else {
      line = repeat(' ', pick(3)) + words[pick(words.size())];
      auto tokens = pick(5);
      for (size_t t = 0; t < tokens; ++t) {
        line += repeat(' ', 1 + pick(3));
        auto len = 1 + pick(12);
        for (size_t b = 0; b < len; ++b) {
          char c;
          do {
            c = static_cast<char>(rng() & 0xff);
          } while (c == '\n' || c == '\0' || c == ' ');
          line += c;
        }
      }
      line += repeat(' ', pick(3));
    }
    frame f;
    auto t = pick(3);
    std::string tail;
    if (t == 0) {
      f.term = terminator::lf;
      tail = "\n";
      // Content ending in CR would make this a CRLF.
      if (!line.empty() && line.back() == '\r')
        line.back() = 'r';
    } else if (t == 1) {
      f.term = terminator::crlf;
      tail = "\r\n";
    } else {
      f.term = terminator::nul;
      tail = std::string(1, '\0');
    }
    if (line.size() + tail.size() > max_request)
      f.too_long = true;
    else
      f.line = line;
    s.bytes += line + tail;
    s.expected.push_back(describe(f));
  }
  // A trailing unfinished request yields no frame.
  s.bytes += "DUMP";
  return s;
}

} // namespace

TEST_CASE("byte-at-a-time, random chunks and one chunk give the same frames",
          "[codec]") {
  std::mt19937 rng{20240611};
  for (int round = 0; round < 6; ++round) {
    auto session = generate_session(rng, 60);
    INFO("round " << round << ", " << session.bytes.size() << " bytes");

    auto whole = frames_of(session.bytes);
    CHECK(describe(whole) == session.expected);

    framer bytewise;
    std::vector<frame> one_by_one;
    size_t max_buffered = 0;
    for (char c : session.bytes) {
      bytewise.feed(&c, 1, one_by_one);
      max_buffered = std::max(max_buffered, bytewise.buffered());
    }
    CHECK(describe(one_by_one) == session.expected);
    CHECK(max_buffered <= max_request);
    CHECK(bytewise.buffered() == 4); // the unfinished "DUMP"

    framer random;
    std::vector<frame> chunked;
    for (size_t pos = 0; pos < session.bytes.size();) {
      size_t n = 1 + rng() % 9000;
      n = std::min(n, session.bytes.size() - pos);
      random.feed(session.bytes.data() + pos, n, chunked);
      max_buffered = std::max(max_buffered, random.buffered());
      pos += n;
    }
    CHECK(describe(chunked) == session.expected);
    CHECK(max_buffered <= max_request);
  }
}

// -- limits -------------------------------------------------------------------

TEST_CASE("request length limit: exactly 64 KiB with the terminator",
          "[codec]") {
  // A line of `n` content bytes that parses as a LOGOUT request.
  auto content = [](size_t n) { return "LOGOUT " + repeat('c', n - 7); };
  struct row {
    const char* name;
    std::string tail;
    terminator term;
    size_t max_content;
  };
  for (auto& r :
       {row{"lf", "\n", terminator::lf, max_request - 1},
        row{"crlf", "\r\n", terminator::crlf, max_request - 2},
        row{"nul", std::string(1, '\0'), terminator::nul, max_request - 1}}) {
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{4096}, size_t{65535},
                         size_t{65536}, size_t{7777}}) {
      INFO(r.name << ", chunk " << chunk);
      auto fits = content(r.max_content);
      auto frames = frames_of(fits + r.tail + "DUMP\n", chunk);
      REQUIRE(frames.size() == 2);
      CHECK_FALSE(frames[0].too_long);
      CHECK(frames[0].term == r.term);
      CHECK(frames[0].line.size() == r.max_content);
      CHECK(frames[0].line == fits);
      auto res = parse(frames[0]);
      REQUIRE(std::holds_alternative<request>(res));
      CHECK(std::get<request>(res).cookie().size() == r.max_content - 7);
      CHECK(frames[1].line == "DUMP");

      auto over = content(r.max_content + 1);
      auto big = frames_of(over + r.tail + "DUMP\n", chunk);
      REQUIRE(big.size() == 2);
      CHECK(big[0].too_long);
      CHECK(big[0].line.empty());
      CHECK(big[0].term == r.term);
      auto err = parse(big[0]);
      REQUIRE(std::holds_alternative<parse_error>(err));
      CHECK(std::get<parse_error>(err).code == parse_errc::request_too_long);
      CHECK(reply::failure(std::get<parse_error>(err))
            == "KO request too long");
      CHECK_FALSE(big[1].too_long);
      CHECK(big[1].line == "DUMP");
    }
  }
}

TEST_CASE("a too-long request beats every other check", "[codec]") {
  frame f;
  f.too_long = true;
  f.line = "DUMP"; // never set by the framer, but too_long decides
  auto res = parse(f);
  REQUIRE(std::holds_alternative<parse_error>(res));
  CHECK(reply::failure(std::get<parse_error>(res)) == "KO request too long");

  // A MESSAGE whose line is too long is "request too long", not "text".
  auto frames = frames_of("MESSAGE " + repeat('t', max_request) + " ck\n");
  REQUIRE(frames.size() == 1);
  CHECK(reply::failure(std::get<parse_error>(parse(frames[0])))
        == "KO request too long");
}

TEST_CASE("an oversized request is skipped without buffering", "[codec]") {
  struct row {
    const char* name;
    std::string tail;
    terminator term;
  };
  for (auto& r :
       {row{"lf", "\n", terminator::lf}, row{"crlf", "\r\n", terminator::crlf},
        row{"nul", std::string(1, '\0'), terminator::nul}}) {
    INFO(r.name);
    framer fr;
    std::vector<frame> out;
    size_t max_buffered = 0;
    bool early_frame = false;
    std::string chunk = repeat('A', 4096);
    for (int i = 0; i < 256; ++i) { // 1 MiB, no terminator
      fr.feed(chunk.data(), chunk.size(), out);
      max_buffered = std::max(max_buffered, fr.buffered());
      early_frame = early_frame || !out.empty();
    }
    CHECK_FALSE(early_frame);
    CHECK(max_buffered <= max_request);
    CHECK(fr.buffered() == 0);

    std::string rest = r.tail + "COUNT bob ck\n";
    fr.feed(rest.data(), rest.size(), out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].too_long);
    CHECK(out[0].term == r.term);
    CHECK(reply::failure(std::get<parse_error>(parse(out[0])))
          == "KO request too long");
    // The connection keeps working.
    CHECK_FALSE(out[1].too_long);
    auto next = parse(out[1]);
    REQUIRE(std::holds_alternative<request>(next));
    CHECK(std::get<request>(next).cmd() == command::count);
    CHECK(std::get<request>(next).args
          == std::vector<std::string>{"bob", "ck"});
    CHECK(fr.buffered() == 0);
  }
}

TEST_CASE("an oversized request's terminator is recorded across chunks",
          "[codec]") {
  auto oversized = repeat('B', 100000);

  SECTION("CR at the end of one chunk, LF at the start of the next") {
    framer fr;
    std::vector<frame> out;
    auto first = oversized + "\r";
    fr.feed(first.data(), first.size(), out);
    CHECK(out.empty());
    CHECK(fr.buffered() == 0);
    fr.feed("\nDUMP\n", 6, out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].too_long);
    CHECK(out[0].term == terminator::crlf);
    CHECK(out[1].line == "DUMP");
    CHECK(out[1].term == terminator::lf);
  }
  SECTION("CR alone in a chunk, then LF alone") {
    framer fr;
    std::vector<frame> out;
    fr.feed(oversized.data(), oversized.size(), out);
    fr.feed("\r", 1, out);
    fr.feed("\n", 1, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].too_long);
    CHECK(out[0].term == terminator::crlf);
  }
  SECTION("a CR that ends a chunk but is followed by more bytes") {
    framer fr;
    std::vector<frame> out;
    auto first = oversized + "\r";
    fr.feed(first.data(), first.size(), out);
    fr.feed("x\n", 2, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].too_long);
    CHECK(out[0].term == terminator::lf);
  }
  SECTION("CR then NUL across chunks") {
    framer fr;
    std::vector<frame> out;
    auto first = oversized + "\r";
    fr.feed(first.data(), first.size(), out);
    fr.feed("\0", 1, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].too_long);
    CHECK(out[0].term == terminator::nul);
  }
  SECTION("the overflow starts exactly at a chunk boundary") {
    framer fr;
    std::vector<frame> out;
    auto full = repeat('C', max_request - 1); // fits an LF, nothing more
    fr.feed(full.data(), full.size(), out);
    CHECK(fr.buffered() == max_request - 1);
    fr.feed("\r", 1, out); // now even "\r\n" cannot fit
    CHECK(fr.buffered() <= max_request);
    fr.feed("\n", 1, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].too_long);
    CHECK(out[0].term == terminator::crlf);
  }
  SECTION("two oversized requests in a row, then a normal one") {
    auto bytes = oversized + "\n" + oversized + "\r\n" + "LOGOUT ck" + '\0';
    for (size_t chunk : {size_t{0}, size_t{1000}, size_t{65536}}) {
      INFO("chunk " << chunk);
      auto frames = frames_of(bytes, chunk);
      CHECK(describe(frames)
            == std::vector<std::string>{
              "lf TOO_LONG [0] ", "crlf TOO_LONG [0] ", "nul [9] LOGOUT ck"});
    }
  }
}

TEST_CASE("a configured request limit is honoured", "[codec]") {
  framer fr{10};
  std::vector<frame> out;
  std::string bytes = "123456789\n"   // 10 bytes: fits
                      "12345678\r\n"  // 10 bytes: fits
                      "1234567890\n"  // 11: too long
                      "123456789\r\n" // 11: too long
                      "DUMP\n";
  fr.feed(bytes.data(), bytes.size(), out);
  CHECK(describe(out)
        == std::vector<std::string>{"lf [9] 123456789", "crlf [8] 12345678",
                                    "lf TOO_LONG [0] ", "crlf TOO_LONG [0] ",
                                    "lf [4] DUMP"});

  // A limit below 2 is raised to 2: one byte plus LF still fits.
  framer tiny{0};
  std::vector<frame> t;
  tiny.feed("a\nab\n\n", 6, t);
  CHECK(describe(t)
        == std::vector<std::string>{"lf [1] a", "lf TOO_LONG [0] ", "lf [0] "});
}

// -- empty and unknown --------------------------------------------------------

TEST_CASE("empty requests and unknown commands", "[codec]") {
  for (std::string line : {""s, " "s, "     "s}) {
    INFO("line: '" << line << "'");
    auto res = parse_line(line);
    REQUIRE(std::holds_alternative<parse_error>(res));
    CHECK(std::get<parse_error>(res).code == parse_errc::empty_request);
    CHECK(reply::failure(std::get<parse_error>(res)) == "KO empty request");
  }
  for (auto bytes : {"\n"s, "\r\n"s, std::string(1, '\0'), "   \r\n"s}) {
    auto frames = frames_of(bytes);
    REQUIRE(frames.size() == 1);
    CHECK(reply_to(frames[0].line) == "KO empty request");
  }
  for (std::string line : {"FROB"s, "FROB a b"s, "REG alice pw"s, "\r"s, "\t"s,
                           "DUMPX"s, "\x01\xff"s, "QUIT"s, "HELP"s}) {
    INFO("line: " << escape(line));
    auto res = parse_line(line);
    REQUIRE(std::holds_alternative<parse_error>(res));
    CHECK(std::get<parse_error>(res).code == parse_errc::unknown_command);
    CHECK(reply::failure(std::get<parse_error>(res)) == "KO unknown command");
  }
}

TEST_CASE("the order of checks", "[codec]") {
  // Command word before token count.
  CHECK(reply_to("FROB") == "KO unknown command");
  // Token count before text length.
  CHECK(reply_to("MESSAGE " + repeat('x', max_text + 1))
        == "KO usage: MESSAGE <text> <cookie>");
  // Text length is a parse error: no session is involved yet.
  CHECK(reply_to("MESSAGE " + repeat('x', max_text + 1) + " deadcookie")
        == "KO message text too long");
}

TEST_CASE("error_reply for every parse error", "[codec]") {
  CHECK(reply::failure({parse_errc::empty_request}) == "KO empty request");
  CHECK(reply::failure({parse_errc::request_too_long})
        == "KO request too long");
  CHECK(reply::failure({parse_errc::unknown_command}) == "KO unknown command");
  CHECK(reply::failure({parse_errc::text_too_long, find_command("MESSAGE")})
        == "KO message text too long");
  for (auto& c : spec_commands()) {
    INFO(c.word);
    CHECK(reply::failure({parse_errc::wrong_arity, find_command(c.word)})
          == c.usage);
  }
}

// -- replies ------------------------------------------------------------------

TEST_CASE("terminator_bytes", "[codec]") {
  CHECK(terminator_bytes(terminator::lf) == "\n");
  CHECK(terminator_bytes(terminator::crlf) == "\r\n");
  CHECK(terminator_bytes(terminator::nul) == std::string_view("\0", 1));
  CHECK(terminator_bytes(terminator::nul).size() == 1);
}

TEST_CASE("encode_reply appends the request's terminator", "[codec]") {
  CHECK(encoded("OK", terminator::lf) == "OK\n");
  CHECK(encoded("OK", terminator::crlf) == "OK\r\n");
  CHECK(encoded("OK", terminator::nul) == "OK"s + '\0');
  CHECK(encoded("COUNTED 3", terminator::lf) == "COUNTED 3\n");
  CHECK(encoded("", terminator::crlf) == "\r\n");

  // Appends: earlier replies in the buffer are kept (pipelining).
  std::vector<char> out;
  encode_reply("OK a", terminator::lf, out);
  encode_reply("KO mailbox empty", terminator::crlf, out);
  encode_reply("You should log in first.", terminator::nul, out);
  CHECK(std::string(out.begin(), out.end())
        == "OK a\nKO mailbox empty\r\nYou should log in first."s + '\0');
  // And the framer cuts them back apart.
  auto frames = frames_of(std::string(out.begin(), out.end()));
  CHECK(describe(frames)
        == std::vector<std::string>{"lf [4] OK a", "crlf [16] KO mailbox empty",
                                    "nul [24] You should log in first."});
}

TEST_CASE("encode_reply keeps a reply to exactly one frame", "[codec]") {
  for (auto term : {terminator::lf, terminator::crlf, terminator::nul}) {
    INFO(term_name(term));
    std::string reply = "OK a\nb"s + '\0' + "c\n" + '\0';
    auto bytes = encoded(reply, term);
    CHECK(bytes.size() == reply.size() + terminator_bytes(term).size());
    CHECK(bytes.substr(0, reply.size()) == "OK a?b?c??");
    auto frames = frames_of(bytes);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].term == term);
    CHECK(frames[0].line == "OK a?b?c??");

    // Other bytes, CR and binary included, pass through untouched.
    std::string binary = "OK x\ry\x01\xff\t z";
    CHECK(encoded(binary, term)
          == binary + std::string(terminator_bytes(term)));
    auto bf = frames_of(encoded(binary, term));
    REQUIRE(bf.size() == 1);
    CHECK(bf[0].line == binary);
  }
}

// -- robustness ---------------------------------------------------------------

TEST_CASE("binary garbage never crashes the framer or the parser", "[codec]") {
  std::mt19937 rng{424242};
  size_t total_frames = 0;
  for (int round = 0; round < 40; ++round) {
    framer fr;
    std::vector<frame> frames;
    size_t max_buffered = 0;
    // Biased towards the interesting bytes: terminators, CR and space.
    for (int chunk = 0; chunk < 50; ++chunk) {
      std::string bytes(1 + rng() % (round < 30 ? 300 : 40000), '\0');
      for (auto& b : bytes) {
        auto r = rng() % 16;
        b = r == 0   ? '\n'
            : r == 1 ? '\0'
            : r == 2 ? '\r'
            : r == 3 ? ' '
                     : static_cast<char>(rng() & 0xff);
        if (round >= 30 && (r == 0 || r == 1))
          b = 'L'; // long rounds: mostly oversized requests
      }
      if (round >= 30 && rng() % 4 == 0)
        bytes.back() = '\n';
      fr.feed(bytes.data(), bytes.size(), frames);
      max_buffered = std::max(max_buffered, fr.buffered());
    }
    CHECK(max_buffered <= max_request);
    bool all_ok = true;
    for (auto& f : frames) {
      bool sane = f.line.find('\n') == std::string::npos
                  && f.line.find('\0') == std::string::npos
                  && f.line.size() + terminator_bytes(f.term).size()
                       <= max_request
                  && (!f.too_long || f.line.empty());
      auto res = parse(f);
      if (auto req = std::get_if<request>(&res)) {
        sane = sane && req->spec != nullptr
               && req->args.size() == req->spec->args;
        for (size_t i = 0; i < req->args.size(); ++i) {
          auto& a = req->args[i];
          bool text = req->cmd() == command::message && i == 0;
          sane = sane && !a.empty() && a.front() != ' ' && a.back() != ' '
                 && (text || a.find(' ') == std::string::npos);
        }
      } else {
        auto reply = reply::failure(std::get<parse_error>(res));
        sane = sane && reply.rfind("KO ", 0) == 0;
        auto enc = encoded(reply, f.term);
        sane = sane && frames_of(enc).size() == 1;
      }
      if (!sane) {
        all_ok = false;
        FAIL_CHECK("bad frame: " << describe(f));
      }
    }
    CHECK(all_ok);
    total_frames += frames.size();
  }
  CHECK(total_frames > 1000);
}

TEST_CASE("every reply without a message text fits max_short_bytes",
          "[replies]") {
  auto fits = [](std::string_view line) {
    // The longest terminator is CRLF.
    return line.size() + 2 <= reply::max_short_bytes;
  };
  CHECK(fits(reply::ok));
  CHECK(fits(reply::log_in_first));
  CHECK(fits(reply::internal_error));
  CHECK(fits(reply::counted(UINT64_MAX)));
  // A cookie: 32 hex digits.
  CHECK(fits(reply::ok_with(std::string(32, 'f'))));
  for (auto code = static_cast<int>(errc::not_logged_in);
       code <= static_cast<int>(errc::mailbox_unavailable); ++code) {
    auto text = reply::failure(static_cast<errc>(code));
    CHECK(fits(text));
    CHECK(text.substr(0, 3) == "KO ");
    CHECK(text != reply::internal_error);
  }
  for (auto code : {parse_errc::empty_request, parse_errc::request_too_long,
                    parse_errc::unknown_command, parse_errc::text_too_long})
    CHECK(fits(reply::failure(parse_error{code})));
  for (auto& spec : command_table())
    CHECK(fits(reply::failure(parse_error{parse_errc::wrong_arity, &spec})));
  // MESSAGE alone answers a missing session with the original literal.
  CHECK(reply::failure(errc::not_logged_in, command::message)
        == reply::log_in_first);
  CHECK(reply::failure(errc::not_logged_in, command::count)
        == "KO not logged in");
  CHECK(reply::max_text_bytes(16)
        == reply::ok_with(std::string(16, 'x')).size() + 2);
}
