// Brute-force throttling of LOGIN: CIDR matching and the penalty tables.
#include "actors/logic/throttle.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <limits>
#include <netinet/in.h>
#include <stdexcept>
#include <utility>

namespace smsp {

namespace {

/// Usernames longer than this are cut: valid ones have at most 32 bytes, so
/// only invalid names merge, and a record's size stays bounded.
constexpr size_t max_user_key = 64;

/// `addr` with every bit past the first `prefix` cleared.
ip_address masked(ip_address addr, unsigned prefix) {
  for (unsigned i = 0; i < addr.size(); ++i) {
    unsigned first_bit = i * 8;
    if (prefix >= first_bit + 8)
      continue;
    unsigned keep = prefix > first_bit ? prefix - first_bit : 0;
    addr[i] &= static_cast<uint8_t>(0xff00u >> keep);
  }
  return addr;
}

bool is_mapped_ipv4(const ip_address& addr) {
  static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0,    0,
                                         0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(addr.data(), prefix, sizeof(prefix)) == 0;
}

} // namespace

// -- addresses and networks ---------------------------------------------------

std::optional<ip_address> parse_address(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  // A zone ("fe80::1%eth0") names the interface, not the host.
  if (auto pct = text.find('%');
      pct != std::string_view::npos && text.find(':') < pct)
    text = text.substr(0, pct);
  // inet_pton stops at a NUL, which would let "1.2.3.4\0junk" through.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN
      || text.find('\0') != std::string_view::npos)
    return std::nullopt;
  std::string buf{text};
  ip_address result{};
  in_addr v4;
  if (inet_pton(AF_INET, buf.c_str(), &v4) == 1) {
    result[10] = result[11] = 0xff;
    std::memcpy(result.data() + 12, &v4, 4);
    return result;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, buf.c_str(), &v6) == 1) {
    std::memcpy(result.data(), &v6, 16);
    return result;
  }
  return std::nullopt;
}

