// Mailbox placement: node addresses, rendezvous hashing, the node list file.
#include "actors/logic/placement.hpp"

#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace smsp {

namespace {

/// The node list file is a few lines; anything this big is not one.
constexpr size_t max_node_list_bytes = 1 << 20;

/// `text` in single quotes for an error message, control bytes as \xNN and
/// cut after 100 bytes: it comes from the command line or a file, and may be
/// anything.
std::string quoted(std::string_view text) {
  constexpr size_t max_shown = 100;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < max_shown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max_shown)
    out += "...";
  out += "'";
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (auto& part : parts) {
    if (!out.empty())
      out += ", ";
    out += part;
  }
  return out;
}

std::string join(const std::vector<node_address>& nodes) {
  std::vector<std::string> parts;
  for (auto& node : nodes)
    parts.push_back(to_string(node));
  return join(parts);
}

// -- the hash (on-disk contract: see placement_weight) ------------------------

constexpr uint64_t fnv_offset_basis = 0xcbf29ce484222325ULL;
constexpr uint64_t fnv_prime = 0x100000001b3ULL;

uint64_t fnv1a(uint64_t hash, std::string_view bytes) {
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= fnv_prime;
  }
  return hash;
}

/// The finalizer of splitmix64 (Steele, Lea, Flood 2014; as in Java's
/// SplittableRandom and xoshiro's seeding).
uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// -- files --------------------------------------------------------------------

std::string system_error(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

/// Closes its descriptor, if still open, when it goes.
class file_descriptor {
public:
  explicit file_descriptor(int fd) : fd_(fd) {
    // nop
  }
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  int get() const {
    return fd_;
  }
  /// Closes now and reports the error of close(), which on some file systems
  /// is the first sign that a write failed: 0 or an errno value.
  int close() {
    int err = 0;
    if (fd_ >= 0 && ::close(fd_) != 0)
      err = errno;
    fd_ = -1;
    return err;
  }

private:
  int fd_;
};

/// The contents of `path`, or nullopt if it does not exist.
std::optional<std::string> read_small_file(const std::string& path) {
  file_descriptor fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.get() < 0) {
    if (errno == ENOENT)
      return std::nullopt;
    throw std::runtime_error(system_error("cannot open " + path, errno));
  }
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw std::runtime_error(system_error("cannot read " + path, errno));
    }
    if (n == 0)
      return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_node_list_bytes)
      throw std::runtime_error(path + " is larger than "
                               + std::to_string(max_node_list_bytes)
                               + " bytes: not a node list");
  }
}

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    auto n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw std::runtime_error(system_error("cannot write " + path, errno));
    }
    done += static_cast<size_t>(n);
  }
}

void sync_dir(const std::string& dir) {
  file_descriptor fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (fd.get() < 0)
    throw std::runtime_error(system_error("cannot open " + dir, errno));
  // Makes the rename durable: without it a power loss may bring back the old
  // list, or no file at all.
  if (::fsync(fd.get()) != 0)
    throw std::runtime_error(system_error("cannot sync " + dir, errno));
}

} // namespace

// -- node addresses -----------------------------------------------------------

bool operator==(const node_address& a, const node_address& b) {
  return a.host == b.host && a.port == b.port;
}

bool operator!=(const node_address& a, const node_address& b) {
  return !(a == b);
}

std::string to_string(const node_address& x) {
  auto port = std::to_string(x.port);
  if (x.host.find(':') != std::string::npos)
    return "[" + x.host + "]:" + port;
  return x.host + ":" + port;
}

std::optional<node_address> parse_node_address(std::string_view text,
                                               std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<node_address> {
    if (why != nullptr)
      *why = quoted(text)
             + " is not a mailbox node address (host:port or [ipv6]:port): "
             + reason;
    return std::nullopt;
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos)
      return fail("no ']' after '['");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return fail("no ':port' after ']'");
    port = rest.substr(1);
    // Brackets are for IPv6 only, so that every node has one spelling.
    if (host.find(':') == std::string_view::npos)
      return fail("brackets are only for IPv6 addresses");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return fail("no ':port'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return fail("an IPv6 address must be in brackets, as in [::1]:5000");
  }
  if (host.empty())
    return fail("the host is empty");
  if (host.size() > 255)
    return fail("the host is longer than 255 bytes");
  for (char c : host) {
    auto u = static_cast<unsigned char>(c);
    // '#' would start a comment in the node list file; '[', ']' and '/'
    // belong in no host name or address.
    if (u <= 0x20 || u == 0x7f || c == '#' || c == '[' || c == ']' || c == '/')
      return fail("the host contains a space, a control character, or one "
                  "of # [ ] /");
  }
  // At most 5 digits, so the value cannot overflow before the range check.
  if (port.empty() || port.size() > 5)
    return fail("the port must be 1-65535 in decimal digits");
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9')
      return fail("the port must be 1-65535 in decimal digits");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535)
    return fail("the port must be 1-65535 in decimal digits");
  node_address result;
  result.host.reserve(host.size());
  for (char c : host)
    result.host += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a')
                                          : c;
  result.port = static_cast<uint16_t>(value);
  return result;
}

