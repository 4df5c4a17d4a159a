// Pure SMSP wire codec: framing, the command table, parsing and reply encoding.
#include "net/wire/codec.hpp"

#include <algorithm>
#include <cctype>

namespace smsp {

namespace {

bool is_terminator_byte(char c) {
  return c == '\n' || c == '\0';
}

// Keeps a long-lived connection from pinning a 64 KiB buffer after one
// large request.
constexpr size_t retained_capacity = 4096;

} // namespace

// -- framer -------------------------------------------------------------------

framer::framer(size_t max_request) : max_request_(max_request) {
  // A request needs at least one byte of terminator.
  if (max_request_ < 2)
    max_request_ = 2;
}

void framer::finish(terminator term, std::vector<frame>& out) {
  frame f;
  f.term = term;
  if (partial_.capacity() > retained_capacity) {
    f.line = std::move(partial_);
    partial_ = std::string{};
  } else {
    f.line = partial_;
    partial_.clear();
  }
  out.emplace_back(std::move(f));
}

void framer::feed(const char* data, size_t size, std::vector<frame>& out) {
  size_t pos = 0;
  while (pos < size) {
    auto first = data + pos;
    auto last = std::find_if(first, data + size, is_terminator_byte);
    auto chunk = static_cast<size_t>(last - first);
    bool found = last != data + size;
    if (discarding_) {
      if (!found) {
        last_was_cr_ = data[size - 1] == '\r';
        return;
      }
      bool cr = chunk > 0 ? last[-1] == '\r' : last_was_cr_;
      auto term = *last == '\0' ? terminator::nul
                                : (cr ? terminator::crlf : terminator::lf);
      discarding_ = false;
      last_was_cr_ = false;
      frame f;
      f.term = term;
      f.too_long = true;
      out.emplace_back(std::move(f));
      pos += chunk + 1;
      continue;
    }
    auto total = partial_.size() + chunk;
    if (!found) {
      if (total >= max_request_) {
        // Even the shortest terminator cannot fit any more.
        discarding_ = true;
        last_was_cr_ = data[size - 1] == '\r';
        partial_ = std::string{};
        return;
      }
      partial_.append(first, chunk);
      return;
    }
    auto term = terminator::nul;
    if (*last == '\n') {
      auto before = chunk > 0 ? first[chunk - 1]
                              : (partial_.empty() ? '\0' : partial_.back());
      term = before == '\r' ? terminator::crlf : terminator::lf;
    }
    // Terminator bytes counted in `total`: the CR of a CRLF.
    auto content = total - (term == terminator::crlf ? 1 : 0);
    if (content + terminator_bytes(term).size() > max_request_) {
      partial_ = std::string{};
      frame f;
      f.term = term;
      f.too_long = true;
      out.emplace_back(std::move(f));
    } else {
      partial_.append(first, chunk);
      if (term == terminator::crlf)
        partial_.pop_back();
      finish(term, out);
    }
    pos += chunk + 1;
  }
}

// -- command table ------------------------------------------------------------

// The table is indexed by `command`: each row sits at its command's value.
static_assert([] {
  for (size_t i = 0; i < command_count; ++i)
    if (static_cast<size_t>(command_specs[i].cmd) != i)
      return false;
  return true;
}());

const command_spec* find_command(std::string_view word) {
  auto same = [](char a, char b) {
    return std::toupper(static_cast<unsigned char>(a)) == b;
  };
  for (auto& spec : command_table())
    if (word.size() == spec.name.size()
        && std::equal(word.begin(), word.end(), spec.name.begin(), same))
      return &spec;
  return nullptr;
}

// -- parsing ------------------------------------------------------------------

namespace {

std::vector<std::string_view> split_tokens(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t pos = 0;
  while (pos < line.size()) {
    pos = line.find_first_not_of(' ', pos);
    if (pos == std::string_view::npos)
      break;
    auto end = line.find(' ', pos);
    if (end == std::string_view::npos)
      end = line.size();
    tokens.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return tokens;
}

// MESSAGE keeps the inner spacing of its text: the text runs from the first
// byte after the command word's separators to the last byte before the
// cookie's separators.
parse_result parse_message(const command_spec& spec, std::string_view line,
                           std::vector<std::string_view>& tokens,
                           const wire_limits& limits) {
  if (tokens.size() < 3)
    return parse_error{parse_errc::wrong_arity, &spec};
  auto word = tokens.front();
  auto cookie = tokens.back();
  auto begin = static_cast<size_t>(word.data() + word.size() - line.data());
  auto end = static_cast<size_t>(cookie.data() - line.data());
  auto text = line.substr(begin, end - begin);
  text.remove_prefix(text.find_first_not_of(' '));
  text.remove_suffix(text.size() - 1 - text.find_last_not_of(' '));
  if (text.size() > limits.max_text)
    return parse_error{parse_errc::text_too_long, &spec};
  request req;
  req.spec = &spec;
  req.args.emplace_back(text);
  req.args.emplace_back(cookie);
  return req;
}

} // namespace

parse_result parse(const frame& f, const wire_limits& limits) {
  if (f.too_long)
    return parse_error{parse_errc::request_too_long};
  auto tokens = split_tokens(f.line);
  if (tokens.empty())
    return parse_error{parse_errc::empty_request};
  auto spec = find_command(tokens.front());
  if (spec == nullptr)
    return parse_error{parse_errc::unknown_command};
  if (spec->cmd == command::message)
    return parse_message(*spec, f.line, tokens, limits);
  if (tokens.size() != spec->args + 1)
    return parse_error{parse_errc::wrong_arity, spec};
  request req;
  req.spec = spec;
  req.args.reserve(spec->args);
  for (size_t i = 1; i < tokens.size(); ++i)
    req.args.emplace_back(tokens[i]);
  return req;
}

// -- replies ------------------------------------------------------------------

std::string_view terminator_bytes(terminator term) {
  switch (term) {
    case terminator::crlf:
      return {"\r\n", 2};
    case terminator::nul:
      return {"\0", 1};
    default:
      return {"\n", 1};
  }
}

void encode_reply(std::string_view reply, terminator term,
                  std::vector<char>& out) {
  auto start = out.size();
  out.insert(out.end(), reply.begin(), reply.end());
  std::replace_if(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
                  is_terminator_byte, '?');
  auto tail = terminator_bytes(term);
  out.insert(out.end(), tail.begin(), tail.end());
}

} // namespace smsp