std::optional<ip_network> parse_network(std::string_view text) {
  auto slash = text.find('/');
  auto addr_text = text.substr(0, slash);
  if (addr_text.find('%') != std::string_view::npos)
    return std::nullopt;
  auto addr = parse_address(addr_text);
  if (!addr)
    return std::nullopt;
  bool v4 = addr_text.find(':') == std::string_view::npos;
  unsigned max_len = v4 ? 32 : 128;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3
        || !std::all_of(digits.begin(), digits.end(),
                        [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    len = 0;
    for (char c : digits)
      len = len * 10 + static_cast<unsigned>(c - '0');
    if (len > max_len)
      return std::nullopt;
  }
  ip_network net;
  net.prefix = v4 ? 96 + len : len;
  net.base = masked(*addr, net.prefix);
  if (net.base != *addr)
    return std::nullopt;
  return net;
}

bool in_network(const ip_address& addr, const ip_network& net) {
  return masked(addr, net.prefix) == net.base;
}

bool in_networks(std::string_view text, const std::vector<ip_network>& nets) {
  auto addr = parse_address(text);
  return addr
         && std::any_of(nets.begin(), nets.end(), [&](const ip_network& net) {
              return in_network(*addr, net);
            });
}

// -- table --------------------------------------------------------------------

template <class Key>
template <class K>
login_throttle::record&
login_throttle::table<Key>::touch(const K& key, time_point now) {
  if (auto i = index_.find(key); i != index_.end()) {
    auto pos = *i;
    // Splicing keeps iterators valid, so the index needs no update.
    order_.splice(order_.end(), order_, pos);
    pos->rec.last_failure = now;
    return pos->rec;
  }
  if (order_.size() >= max_) {
    index_.erase(order_.begin());
    order_.pop_front();
  }
  order_.push_back(entry{Key(key), record{}});
  auto pos = std::prev(order_.end());
  index_.insert(pos);
  pos->rec.last_failure = now;
  return pos->rec;
}

template <class Key>
template <class K>
void login_throttle::table<Key>::erase(const K& key) {
  if (auto i = index_.find(key); i != index_.end()) {
    auto pos = *i;
    index_.erase(i);
    order_.erase(pos);
  }
}

template <class Key>
void login_throttle::table<Key>::expire(time_point now,
                                        std::chrono::milliseconds keep) {
  while (!order_.empty() && now - order_.front().rec.last_failure >= keep) {
    index_.erase(order_.begin());
    order_.pop_front();
  }
}

// -- login_throttle -----------------------------------------------------------

login_throttle::login_throttle(throttle_config cfg)
  : cfg_(std::move(cfg)),
    users_(cfg_.max_tracked),
    addresses_(cfg_.max_tracked) {
  using std::invalid_argument;
  if (cfg_.first_penalty.count() <= 0)
    throw invalid_argument("throttle: the first penalty must be positive");
  if (cfg_.max_penalty < cfg_.first_penalty)
    throw invalid_argument(
      "throttle: the maximum penalty is shorter than the first");
  if (cfg_.free_failures == 0)
    throw invalid_argument("throttle: free failures must be at least 1");
  // The bounds keep `now + window` and every duration in nanoseconds far
  // from overflowing.
  if (cfg_.max_penalty > std::chrono::hours{24})
    throw invalid_argument("throttle: the maximum penalty exceeds a day");
  if (cfg_.forget_after < cfg_.max_penalty)
    throw invalid_argument(
      "throttle: forget_after is shorter than the maximum penalty");
  if (cfg_.forget_after > std::chrono::hours{24 * 30})
    throw invalid_argument("throttle: forget_after exceeds 30 days");
  if (cfg_.max_tracked == 0)
    throw invalid_argument("throttle: max tracked keys must be at least 1");
  if (cfg_.ipv6_prefix > 128)
    throw invalid_argument("throttle: the IPv6 prefix length exceeds 128");
  for (auto& text : cfg_.trusted_networks) {
    auto net = parse_network(text);
    if (!net)
      throw invalid_argument("not a CIDR network: '" + text + "'");
    trusted_.push_back(*net);
  }
}

bool login_throttle::allows(std::string_view user, std::string_view address,
                            time_point now) {
  now = advance(now);
  auto user_rec = users_.find(user.substr(0, max_user_key));
  auto key = address_key(address);
  auto addr_rec = key ? addresses_.find(*key) : nullptr;
  if (blocked(user_rec, now) || blocked(addr_rec, now))
    return false;
  admit(user_rec, now);
  admit(addr_rec, now);
  return true;
}

void login_throttle::failed(std::string_view user, std::string_view address,
                            time_point now) {
  now = advance(now);
  count_failure(users_.touch(user.substr(0, max_user_key), now), now);
  if (auto key = address_key(address))
    count_failure(addresses_.touch(*key, now), now);
}

void login_throttle::succeeded(std::string_view user, std::string_view address,
                               time_point now) {
  now = advance(now);
  users_.erase(user.substr(0, max_user_key));
  // Only the slot of the attempt that just came back: the failures stay (see
  // the header).
  if (auto key = address_key(address))
    if (auto rec = addresses_.find(*key))
      rec->probe_end = time_point{};
}

size_t login_throttle::tracked() const {
  return users_.size() + addresses_.size();
}

bool login_throttle::trusted(std::string_view address) const {
  return in_networks(address, trusted_);
}

login_throttle::time_point login_throttle::advance(time_point now) {
  latest_ = std::max(latest_, now);
  // Past every window a key can have, plus the quiet time.
  auto keep = cfg_.max_penalty + cfg_.forget_after;
  users_.expire(latest_, keep);
  addresses_.expire(latest_, keep);
  return latest_;
}

std::optional<ip_address>
login_throttle::address_key(std::string_view address) const {
  auto addr = parse_address(address);
  if (!addr)
    return ip_address{};
  if (std::any_of(trusted_.begin(), trusted_.end(), [&](const ip_network& net) {
        return in_network(*addr, net);
      }))
    return std::nullopt;
  if (is_mapped_ipv4(*addr))
    return addr;
  return masked(*addr, cfg_.ipv6_prefix);
}

std::chrono::milliseconds login_throttle::window(unsigned failures) const {
  if (failures < cfg_.free_failures)
    return std::chrono::milliseconds{0};
  auto len = cfg_.first_penalty;
  // At most 27 rounds (1 ms doubled up to a day), and len * 2 cannot
  // overflow.
  for (auto n = failures - cfg_.free_failures; n > 0 && len < cfg_.max_penalty;
       --n)
    len = std::min(len * 2, cfg_.max_penalty);
  return len;
}

bool login_throttle::blocked(const record* rec, time_point now) const {
  return rec != nullptr && (now < rec->window_end || now < rec->probe_end);
}

void login_throttle::admit(record* rec, time_point now) {
  // A penalized key outside its window lets one attempt through and holds it
  // for that attempt: one hash per window, however many connections ask.
  if (rec != nullptr && rec->failures >= cfg_.free_failures)
    rec->probe_end = now + window(rec->failures);
}

void login_throttle::count_failure(record& rec, time_point now) {
  if (rec.failures < std::numeric_limits<unsigned>::max())
    ++rec.failures;
  // Never shortens the window, since `now` and the window length only grow;
  // and the new window outlasts the slot of an attempt in flight, which began
  // no later than `now` and held the key for a shorter window.
  if (rec.failures >= cfg_.free_failures)
    rec.window_end = now + window(rec.failures);
}

} // namespace smsp
