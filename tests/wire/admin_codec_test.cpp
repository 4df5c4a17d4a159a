// Tests of the admin interface's pure codec (net/wire/admin.hpp).
#include <catch2/catch.hpp>

#include "net/wire/admin.hpp"

using namespace smsp;
using namespace smsp::admin;

namespace {

request parsed(std::string_view line) {
  auto result = parse(line);
  REQUIRE(std::holds_alternative<request>(result));
  return std::get<request>(result);
}

std::string refused(std::string_view line) {
  auto result = parse(line);
  REQUIRE(std::holds_alternative<std::string>(result));
  return std::get<std::string>(result);
}

const std::string good_token(64, 'a');

} // namespace

TEST_CASE("every verb parses with its arity, case-insensitively") {
  CHECK(parsed("AUTH " + good_token).v == verb::auth);
  CHECK(parsed("stats").v == verb::stats);
  CHECK(parsed("Users").args.empty());
  auto users = parsed("USERS al*");
  CHECK(users.v == verb::users);
  CHECK(users.args == std::vector<std::string>{"al*"});
  auto del = parsed("  DELETE   bob  ");
  CHECK(del.v == verb::remove);
  CHECK(del.args == std::vector<std::string>{"bob"});
  auto pw = parsed("PASSWD bob n3w!pass\r");
  CHECK(pw.v == verb::passwd);
  CHECK(pw.args == std::vector<std::string>{"bob", "n3w!pass"});
  CHECK(parsed("SESSIONS").v == verb::sessions);
  CHECK(parsed("kick bob").args == std::vector<std::string>{"bob"});
}

TEST_CASE("wrong arity gets the verb's usage line") {
  CHECK(refused("AUTH") == "ERR usage: AUTH <token>");
  CHECK(refused("STATS now") == "ERR usage: STATS");
  CHECK(refused("USERS a b") == "ERR usage: USERS [<pattern>]");
  CHECK(refused("DELETE") == "ERR usage: DELETE <username>");
  CHECK(refused("PASSWD bob") == "ERR usage: PASSWD <username> <password>");
  CHECK(refused("KICK a b") == "ERR usage: KICK <username>");
  for (auto& spec : verbs)
    CHECK(reply::usage(spec).rfind("ERR usage: ", 0) == 0);
}

TEST_CASE("unknown and empty requests") {
  CHECK(refused("REGISTER bob pw") == reply::unknown_verb);
  CHECK(refused("") == reply::empty_request);
  CHECK(refused("   \r") == reply::empty_request);
}

TEST_CASE("USERS patterns are letters, digits and glob characters only") {
  CHECK(valid_pattern("*"));
  CHECK(valid_pattern("a?c[0-9]*"));
  CHECK(valid_pattern("[^x]*"));
  CHECK_FALSE(valid_pattern(""));
  CHECK_FALSE(valid_pattern("a'b"));
  CHECK_FALSE(valid_pattern("a;b"));
  CHECK_FALSE(valid_pattern(std::string(max_pattern + 1, 'a')));
  CHECK(valid_pattern(std::string(max_pattern, 'a')));
  CHECK(refused("USERS a%") == reply::bad_pattern);
}

TEST_CASE("tokens are 64 lowercase hex digits") {
  CHECK(valid_token(good_token));
  CHECK(valid_token(std::string(32, 'f') + std::string(32, '0')));
  CHECK_FALSE(valid_token(std::string(63, 'a')));
  CHECK_FALSE(valid_token(std::string(65, 'a')));
  CHECK_FALSE(valid_token(std::string(64, 'A')));
  CHECK_FALSE(valid_token(std::string(64, 'g')));
}

TEST_CASE("replies: OK with payload, ERR, and their parsing") {
  CHECK(reply::ok_with("") == "OK");
  CHECK(reply::ok_with("a b") == "OK a b");
  auto ok = parse_reply("OK a b");
  REQUIRE(ok);
  CHECK(ok->ok);
  CHECK(ok->text == "a b");
  auto bare = parse_reply("OK");
  REQUIRE(bare);
  CHECK(bare->ok);
  CHECK(bare->text.empty());
  auto err = parse_reply(std::string{reply::wrong_token});
  REQUIRE(err);
  CHECK_FALSE(err->ok);
  CHECK(err->text == "wrong token");
  CHECK_FALSE(parse_reply("OKAY"));
  CHECK_FALSE(parse_reply("KO no"));
  CHECK_FALSE(parse_reply(""));
}

TEST_CASE("every domain error has an ERR line") {
  for (auto code : {errc::no_such_user, errc::bad_password, errc::not_logged_in,
                    errc::user_on_node, errc::change_under_way,
                    errc::storage_failed, errc::server_busy}) {
    auto line = reply::failure(code);
    CHECK(line.rfind("ERR ", 0) == 0);
    CHECK(line != reply::internal_error);
  }
  CHECK(reply::failure(errc::mailbox_empty) == reply::internal_error);
}

TEST_CASE("fields and names round-trip") {
  std::vector<field> fields{{"uptime_s", "12"}, {"version", "0.1.0"}};
  auto text = encode_fields(fields);
  CHECK(text == "uptime_s=12 version=0.1.0");
  auto back = decode_fields(text);
  REQUIRE(back);
  CHECK(*back == fields);
  CHECK(decode_fields("")->empty());
  CHECK_FALSE(decode_fields("novalue"));
  CHECK_FALSE(decode_fields("=1"));
  CHECK_FALSE(decode_fields("Key=1"));
  CHECK_FALSE(decode_fields("a=1=2"));
  std::vector<std::string> names{"alice", "bob"};
  CHECK(encode_names(names) == "alice bob");
  CHECK(decode_names("alice bob") == names);
  CHECK(decode_names("").empty());
}

TEST_CASE("the admin file round-trips and refuses damaged text") {
  endpoint e{"127.0.0.1", 40123, good_token, 4242};
  auto text = format_file(e);
  auto back = parse_file(text);
  REQUIRE(back);
  CHECK(back->host == e.host);
  CHECK(back->port == e.port);
  CHECK(back->token == e.token);
  CHECK(back->pid == e.pid);
  CHECK_FALSE(parse_file(""));
  CHECK_FALSE(parse_file("host=127.0.0.1\nport=1\n"));
  CHECK_FALSE(parse_file("host=127.0.0.1\nport=0\ntoken=" + good_token));
  CHECK_FALSE(parse_file("host=127.0.0.1\nport=70000\ntoken=" + good_token));
  CHECK_FALSE(parse_file("host=127.0.0.1\nport=1\ntoken=xyz"));
  CHECK_FALSE(
    parse_file("host=127.0.0.1\nport=1\ntoken=" + good_token + "\ngarbage"));
}
