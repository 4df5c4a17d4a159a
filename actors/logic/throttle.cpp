// Brute-force throttling of LOGIN: CIDR matching and the three penalty keys.
#include "actors/logic/throttle.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <limits>
#include <netinet/in.h>
#include <stdexcept>
#include <tuple>
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

// -- pair keys ----------------------------------------------------------------

bool operator<(const login_throttle::pair_key& a,
               const login_throttle::pair_key& b) {
  return std::tie(a.user, a.address) < std::tie(b.user, b.address);
}

bool operator<(const login_throttle::pair_key& a,
               const login_throttle::pair_ref& b) {
  auto user = std::string_view{a.user};
  return user < b.user || (user == b.user && a.address < b.address);
}

bool operator<(const login_throttle::pair_ref& a,
               const login_throttle::pair_key& b) {
  auto user = std::string_view{b.user};
  return a.user < user || (a.user == user && a.address < b.address);
}

// -- table --------------------------------------------------------------------

template <class Key, class Value>
template <class K>
Value& login_throttle::table<Key, Value>::touch(const K& key, time_point now) {
  if (auto i = index_.find(key); i != index_.end()) {
    auto pos = *i;
    // Splicing keeps iterators valid, so the index needs no update.
    order_.splice(order_.end(), order_, pos);
    pos->stamp = now;
    return pos->value;
  }
  if (order_.size() >= max_) {
    index_.erase(order_.begin());
    order_.pop_front();
  }
  order_.push_back(entry{Key(key), Value{}, now});
  index_.insert(std::prev(order_.end()));
  return order_.back().value;
}

template <class Key, class Value>
template <class K>
bool login_throttle::table<Key, Value>::erase(const K& key) {
  auto i = index_.find(key);
  if (i == index_.end())
    return false;
  auto pos = *i;
  index_.erase(i);
  order_.erase(pos);
  return true;
}

template <class Key, class Value>
template <class K, class F>
void login_throttle::table<Key, Value>::visit_from(const K& from,
                                                   F visit) const {
  for (auto i = index_.lower_bound(from); i != index_.end(); ++i)
    if (!visit((*i)->key))
      return;
}

template <class Key, class Value>
void login_throttle::table<Key, Value>::expire(time_point now,
                                               std::chrono::milliseconds keep) {
  while (!order_.empty() && now - order_.front().stamp >= keep) {
    index_.erase(order_.begin());
    order_.pop_front();
  }
}

// -- login_throttle -----------------------------------------------------------

login_throttle::login_throttle(throttle_config cfg)
  : cfg_(std::move(cfg)),
    addresses_(cfg_.max_tracked),
    pairs_(cfg_.max_tracked),
    users_(cfg_.max_tracked),
    known_(cfg_.max_tracked) {
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
  // One address must never be able to engage the username-wide key, and the
  // count of a name's pairs stops at this many.
  if (cfg_.distributed_addresses < 2 || cfg_.distributed_addresses > 64)
    throw invalid_argument("throttle: distributed addresses must be 2-64");
  // Each is scanned on every LOGIN for the name.
  if (cfg_.known_addresses > 64)
    throw invalid_argument("throttle: known addresses exceed 64");
  if (cfg_.known_for.count() <= 0
      || cfg_.known_for > std::chrono::hours{24 * 366})
    throw invalid_argument("throttle: known_for must be 1 ms to a year");
  for (auto& text : cfg_.trusted_networks) {
    auto net = parse_network(text);
    if (!net)
      throw invalid_argument("not a CIDR network: '" + text + "'");
    trusted_.push_back(*net);
  }
}

login_throttle::applicable login_throttle::lookup(std::string_view user,
                                                  std::string_view address,
                                                  time_point now) {
  auto name = user.substr(0, max_user_key);
  auto from = classify(address);
  auto addr_rec = from.trusted ? nullptr : addresses_.find(from.key);
  auto pair_rec = pairs_.find(pair_ref{name, from.key});
  auto user_rec = user_lane(name, from.key, pair_rec != nullptr, now);
  return {addr_rec, pair_rec, user_rec};
}

bool login_throttle::allows(std::string_view user, std::string_view address,
                            time_point now) {
  now = advance(now);
  auto recs = lookup(user, address, now);
  if (blocked(recs.address, now) || blocked(recs.pair, now)
      || blocked(recs.user, now))
    return false;
  admit(recs.address, now);
  admit(recs.pair, now);
  admit(recs.user, now);
  return true;
}

penalty_state login_throttle::failed(std::string_view user,
                                     std::string_view address, time_point now) {
  now = advance(now);
  auto name = user.substr(0, max_user_key);
  auto from = classify(address);
  if (!from.trusted)
    count_failure(addresses_.touch(from.key, now), now);
  pair_ref pair{name, from.key};
  bool repeat = pairs_.find(pair) != nullptr;
  count_failure(pairs_.touch(pair, now), now);
  // A known address failing is the user's typo or someone at her address:
  // keys 1 and 2 bound it, and it is no sign of a spread guess.
  if (!is_known(known_.find(name), from.key, now)) {
    auto& rec = users_.touch(name, now);
    count_failure(repeat ? rec.repeat : rec.first, now);
  }
  return penalty(user, address, now);
}

