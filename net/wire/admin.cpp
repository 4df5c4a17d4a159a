// The admin interface's line protocol and the admin file (pure C++).
#include "net/wire/admin.hpp"

#include <charconv>

namespace smsp::admin {

namespace {

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ')
      ++i;
    auto start = i;
    while (i < line.size() && line[i] != ' ')
      ++i;
    if (i > start)
      out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = a[i] >= 'a' && a[i] <= 'z' ? char(a[i] - 'a' + 'A') : a[i];
    if (x != b[i])
      return false;
  }
  return true;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
         || (c >= '0' && c <= '9');
}

std::optional<uint64_t> to_number(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

} // namespace

const verb_spec& spec_of(verb v) {
  for (auto& spec : verbs)
    if (spec.v == v)
      return spec;
  return verbs[0];
}

std::variant<request, std::string> parse(std::string_view line) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  auto tokens = split(line);
  if (tokens.empty())
    return std::string{reply::empty_request};
  for (auto& spec : verbs) {
    if (!iequals(tokens[0], spec.name))
      continue;
    auto n = tokens.size() - 1;
    if (n < spec.min_args || n > spec.max_args)
      return reply::usage(spec);
    request req{spec.v, {}};
    for (size_t i = 1; i < tokens.size(); ++i)
      req.args.emplace_back(tokens[i]);
    if (spec.v == verb::users && !req.args.empty()
        && !valid_pattern(req.args[0]))
      return std::string{reply::bad_pattern};
    return req;
  }
  return std::string{reply::unknown_verb};
}

bool valid_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > max_pattern)
    return false;
  for (char c : pattern)
    if (!is_alnum(c)
        && std::string_view{"*?[]^-"}.find(c) == std::string_view::npos)
      return false;
  return true;
}

bool valid_token(std::string_view token) {
  if (token.size() != token_chars)
    return false;
  for (char c : token)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

namespace reply {

std::string ok_with(std::string_view payload) {
  std::string out{ok};
  if (!payload.empty())
    out.append(" ").append(payload);
  return out;
}

std::string usage(const verb_spec& spec) {
  return "ERR usage: " + std::string{spec.usage};
}

std::string_view failure(errc code) {
  switch (code) {
    case errc::no_such_user:
      return "ERR no such user";
    case errc::bad_username:
      return "ERR bad username";
    case errc::bad_password:
      return "ERR bad password: 1 to 128 printable ASCII characters, no "
             "space";
    case errc::not_logged_in:
      return "ERR that user has no live session";
    case errc::server_busy:
      return "ERR server busy (password hashing queue full); try again";
    case errc::storage_failed:
      return "ERR storage failed, nothing was changed";
    case errc::user_on_node:
      return "ERR the user's mail is on a mailbox node: delete is not "
             "supported with mailbox nodes";
    case errc::change_under_way:
      return "ERR another change of that user is under way; try again";
    default:
      return internal_error;
  }
}

} // namespace reply

std::optional<parsed_reply> parse_reply(std::string_view line) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  for (auto [word, ok] : {std::pair{std::string_view{"OK"}, true},
                          std::pair{std::string_view{"ERR"}, false}}) {
    if (line == word)
      return parsed_reply{ok, {}};
    if (line.size() > word.size() && line.substr(0, word.size()) == word
        && line[word.size()] == ' ')
      return parsed_reply{ok, std::string{line.substr(word.size() + 1)}};
  }
  return std::nullopt;
}

std::string encode_fields(const std::vector<field>& fields) {
  std::string out;
  for (auto& [key, value] : fields) {
    if (!out.empty())
      out += ' ';
    out.append(key).append("=").append(value);
  }
  return out;
}

std::optional<std::vector<field>> decode_fields(std::string_view text) {
  std::vector<field> out;
  for (auto token : split(text)) {
    auto eq = token.find('=');
    if (eq == 0 || eq == std::string_view::npos)
      return std::nullopt;
    auto key = token.substr(0, eq);
    for (char c : key)
      if (!((c >= 'a' && c <= 'z') || c == '_'))
        return std::nullopt;
    auto value = token.substr(eq + 1);
    if (value.find('=') != std::string_view::npos)
      return std::nullopt;
    out.emplace_back(std::string{key}, std::string{value});
  }
  return out;
}

std::string encode_names(const std::vector<std::string>& names) {
  std::string out;
  for (auto& name : names) {
    if (!out.empty())
      out += ' ';
    out += name;
  }
  return out;
}

std::vector<std::string> decode_names(std::string_view text) {
  std::vector<std::string> out;
  for (auto token : split(text))
    out.emplace_back(token);
  return out;
}

std::string format_file(const endpoint& e) {
  return "# smsp-actors admin interface (smsp-admin reads this; removed at a "
         "clean stop)\nhost="
         + e.host + "\nport=" + std::to_string(e.port) + "\ntoken=" + e.token
         + "\npid=" + std::to_string(e.pid) + "\n";
}

std::optional<endpoint> parse_file(std::string_view text) {
  endpoint e;
  bool host = false, port = false, token = false;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{}
                                        : text.substr(nl + 1);
    if (line.empty() || line[0] == '#')
      continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return std::nullopt;
    auto key = line.substr(0, eq);
    auto value = line.substr(eq + 1);
    if (key == "host" && !value.empty()) {
      e.host = std::string{value};
      host = true;
    } else if (key == "port") {
      auto n = to_number(value);
      if (!n || *n == 0 || *n > 65535)
        return std::nullopt;
      e.port = static_cast<uint16_t>(*n);
      port = true;
    } else if (key == "token") {
      if (!valid_token(value))
        return std::nullopt;
      e.token = std::string{value};
      token = true;
    } else if (key == "pid") {
      auto n = to_number(value);
      if (!n)
        return std::nullopt;
      e.pid = static_cast<int64_t>(*n);
    }
  }
  if (!host || !port || !token)
    return std::nullopt;
  return e;
}

} // namespace smsp::admin
