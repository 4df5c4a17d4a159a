// libFuzzer target for the pure wire codec (net/wire): framer, parse,
// reply::failure and encode_reply, checked against invariants and a reference.
//
// Every input is used three ways:
//  - as a byte stream fed to the framer in one chunk, byte by byte, and in
//    chunks whose sizes come from the input's own bytes (read from the end),
//    under the default limits and under a small limit taken from the input,
//    so that CRLFs and oversized requests split across chunks are exercised;
//  - each frame is parsed (twice), answered and encoded;
//  - the whole input is encoded as one reply (it may hold terminator bytes).
// A violated invariant calls __builtin_trap(), which libFuzzer reports as a
// crash and saves as a crash-* file. Built without libFuzzer (replay_main.cpp)
// the same checks run over the committed corpus as an ordinary test.
#include "net/wire/codec.hpp"
#include "net/wire/replies.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

using namespace smsp;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "codec_fuzz: invariant violated: %s\n", what);
  std::fflush(stderr);
  __builtin_trap();
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      fail(#cond);                                                             \
  } while (false)

bool is_term_byte(char c) {
  return c == '\n' || c == '\0';
}

bool same_frame(const frame& a, const frame& b) {
  return a.line == b.line && a.term == b.term && a.too_long == b.too_long;
}

bool same_frames(const std::vector<frame>& a, const std::vector<frame>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), same_frame);
}

/// What the framer must produce, written from PROTOCOL.md section 1 without
/// streaming: a request ends at LF or NUL; a CR right before the LF belongs
/// to a CRLF; a request whose bytes (terminator included) exceed the limit
/// is a too_long frame with an empty line. `tail` gets the unterminated rest.
std::vector<frame> reference_frames(std::string_view in, size_t max_request,
                                    std::string_view& tail) {
  std::vector<frame> out;
  size_t pos = 0;
  for (;;) {
    auto end = std::find_if(in.begin() + static_cast<std::ptrdiff_t>(pos),
                            in.end(), is_term_byte);
    if (end == in.end())
      break;
    auto stop = static_cast<size_t>(end - in.begin());
    frame f;
    std::string_view line = in.substr(pos, stop - pos);
    if (*end == '\0') {
      f.term = terminator::nul;
    } else if (!line.empty() && line.back() == '\r') {
      f.term = terminator::crlf;
      line.remove_suffix(1);
    } else {
      f.term = terminator::lf;
    }
    if (line.size() + terminator_bytes(f.term).size() > max_request)
      f.too_long = true;
    else
      f.line = std::string{line};
    out.push_back(std::move(f));
    pos = stop + 1;
  }
  tail = in.substr(pos);
  return out;
}

/// Feeds `in` to a fresh framer in chunks of the given sizes (cycled; a zero
/// size feeds an empty chunk, which must be harmless) and checks the framer's
/// bound on buffered bytes after every chunk.
template <class NextSize>
std::vector<frame> feed_chunks(std::string_view in, size_t max_request,
                               NextSize next_size, size_t& buffered) {
  framer fr{max_request};
  std::vector<frame> out;
  size_t pos = 0;
  while (pos < in.size()) {
    auto n = std::min(next_size(), in.size() - pos);
    fr.feed(in.data() + pos, n, out);
    pos += n;
    CHECK(fr.buffered() < std::max<size_t>(max_request, 2));
  }
  buffered = fr.buffered();
  return out;
}

bool same_result(const parse_result& a, const parse_result& b) {
  if (a.index() != b.index())
    return false;
  if (auto ra = std::get_if<request>(&a)) {
    auto& rb = std::get<request>(b);
    return ra->spec == rb.spec && ra->args == rb.args;
  }
  auto& ea = std::get<parse_error>(a);
  auto& eb = std::get<parse_error>(b);
  return ea.code == eb.code && ea.spec == eb.spec;
}

bool in_table(const command_spec* spec) {
  for (auto& row : command_table())
    if (&row == spec)
      return true;
  return false;
}

/// Checks an encoded reply appended to `out` at `start`: the reply's bytes
/// with LF and NUL replaced by '?', then exactly the terminator's bytes.
void check_encoded(std::string_view reply, terminator term,
                   const std::vector<char>& out, size_t start) {
  auto tail = terminator_bytes(term);
  CHECK(out.size() == start + reply.size() + tail.size());
  for (size_t i = 0; i < reply.size(); ++i) {
    char got = out[start + i];
    CHECK(!is_term_byte(got));
    CHECK(got == (is_term_byte(reply[i]) ? '?' : reply[i]));
  }
  CHECK(std::equal(tail.begin(), tail.end(),
                   out.begin()
                     + static_cast<std::ptrdiff_t>(start + reply.size())));
}

