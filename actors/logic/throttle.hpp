// Brute-force throttling of LOGIN per address, (username, address), username.
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
  /// Failures a record may have before its first window.
  unsigned free_failures = 3;
  /// A failure record is forgotten once its longest possible window has been
  /// over for this long without a new failure (max_penalty + forget_after
  /// after its last failure). At least max_penalty, so that the attempt
  /// admitted when a window ends keeps its slot; at most 30 days.
  std::chrono::milliseconds forget_after{std::chrono::minutes{15}};
  /// Cap on the entries of each of the four tables: addresses, (username,
  /// address) pairs, usernames, usernames with known addresses.
  std::size_t max_tracked = 100000;
  /// IPv6 addresses count per prefix of this length (0-128): one host usually
  /// holds a whole /64, so per-address keys would be trivial to escape.
  unsigned ipv6_prefix = 64;
  /// Addresses exempt from the per-address key (their (username, address)
  /// pairs and their usernames are still throttled). A server behind a proxy
  /// sees the proxy's address for every client: it must leave the proxy out
  /// of this list, or throttling per address is off for everyone.
  std::vector<std::string> trusted_networks{"127.0.0.0/8", "::1/128"};
  /// Distinct address keys that must have failed for a username recently
  /// (each holding a pair record) before its username-wide key applies: a
  /// guess spread over that many addresses. 2-64, so that one address alone
  /// can never trigger it.
  unsigned distributed_addresses = 3;
  /// Address keys remembered per username after a successful LOGIN from
  /// them (those of the latest successes); the username-wide key never
  /// applies to them. 0-64; 0 remembers none, so every address is new.
  unsigned known_addresses = 4;
  /// How long a successful LOGIN keeps its address known: 1 ms to 1 year.
  std::chrono::milliseconds known_for{std::chrono::hours{24 * 30}};
};

/// What the throttle holds against a (username, address), for the log.
struct penalty_state {
  /// Failures counted for this username from this address (key 2).
  unsigned failures = 0;
  /// How long LOGINs matching the keys that apply are refused from now: the
  /// longest open window among them; 0 when none is open.
  std::chrono::milliseconds left{0};
  /// The key whose window is the longest: "address", "user+address" or
  /// "user" (a guess spread over many addresses); "" when none is open.
  const char* key = "";
};