std::optional<std::string>
check_node_list(const std::vector<node_address>& nodes) {
  std::set<std::string> seen;
  for (auto& node : nodes)
    if (auto text = to_string(node); !seen.insert(text).second)
      return "the mailbox node " + text + " is given twice";
  return std::nullopt;
}

// -- rendezvous hashing -------------------------------------------------------

uint64_t placement_weight(const node_address& node, std::string_view user) {
  auto hash = fnv1a(fnv_offset_basis, to_string(node));
  // The separator keeps ("a:1", "2b") and ("a:12", "b") apart; no address
  // contains a NUL.
  hash = fnv1a(hash, std::string_view{"\0", 1});
  hash = fnv1a(hash, user);
  return splitmix64_mix(hash);
}

size_t rendezvous_place(std::string_view user,
                        const std::vector<node_address>& nodes) {
  if (nodes.empty())
    throw std::invalid_argument("rendezvous_place: no nodes");
  size_t best = 0;
  auto best_weight = placement_weight(nodes[0], user);
  for (size_t i = 1; i < nodes.size(); ++i) {
    auto weight = placement_weight(nodes[i], user);
    // Strictly greater: a tie keeps the lower index.
    if (weight > best_weight) {
      best = i;
      best_weight = weight;
    }
  }
  return best;
}

// -- the node list file -------------------------------------------------------

std::optional<std::vector<node_address>>
load_node_list(const std::string& data_dir) {
  auto path = data_dir + "/" + node_list_file;
  auto text = read_small_file(path);
  if (!text)
    return std::nullopt;
  std::vector<node_address> nodes;
  std::set<std::string> seen;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text->size()) {
    ++line_no;
    auto end = text->find('\n', pos);
    if (end == std::string::npos)
      end = text->size();
    std::string_view line{text->data() + pos, end - pos};
    pos = end + 1;
    if (line.empty() || line.front() == '#')
      continue;
    auto where = path + " line " + std::to_string(line_no) + ": ";
    std::string why;
    auto node = parse_node_address(line, &why);
    if (!node)
      throw std::runtime_error(where + why);
    if (!seen.insert(to_string(*node)).second)
      throw std::runtime_error(where + "the mailbox node " + to_string(*node)
                               + " is listed twice");
    nodes.push_back(std::move(*node));
  }
  return nodes;
}

void save_node_list(const std::string& data_dir,
                    const std::vector<node_address>& nodes) {
  auto path = data_dir + "/" + node_list_file;
  if (auto why = check_node_list(nodes))
    throw std::runtime_error("cannot write " + path + ": " + *why);
  std::string text = "# smsp-actors mailbox nodes: each user's mailbox is on "
                     "one of these, chosen by rendezvous hashing of the name; "
                     "a different list moves users (see OPERATIONS.md, "
                     "'Changing the node list'). No nodes: all mailboxes are "
                     "in the front.\n";
  for (auto& node : nodes)
    text += to_string(node) + "\n";
  auto tmp = path + ".tmp";
  file_descriptor fd{
    ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (fd.get() < 0)
    throw std::runtime_error(system_error("cannot create " + tmp, errno));
  try {
    write_all(fd.get(), text, tmp);
    // Before the rename: otherwise a crash could leave the new name on an
    // empty or partial file.
    if (::fsync(fd.get()) != 0)
      throw std::runtime_error(system_error("cannot sync " + tmp, errno));
    if (auto err = fd.close(); err != 0)
      throw std::runtime_error(system_error("cannot write " + tmp, err));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw std::runtime_error(
        system_error("cannot rename " + tmp + " to " + path, errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  sync_dir(data_dir);
}

// -- changing the node list ---------------------------------------------------

placement_change compare_placement(const std::vector<std::string>& users,
                                   const std::vector<node_address>& before,
                                   const std::vector<node_address>& after,
                                   size_t first_n) {
  // nullptr: in the front.
  auto place = [](const std::string& user,
                  const std::vector<node_address>& nodes) {
    return nodes.empty() ? nullptr : &nodes[rendezvous_place(user, nodes)];
  };
  placement_change result;
  for (auto& user : users) {
    auto from = place(user, before);
    auto to = place(user, after);
    bool same = from == nullptr ? to == nullptr : to != nullptr && *from == *to;
    if (same)
      continue;
    ++result.moved;
    if (result.first.size() < first_n)
      result.first.push_back(user);
  }
  return result;
}

std::string describe_node_change(const std::string& file,
                                 const std::vector<node_address>& before,
                                 const std::vector<node_address>& after,
                                 const placement_change& change,
                                 uint64_t users) {
  auto list = [](const std::vector<node_address>& nodes) {
    return nodes.empty() ? std::string{"none, all mailboxes in the front"}
                         : join(nodes);
  };
  auto out = "the mailbox nodes differ from the ones recorded in " + file
             + " (recorded: " + list(before) + "; given: " + list(after)
             + "): " + std::to_string(change.moved) + " of "
             + std::to_string(users) + (users == 1 ? " user" : " users")
             + " would move to another node";
  if (!change.first.empty())
    out += (change.first.size() < change.moved ? ", e.g. " : ": ")
           + join(change.first);
  out += "; their mail would not follow them (see OPERATIONS.md, 'Changing "
         "the node list'); start with --accept-node-change to accept this";
  return out;
}

} // namespace smsp
