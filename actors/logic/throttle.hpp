// Brute-force throttling of LOGIN per username and per client address.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace smsp {

// -- addresses and networks ---------------------------------------------------

/// An IP address in 16 bytes: IPv4 in its IPv4-mapped IPv6 form
/// (::ffff:a.b.c.d), so that 127.0.0.1 and ::ffff:127.0.0.1 are one address
/// and one comparison covers both families.
using ip_address = std::array<std::uint8_t, 16>;

/// A CIDR network over the 16-byte form: an IPv4 /n is stored as /(96 + n).
struct ip_network {
  /// Invariant: every bit past `prefix` is zero.
  ip_address base{};
  /// Leading bits of `base` an address must share, 0-128.
  unsigned prefix = 128;
};

/// A numeric IPv4 or IPv6 address (inet_pton); also accepts IPv6 in brackets
/// and drops a "%zone" suffix. nullopt for anything else, host names included.
std::optional<ip_address> parse_address(std::string_view text);

/// "address/length" with a length of 0-32 (IPv4) or 0-128 (IPv6) in decimal,
/// or a bare address for one host. nullopt for garbage, a bad length, or host
/// bits set past the length ("10.0.0.1/8"): for a list of trusted networks
/// a typo should fail loudly rather than trust something else.
std::optional<ip_network> parse_network(std::string_view text);

bool in_network(const ip_address& addr, const ip_network& net);

/// Whether the numeric address `text` lies in one of `nets`; false when `text`
/// is not an address.
bool in_networks(std::string_view text, const std::vector<ip_network>& nets);

// -- the policy ---------------------------------------------------------------

struct throttle_config {
  /// Window opened by the failure that uses up the free ones.
  std::chrono::milliseconds first_penalty{1000};
  /// Each further failure doubles the window up to this cap (at most a day).
  std::chrono::milliseconds max_penalty{15000};
  /// Failures a key may have before its first window.
  unsigned free_failures = 3;
  /// A key is forgotten once its longest possible window has been over for
  /// this long without a new failure (max_penalty + forget_after after its
  /// last failure). At least max_penalty, so that the attempt admitted when a
  /// window ends keeps its slot; at most 30 days.
  std::chrono::milliseconds forget_after{std::chrono::minutes{15}};
  /// Cap on the usernames and, separately, on the addresses tracked.
  std::size_t max_tracked = 100000;
  /// IPv6 addresses count per prefix of this length (0-128): one host usually
  /// holds a whole /64, so per-address keys would be trivial to escape.
  unsigned ipv6_prefix = 64;
  /// Addresses exempt from the address dimension (their usernames are still
  /// throttled). A server behind a proxy sees the proxy's address for every
  /// client: it must leave the proxy out of this list, or throttling per
  /// address is off for everyone.
  std::vector<std::string> trusted_networks{"127.0.0.0/8", "::1/128"};
};

/// Dovecot-style auth penalty. Usage, once per LOGIN:
///
///     if (!throttle.allows(user, addr, now))  -> reply as for a wrong
///                                                password, without hashing
///     else hash, then failed(...) or succeeded(...)
///
/// Each key (a username; separately, an untrusted client address) counts its
/// failures. The failure that reaches `free_failures` opens a penalty window
/// of `first_penalty`; each further failure opens the next window from its own
/// time, twice as long, capped at `max_penalty` (1, 2, 4, 8, 15, 15 s with the
/// defaults). allows() refuses while the username or the address is in a
/// window; refusals change nothing, so they neither extend a window nor count.
///
/// Rate bound: once a key is penalized, allows() admits at most one attempt per
/// window. The attempt admitted after a window holds the key until its outcome
/// arrives, or for one more window if it never does; so concurrent LOGINs
/// cannot make the server hash faster than the windows allow. Before its first
/// window a key admits attempts concurrently (a real client may log in on
/// several connections at once); every failure of an admitted attempt counts,
/// even one that arrives inside a window, so such a burst drives the key
/// straight toward the cap.
///
/// What succeeded() resets: the username's record, completely (Dovecot does
/// the same). The address keeps its failures and its window: otherwise an
/// attacker could log into an account of his own between guesses at others and
/// never be penalized per address. A success only frees the address's slot
/// for an attempt in flight (see the rate bound); it never shortens a window.
/// The address forgets its failures by expiry alone, so a busy shared address
/// (a company NAT) with frequent typos may stay penalized; such networks belong
/// in `trusted_networks`.
///
/// Memory bound: only failed() creates entries, one per username and one per
/// untrusted address (IPv6 per `ipv6_prefix`). Each table holds at most
/// `max_tracked` entries; a new key in a full table evicts the one whose last
/// failure is oldest. Entries also go once max_penalty + forget_after have
/// passed since their last failure, checked on every call (with the defaults,
/// an attacker who waits for that gets 3 guesses per 15 min 15 s, far fewer
/// than one per capped window).
/// Usernames are cut to 64 bytes (valid ones have at most 32). Measured with
/// glibc, 100000 usernames of 46 bytes plus 100000 addresses take 34 MB, so
/// the defaults stay under about 40 MB. Evicting a penalized key takes
/// `max_tracked` fresh failures, each of which cost the attacker a hash.
/// Lookups use ordered sets: no hash flooding.
///
/// Time comes from the caller; a `now` earlier than one seen before is taken
/// as the latest seen, so the class never goes back in time.
class login_throttle {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  /// Throws std::invalid_argument for a bad trusted network or a bad setting.
  explicit login_throttle(throttle_config cfg);