/// An auth penalty in Dovecot's manner, over three keys. Usage, once per
/// LOGIN:
///
///     if (!throttle.allows(user, addr, now))  -> reply as for a wrong
///                                                password, without hashing
///     else hash, then failed(...) or succeeded(...)
///
/// Penalty records. Every key below has a record counting failures. The
/// failure that reaches `free_failures` opens a penalty window of
/// `first_penalty`; each further failure opens the next window from its own
/// time, twice as long, capped at `max_penalty` (1, 2, 4, 8, 15, 15 s with the
/// defaults). allows() refuses while any record that applies to the attempt
/// is in a window; refusals change nothing, so they neither extend a window
/// nor count. Once a record is penalized it admits at most one attempt per
/// window: the attempt admitted after a window holds the record until its
/// outcome arrives, or for one more window if it never does, so concurrent
/// LOGINs cannot make the server hash faster than the windows allow. Before
/// its first window a record admits attempts concurrently (a real client may
/// log in on several connections at once); every failure of an admitted
/// attempt counts, even one that arrives inside a window.
///
/// The keys. An address key is the client's IPv4 address, or its IPv6
/// address cut to `ipv6_prefix` bits; any text that is not an address is one
/// shared untrusted key. Usernames are cut to 64 bytes (valid ones have at
/// most 32).
/// 1. The address, if untrusted: every failure from it, whatever the name.
///    It bounds one address guessing many names. A success never resets it,
///    else an attacker could log into an account of his own between guesses
///    at others; a success only frees its slot for an attempt in flight.
/// 2. The (username, address) pair, for every address, trusted ones too: it
///    bounds one address guessing one name. A success from that address as
///    that user erases it (the user's own typos are forgiven).
/// 3. The username: every failure for it from an address that is not known
///    for it (see below). It applies only while `distributed_addresses`
///    distinct address keys not known for the name hold a pair record (they
///    failed for it within max_penalty + forget_after and have not logged in
///    since): a guess spread over many addresses. It never applies to an
///    address known for the name. It has two records, two lanes: attempts
///    from addresses that already hold a pair record for the name (they have
///    failed for it) wait for the `repeat` record; attempts from addresses
///    that never failed for it wait for the `first` record. So attackers
///    whose addresses have all failed once cannot take the slot that a new
///    address of the real user needs.
/// Known addresses: a successful LOGIN remembers its address key for the
/// name for `known_for`, at most `known_addresses` of them per name (the
/// most recent successes): OWASP's "device cookies" kept on the server side,
/// since the protocol has no cookie before LOGIN.
///
/// Why three keys: the single per-username key of before was shared by the
/// attacker and the victim, so whoever kept failing from one address locked
/// the right password out from every other address. Dovecot keys its
/// penalty per address only, which leaves a guess spread over many addresses
/// unbounded; key 3 bounds that, and engages only for a spread guess and
/// never against a known address, so it cannot be used to lock the user out
/// from where she logs in.
///
/// Rate bounds on admitted (hashed) guesses, with the defaults:
/// - one address, one name: 3, then one per window (key 2, and key 1 if the
///   address is untrusted);
/// - one untrusted address, any number of names: 3 in total, then one per
///   window (key 1); a trusted address is bounded per name only (key 2);
/// - many addresses, one name: the first `distributed_addresses` - 1 address
///   keys are bounded each as one address; from then on at most one attempt
///   per window from addresses that already failed for the name plus one
///   from addresses that did not, so two per window at the cap (15 s),
///   however many addresses guess.
/// - An attacker who waits max_penalty + forget_after after each round is
///   forgotten and gets the free failures again: 3 per 15 min 15 s per
///   record, far fewer than one per capped window.
///
/// Trade-offs:
/// - The real user from a known address is never refused for failures from
///   elsewhere. From an address that is not known, she is refused only if
///   she failed from it herself (key 2), if she shares an untrusted address
///   with the attacker (key 1: NAT, proxy), or during a spread guess (key 3).
///   In the last case she waits for the `first` lane: at most one window
///   when the attacking addresses have all failed for her name before, and
///   at most one window after the attack stops; against a fleet that spends
///   a fresh address on every guess she competes with it for one attempt
///   per window. Her success makes that address known.
/// - An address shared by attacker and victim (NAT, proxy, a trusted proxy
///   included) is one address: the server cannot tell them apart there, and
///   the lock-out of before remains for users behind it.
/// - A spread guess gets two attempts per window rather than one: the price
///   of keeping a lane free for new addresses.
/// - An address reassigned to someone else stays known for `known_for`;
///   keys 1 and 2 still bound it.
///
/// Memory bound: failed() creates entries in the address, pair and username
/// tables; succeeded() only in the table of known addresses (so refusals
/// create nothing). Each table holds at most `max_tracked` entries; a new
/// key in a full table evicts the entry whose last failure (for the known
/// table: last success) is oldest. Failure entries also go once max_penalty
/// + forget_after have passed since their last failure, known ones after
/// `known_for`; checked on every call. A known entry holds at most
/// `known_addresses` addresses. Measured with glibc at the defaults, with
/// usernames of 46 bytes: the address table full takes 13 MB, the pair and
/// name tables 22 MB each, the known table with 4 addresses per name 32 MB;
/// 90 MB in all (scale with `max_tracked`). Filling the address table takes
/// 100000 addresses; the pair and name tables fill from one trusted address
/// (or from 33334 untrusted ones, 3 free names each); the known one needs
/// 100000 accounts. Evicting a penalized entry takes
/// `max_tracked` fresh failures, each of which cost the attacker a hash;
/// evicting a known address takes `max_tracked` successful LOGINs to
/// distinct accounts. Lookups use ordered sets: no hash flooding.
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
  /// Never call it for an attempt that allows() refused. Returns the state
  /// the failure left (as penalty()).
  penalty_state failed(std::string_view user, std::string_view address,
                       time_point now);

  /// The penalty that applies to a LOGIN as `user` from `address` at `now`;
  /// changes nothing but dropping expired entries.
  penalty_state penalty(std::string_view user, std::string_view address,
                        time_point now);

  /// The attempt admitted by allows() had the right password.
  void succeeded(std::string_view user, std::string_view address,
                 time_point now);

  /// Entries held in the four tables, including any that expired since the
  /// last call.
  std::size_t tracked() const;

  /// Whether `address` is exempt from the per-address key.
  bool trusted(std::string_view address) const;

  /// Penalty windows opened since construction (each failure that opens or
  /// renews a record's window counts once).
  std::uint64_t penalties() const {
    return penalties_;
  }

  /// Records whose penalty window is open at `now`. O(entries): for a
  /// metrics scrape, not for every LOGIN.
  std::size_t penalized(time_point now) const;

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
  };

  /// Key 3, in its two lanes (see the class comment).
  struct user_record {
    /// Failures from addresses that had never failed for the name.
    record first;
    /// Failures from addresses that had failed for it before.
    record repeat;
  };

  struct known_address {
    ip_address key;
    time_point last_success;
  };

  /// Invariant: sorted by last success, oldest first, keys distinct, at most
  /// `known_addresses` entries.
  using known_list = std::vector<known_address>;

  /// Lookup form of a pair key, without copying the username.
  struct pair_ref {
    std::string_view user;
    const ip_address& address;
  };

  /// Key 2. Ordered by username first, so that one name's pairs are
  /// adjacent.
  struct pair_key {
    std::string user;
    ip_address address;

    explicit pair_key(const pair_ref& ref)
      : user(ref.user), address(ref.address) {
      // nop
    }
  };

  friend bool operator<(const pair_key& a, const pair_key& b);
  friend bool operator<(const pair_key& a, const pair_ref& b);
  friend bool operator<(const pair_ref& a, const pair_key& b);

  /// Entries in a list sorted by stamp (expiry and eviction pop the front)
  /// plus a set of list iterators sorted by key for lookup.
  template <class Key, class Value>
  class table {
  public:
    struct entry {
      Key key;
      Value value;
      /// Last failure; for known addresses, last success. Invariant: the
      /// list is sorted by this, oldest first.
      time_point stamp;
    };
    using list_type = std::list<entry>;
    using iterator = typename list_type::iterator;

    explicit table(std::size_t max) : max_(max) {
      // nop
    }

    template <class K>
    Value* find(const K& key) {
      auto i = index_.find(key);
      return i == index_.end() ? nullptr : &(*i)->value;
    }

    /// The value of `key`, created (evicting the oldest stamp when full) if
    /// needed, and moved to the back stamped `now`.
    template <class K>
    Value& touch(const K& key, time_point now);

    /// Whether there was an entry to erase.
    template <class K>
    bool erase(const K& key);

    /// Calls `visit(key)` on the keys from the first one not less than
    /// `from`, in key order, as long as it returns true.
    template <class K, class F>
    void visit_from(const K& from, F visit) const;

    /// Drops entries stamped `keep` or more before `now`.
    void expire(time_point now, std::chrono::milliseconds keep);

    std::size_t size() const {
      return order_.size();
    }

    /// Calls `visit(value)` for every entry.
    template <class F>
    void for_each(F visit) const {
      for (auto& e : order_)
        visit(e.value);
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

  /// How allows(), failed() and succeeded() see the client.
  struct client {
    /// The address key (see the class comment).
    ip_address key;
    bool trusted;
  };

  /// The records that apply to a LOGIN as `user` from `address` (nullptr
  /// where none applies), after advance(now).
  struct applicable {
    record* address;
    record* pair;
    record* user;
  };

  applicable lookup(std::string_view user, std::string_view address,
                    time_point now);

  /// Clamps `now` to the latest time seen and drops expired entries.
  time_point advance(time_point now);

  client classify(std::string_view address) const;

  /// Whether `key` logged in as the owner of `known` within `known_for`.
  bool is_known(const known_list* known, const ip_address& key,
                time_point now) const;

  /// Whether `distributed_addresses` address keys not in `known` hold a pair
  /// record for `user`.
  bool distributed(std::string_view user, const known_list* known,
                   time_point now) const;

  /// The key-3 record that applies to an attempt for `user` from `key`, or
  /// nullptr when key 3 does not apply (not a spread guess, or a known
  /// address). `repeat`: whether the pair has a record.
  record* user_lane(std::string_view user, const ip_address& key, bool repeat,
                    time_point now);

  void remember(std::string_view user, const ip_address& key, time_point now);

  std::chrono::milliseconds window(unsigned failures) const;

  bool blocked(const record* rec, time_point now) const;

  void admit(record* rec, time_point now);

  void count_failure(record& rec, time_point now);

  throttle_config cfg_;
  std::vector<ip_network> trusted_;
  time_point latest_ = time_point::min();
  std::uint64_t penalties_ = 0;
  /// Key 1.
  table<ip_address, record> addresses_;
  /// Key 2.
  table<pair_key, record> pairs_;
  /// Key 3.
  table<std::string, user_record> users_;
  table<std::string, known_list> known_;
};

} // namespace smsp