penalty_state login_throttle::penalty(std::string_view user,
                                      std::string_view address,
                                      time_point now) {
  now = advance(now);
  auto recs = lookup(user, address, now);
  penalty_state result;
  if (recs.pair != nullptr)
    result.failures = recs.pair->failures;
  auto consider = [&](const record* rec, const char* key) {
    if (rec == nullptr || rec->window_end <= now)
      return;
    auto left
      = std::chrono::ceil<std::chrono::milliseconds>(rec->window_end - now);
    if (left > result.left) {
      result.left = left;
      result.key = key;
    }
  };
  consider(recs.address, "address");
  consider(recs.pair, "user+address");
  consider(recs.user, "user");
  return result;
}

void login_throttle::succeeded(std::string_view user, std::string_view address,
                               time_point now) {
  now = advance(now);
  auto name = user.substr(0, max_user_key);
  auto from = classify(address);
  // Only the slot of the attempt that just came back: the address keeps its
  // failures (see the class comment).
  if (!from.trusted)
    if (auto rec = addresses_.find(from.key))
      rec->probe_end = time_point{};
  bool was_known = is_known(known_.find(name), from.key, now);
  bool repeat = pairs_.erase(pair_ref{name, from.key});
  // The lane allows() used for this attempt, if any: its slot is free. The
  // username's failures stay, since they came from other addresses.
  if (!was_known)
    if (auto rec = users_.find(name))
      (repeat ? rec->repeat : rec->first).probe_end = time_point{};
  remember(name, from.key, now);
}

size_t login_throttle::tracked() const {
  return addresses_.size() + pairs_.size() + users_.size() + known_.size();
}

bool login_throttle::trusted(std::string_view address) const {
  return in_networks(address, trusted_);
}

login_throttle::time_point login_throttle::advance(time_point now) {
  latest_ = std::max(latest_, now);
  // Past every window a record can have, plus the quiet time.
  auto keep = cfg_.max_penalty + cfg_.forget_after;
  addresses_.expire(latest_, keep);
  pairs_.expire(latest_, keep);
  users_.expire(latest_, keep);
  known_.expire(latest_, cfg_.known_for);
  return latest_;
}

login_throttle::client
login_throttle::classify(std::string_view address) const {
  auto addr = parse_address(address);
  if (!addr)
    return client{ip_address{}, false};
  // Trust is decided on the whole address: a trusted IPv6 network may be
  // narrower than the prefix that keys count by.
  bool trusted = std::any_of(trusted_.begin(), trusted_.end(),
                             [&](const ip_network& net) {
                               return in_network(*addr, net);
                             });
  if (is_mapped_ipv4(*addr))
    return client{*addr, trusted};
  return client{masked(*addr, cfg_.ipv6_prefix), trusted};
}

bool login_throttle::is_known(const known_list* known, const ip_address& key,
                              time_point now) const {
  return known != nullptr
         && std::any_of(
           known->begin(), known->end(), [&](const known_address& k) {
             return k.key == key && now - k.last_success < cfg_.known_for;
           });
}

bool login_throttle::distributed(std::string_view user, const known_list* known,
                                 time_point now) const {
  // One name's pairs are adjacent and start at the lowest address key; the
  // scan stops after `distributed_addresses` unknown ones, and passes at
  // most `known_addresses` known ones.
  unsigned found = 0;
  pairs_.visit_from(pair_ref{user, ip_address{}}, [&](const pair_key& key) {
    if (key.user != user)
      return false;
    if (!is_known(known, key.address, now))
      ++found;
    return found < cfg_.distributed_addresses;
  });
  return found >= cfg_.distributed_addresses;
}

login_throttle::record* login_throttle::user_lane(std::string_view user,
                                                  const ip_address& key,
                                                  bool repeat, time_point now) {
  auto rec = users_.find(user);
  if (rec == nullptr)
    return nullptr;
  auto known = known_.find(user);
  if (is_known(known, key, now) || !distributed(user, known, now))
    return nullptr;
  return repeat ? &rec->repeat : &rec->first;
}

void login_throttle::remember(std::string_view user, const ip_address& key,
                              time_point now) {
  if (cfg_.known_addresses == 0)
    return;
  auto& known = known_.touch(user, now);
  known.erase(std::remove_if(known.begin(), known.end(),
                             [&](const known_address& k) {
                               return k.key == key
                                      || now - k.last_success >= cfg_.known_for;
                             }),
              known.end());
  if (known.size() >= cfg_.known_addresses)
    known.erase(known.begin());
  // `now` is the latest time seen, so the list stays sorted.
  known.push_back(known_address{key, now});
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
  // A penalized record outside its window lets one attempt through and holds
  // it for that attempt: one hash per window, however many connections ask.
  if (rec != nullptr && rec->failures >= cfg_.free_failures)
    rec->probe_end = now + window(rec->failures);
}

void login_throttle::count_failure(record& rec, time_point now) {
  if (rec.failures < std::numeric_limits<unsigned>::max())
    ++rec.failures;
  // Never shortens the window, since `now` and the window length only grow;
  // and the new window outlasts the slot of an attempt in flight, which began
  // no later than `now` and held the record for a shorter window.
  if (rec.failures >= cfg_.free_failures) {
    rec.window_end = now + window(rec.failures);
    ++penalties_;
  }
}

size_t login_throttle::penalized(time_point now) const {
  size_t n = 0;
  auto one = [&](const record& rec) { n += now < rec.window_end ? 1 : 0; };
  addresses_.for_each(one);
  pairs_.for_each(one);
  users_.for_each([&](const user_record& rec) {
    one(rec.first);
    one(rec.repeat);
  });
  return n;
}

} // namespace smsp
