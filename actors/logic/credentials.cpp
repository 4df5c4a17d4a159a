// Username and password rules, cookies from the CSPRNG, Argon2id via libsodium.
#include "actors/logic/credentials.hpp"

#include <algorithm>

#include <sodium.h>

namespace smsp {

bool valid_username(std::string_view name) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
  };
  return !name.empty() && name.size() <= max_username_bytes
         && std::all_of(name.begin(), name.end(), alnum);
}

bool valid_password(std::string_view password) {
  auto printable = [](char c) { return c >= 0x21 && c <= 0x7e; };
  return !password.empty() && password.size() <= max_password_bytes
         && std::all_of(password.begin(), password.end(), printable);
}

bool init_crypto() {
  return sodium_init() >= 0;
}

std::string new_cookie() {
  unsigned char bytes[cookie_chars / 2];
  randombytes_buf(bytes, sizeof(bytes));
  char hex[sizeof(bytes) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), bytes, sizeof(bytes));
  return std::string{hex, sizeof(bytes) * 2};
}

std::optional<pwhash_cost> parse_pwhash_cost(std::string_view name) {
  if (name == "interactive")
    return pwhash_cost::interactive;
  if (name == "moderate")
    return pwhash_cost::moderate;
  if (name == "min")
    return pwhash_cost::min;
  return std::nullopt;
}

std::string_view to_string(pwhash_cost cost) {
  switch (cost) {
    case pwhash_cost::moderate:
      return "moderate";
    case pwhash_cost::min:
      return "min";
    default:
      return "interactive";
  }
}

std::optional<std::string> hash_password(std::string_view password,
                                         pwhash_cost cost) {
  unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
  size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (cost == pwhash_cost::moderate) {
    ops = crypto_pwhash_OPSLIMIT_MODERATE;
    mem = crypto_pwhash_MEMLIMIT_MODERATE;
  } else if (cost == pwhash_cost::min) {
    ops = crypto_pwhash_OPSLIMIT_MIN;
    mem = crypto_pwhash_MEMLIMIT_MIN;
  }
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops, mem,
                            crypto_pwhash_ALG_ARGON2ID13)
      != 0)
    return std::nullopt;
  return std::string{out};
}

bool verify_password(const std::string& encoded_hash,
                     std::string_view password) {
  return crypto_pwhash_str_verify(encoded_hash.c_str(), password.data(),
                                  password.size())
         == 0;
}

} // namespace smsp