/// Parses one frame and checks what comes out; returns the reply line a
/// server could send for it (an error reply, or OK with the first argument).
std::string check_parse(const frame& f, const wire_limits& limits) {
  auto result = parse(f, limits);
  CHECK(same_result(result, parse(f, limits)));
  if (auto err = std::get_if<parse_error>(&result)) {
    CHECK(f.too_long == (err->code == parse_errc::request_too_long));
    bool needs_spec = err->code == parse_errc::wrong_arity
                      || err->code == parse_errc::text_too_long;
    CHECK(needs_spec == (err->spec != nullptr));
    CHECK(err->spec == nullptr || in_table(err->spec));
    CHECK(err->code != parse_errc::text_too_long
          || err->spec->cmd == command::message);
    auto reply = reply::failure(*err);
    CHECK(reply.size() > 3 && reply.compare(0, 3, "KO ") == 0);
    CHECK(std::none_of(reply.begin(), reply.end(), is_term_byte));
    CHECK(reply != "KO internal error");
    return reply;
  }
  auto& req = std::get<request>(result);
  CHECK(!f.too_long);
  CHECK(req.spec != nullptr && in_table(req.spec));
  CHECK(req.args.size() == req.spec->args);
  for (auto& arg : req.args) {
    CHECK(!arg.empty());
    CHECK(std::none_of(arg.begin(), arg.end(), is_term_byte));
    CHECK(arg.front() != ' ' && arg.back() != ' ');
    CHECK(arg.size() <= f.line.size());
  }
  // Every argument but MESSAGE's text is one token.
  size_t first_token = req.cmd() == command::message ? 1 : 0;
  for (size_t i = first_token; i < req.args.size(); ++i)
    CHECK(req.args[i].find(' ') == std::string::npos);
  if (req.cmd() == command::message)
    CHECK(req.args[0].size() <= limits.max_text);
  if (req.spec->needs_session)
    CHECK(&req.cookie() == &req.args.back());
  // The canonical form of the request (upper-case word, single spaces)
  // parses to the same request, so the request lost nothing it needs.
  frame canon;
  canon.term = f.term;
  canon.line = std::string{req.spec->name};
  for (auto& arg : req.args)
    canon.line += ' ' + arg;
  CHECK(same_result(result, parse(canon, limits)));
  return req.args.empty() ? std::string{"OK"} : "OK " + req.args.front();
}

void check_stream(std::string_view in, const uint8_t* data, size_t size,
                  size_t max_request, const wire_limits& limits) {
  std::string_view tail;
  auto expected = reference_frames(in, max_request, tail);
  size_t expected_buffered = tail.size() < max_request ? tail.size() : 0;

  size_t buffered = 0;
  // One chunk.
  auto whole = feed_chunks(
    in, max_request, [&] { return in.size(); }, buffered);
  CHECK(same_frames(whole, expected));
  CHECK(buffered == expected_buffered);
  // One byte at a time: every CRLF and every limit crossing is split.
  auto bytes = feed_chunks(
    in, max_request, [] { return size_t{1}; }, buffered);
  CHECK(same_frames(bytes, expected));
  CHECK(buffered == expected_buffered);
  // Chunk sizes 0..31 read from the input's bytes, last byte first, so the
  // fuzzer controls where the splits fall.
  size_t k = 0;
  auto split = feed_chunks(
    in, max_request,
    [&] {
      auto n = static_cast<size_t>(data[size - 1 - (k % size)] & 31);
      ++k;
      // Never loop forever on empty chunks: every 8th size is at least 1.
      return (k % 8 == 0 && n == 0) ? size_t{1} : n;
    },
    buffered);
  CHECK(same_frames(split, expected));
  CHECK(buffered == expected_buffered);

  std::vector<char> wire{'x'}; // replies are appended after existing bytes
  for (auto& f : whole) {
    if (f.too_long)
      CHECK(f.line.empty());
    else
      CHECK(f.line.size() + terminator_bytes(f.term).size() <= max_request);
    CHECK(std::none_of(f.line.begin(), f.line.end(), is_term_byte));
    auto reply = check_parse(f, limits);
    auto start = wire.size();
    encode_reply(reply, f.term, wire);
    CHECK(wire.front() == 'x');
    check_encoded(reply, f.term, wire, start);
  }
  // The replies, read back by a client's framer, are one frame each.
  std::vector<frame> read_back;
  framer client{wire.size() + 2};
  client.feed(wire.data() + 1, wire.size() - 1, read_back);
  CHECK(read_back.size() == whole.size());
  CHECK(client.buffered() == 0);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view in{reinterpret_cast<const char*>(data), size};

  // The default limits, and small ones taken from the first and last bytes
  // so that too-long requests and too-long texts happen in short inputs.
  check_stream(in, data, size, wire_limits{}.max_request, wire_limits{});
  wire_limits small;
  small.max_request = 2 + data[0] % 48;
  small.max_text = data[size - 1] % 24;
  check_stream(in, data, size, small.max_request, small);

  // The whole input as one reply: no terminator byte survives inside it.
  for (auto term : {terminator::lf, terminator::crlf, terminator::nul}) {
    std::vector<char> out;
    encode_reply(in, term, out);
    check_encoded(in, term, out, 0);
    std::vector<frame> back;
    framer client{out.size() + 2};
    client.feed(out.data(), out.size(), back);
    CHECK(back.size() == 1 && !back[0].too_long);
    CHECK(client.buffered() == 0);
    // A reply ending in CR sent with an LF terminator reads back as CRLF
    // without that CR (PROTOCOL.md: a CR right before LF belongs to the
    // terminator); every other reply reads back exactly.
    bool cr_lf = term == terminator::lf && in.back() == '\r';
    CHECK(back[0].term == (cr_lf ? terminator::crlf : term));
    CHECK(back[0].line.size() == in.size() - (cr_lf ? 1 : 0));
  }
  return 0;
}