  /// False: answer as for a wrong password, without hashing. True: go ahead,
  /// and report the outcome with failed() or succeeded().
  bool allows(std::string_view user, std::string_view address, time_point now);

  /// The attempt admitted by allows() had a wrong password or no such user.
  /// Never call it for an attempt that allows() refused.
  void failed(std::string_view user, std::string_view address, time_point now);

  void succeeded(std::string_view user, std::string_view address,
                 time_point now);

  /// Entries held in both tables, including any that expired since the last
  /// call.
  std::size_t tracked() const;

  /// Whether `address` is exempt from the address dimension.
  bool trusted(std::string_view address) const;

  const throttle_config& config() const {
    return cfg_;
  }

private:
  struct record {
    /// Counted failures, saturating.
    unsigned failures = 0;
    /// allows() refuses before this: the penalty window.
    time_point window_end;
    /// allows() refuses before this: an attempt admitted after a window is in
    /// flight.
    time_point probe_end;
    /// Invariant: the table's list is sorted by this, oldest first.
    time_point last_failure;
  };

  /// Records in a list sorted by last failure (expiry and eviction pop the
  /// front) plus a set of list iterators sorted by key for lookup.
  template <class Key>
  class table {
  public:
    struct entry {
      Key key;
      record rec;
    };
    using list_type = std::list<entry>;
    using iterator = typename list_type::iterator;

    explicit table(std::size_t max) : max_(max) {
      // nop
    }

    template <class K>
    record* find(const K& key) {
      auto i = index_.find(key);
      return i == index_.end() ? nullptr : &(*i)->rec;
    }

    /// The record of `key`, created (evicting the longest idle when full) if
    /// needed, and moved to the back as failed at `now`.
    template <class K>
    record& touch(const K& key, time_point now);

    template <class K>
    void erase(const K& key);

    /// Drops records whose last failure is `keep` or more before `now`.
    void expire(time_point now, std::chrono::milliseconds keep);

    std::size_t size() const {
      return order_.size();
    }

  private:
    struct by_key {
      using is_transparent = void;
      bool operator()(iterator a, iterator b) const {
        return a->key < b->key;
      }
      template <class K>
      bool operator()(iterator a, const K& b) const {
        return a->key < b;
      }
      template <class K>
      bool operator()(const K& a, iterator b) const {
        return a < b->key;
      }
    };

    std::size_t max_;
    list_type order_;
    std::set<iterator, by_key> index_;
  };

  /// Clamps `now` to the latest time seen and drops expired entries.
  time_point advance(time_point now);

  /// The key of an untrusted address, or nullopt for a trusted one. Text that
  /// is not an address falls into one shared key (::): it is not trusted.
  std::optional<ip_address> address_key(std::string_view address) const;

  std::chrono::milliseconds window(unsigned failures) const;

  bool blocked(const record* rec, time_point now) const;

  void admit(record* rec, time_point now);

  void count_failure(record& rec, time_point now);

  throttle_config cfg_;
  std::vector<ip_network> trusted_;
  time_point latest_ = time_point::min();
  table<std::string> users_;
  table<ip_address> addresses_;
};

} // namespace smsp
