// Name and password rules, session cookies, Argon2id hashing (libsodium).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace smsp {

/// Longest username, in bytes (PROTOCOL.md section 3).
inline constexpr size_t max_username_bytes = 32;

/// Longest password, in bytes (PROTOCOL.md section 3).
inline constexpr size_t max_password_bytes = 128;

/// Length of the cookies this server issues, in hex characters (128 bits).
inline constexpr size_t cookie_chars = 32;

/// 1-32 characters from a-zA-Z0-9.
bool valid_username(std::string_view name);

/// 1-128 bytes of printable ASCII without space (0x21-0x7E).
bool valid_password(std::string_view password);

/// Initializes libsodium; call once before any function below. Returns false
/// when the library cannot be initialized (no secure random source).
bool init_crypto();

/// 128 bits from libsodium's CSPRNG as 32 lowercase hex characters.
std::string new_cookie();

/// Cost of one Argon2id hash.
enum class pwhash_cost {
  /// libsodium's INTERACTIVE limits (64 MiB, 2 passes): the default.
  interactive,
  /// libsodium's MODERATE limits (256 MiB, 3 passes).
  moderate,
  /// The smallest limits libsodium accepts: for tests and benchmarks only,
  /// never for real accounts.
  min,
};

std::optional<pwhash_cost> parse_pwhash_cost(std::string_view name);
std::string_view to_string(pwhash_cost cost);

/// Argon2id hash with a random salt in libsodium's encoded string form, or
/// nullopt when memory for the hash cannot be allocated.
std::optional<std::string> hash_password(std::string_view password,
                                         pwhash_cost cost);

/// Compares in constant time through libsodium; false for a malformed hash.
bool verify_password(const std::string& encoded_hash,
                     std::string_view password);

} // namespace smsp
