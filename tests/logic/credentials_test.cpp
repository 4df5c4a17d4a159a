// Credential rules without an actor system: names, passwords, cookies, hashes.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <string_view>

#include "actors/logic/credentials.hpp"

using namespace smsp;

namespace {

/// libsodium must be initialized once before cookies or hashes.
const bool crypto_ready = init_crypto();

bool is_lower_hex(const std::string& str) {
  for (char c : str)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

bool is_cookie(const std::string& str) {
  return str.size() == 32 && is_lower_hex(str);
}

} // namespace

TEST_CASE("usernames are 1-32 ASCII letters and digits", "[credentials]") {
  CHECK(valid_username("a"));
  CHECK(valid_username("Z"));
  CHECK(valid_username("0"));
  CHECK(valid_username("Alice42"));
  CHECK(valid_username(std::string(32, 'x')));
  CHECK_FALSE(valid_username(std::string(33, 'x')));
  CHECK_FALSE(valid_username(""));
  CHECK_FALSE(valid_username("ali ce"));
  CHECK_FALSE(valid_username("alice "));
  CHECK_FALSE(valid_username("al-ice"));
  CHECK_FALSE(valid_username("al_ice"));
  CHECK_FALSE(valid_username("al.ice"));
  CHECK_FALSE(valid_username("\xc3\xa9t\xc3\xa9")); // "été" in UTF-8
  CHECK_FALSE(valid_username(std::string_view{"ab\0c", 4}));
}

TEST_CASE("passwords are 1-128 bytes of printable ASCII without space",
          "[credentials]") {
  CHECK(valid_password("!"));
  CHECK(valid_password("~"));
  CHECK(valid_password("s3cret!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
  CHECK(valid_password(std::string(128, 'p')));
  CHECK_FALSE(valid_password(std::string(129, 'p')));
  CHECK_FALSE(valid_password(""));
  CHECK_FALSE(valid_password("pass word"));
  CHECK_FALSE(valid_password(" "));
  CHECK_FALSE(valid_password("pass\x7f"));
  CHECK_FALSE(valid_password("pass\tword"));
  CHECK_FALSE(valid_password("pass\x80"));
  CHECK_FALSE(valid_password(std::string_view{"pa\0ss", 5}));
}

TEST_CASE("cookies are 32 lowercase hex characters and do not repeat",
          "[credentials]") {
  REQUIRE(crypto_ready);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto cookie = new_cookie();
    INFO("cookie: " << cookie);
    REQUIRE(is_cookie(cookie));
    seen.insert(cookie);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("password hashes verify the right password only", "[credentials]") {
  REQUIRE(crypto_ready);
  auto hash = hash_password("s3cret", pwhash_cost::min);
  REQUIRE(hash.has_value());
  CHECK(hash->rfind("$argon2id$", 0) == 0);
  CHECK(hash->find("s3cret") == std::string::npos);
  CHECK(verify_password(*hash, "s3cret"));
  CHECK_FALSE(verify_password(*hash, "s3cret "));
  CHECK_FALSE(verify_password(*hash, "S3cret"));
  CHECK_FALSE(verify_password(*hash, ""));
  CHECK_FALSE(verify_password("not a hash", "s3cret"));
  CHECK_FALSE(verify_password("", "s3cret"));
  // A random salt: the same password never hashes to the same string.
  auto again = hash_password("s3cret", pwhash_cost::min);
  REQUIRE(again.has_value());
  CHECK(*again != *hash);
  CHECK(verify_password(*again, "s3cret"));
}

TEST_CASE("hash costs parse and print", "[credentials]") {
  for (auto cost :
       {pwhash_cost::interactive, pwhash_cost::moderate, pwhash_cost::min})
    CHECK(parse_pwhash_cost(to_string(cost)) == cost);
  CHECK_FALSE(parse_pwhash_cost("fast").has_value());
  CHECK_FALSE(parse_pwhash_cost("").has_value());
}
