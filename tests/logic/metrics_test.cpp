// Tests of the metrics logic: histogram buckets, request counters, and the
// exposition text with its escaping.
#include <catch2/catch.hpp>

#include "actors/logic/metrics.hpp"

using namespace smsp;
using namespace std::chrono_literals;

TEST_CASE("a latency lands in the first bucket whose bound includes it") {
  latency_histogram h;
  h.observe(50us);  // <= 100 µs
  h.observe(100us); // bounds are inclusive (le)
  h.observe(101us); // <= 250 µs
  h.observe(10s);   // the last finite bucket
  h.observe(11s);   // +Inf
  h.observe(-5ms);  // a clock step back counts as 0
  CHECK(h.buckets[0] == 3);
  CHECK(h.buckets[1] == 1);
  CHECK(h.buckets[latency_bounds_ns.size() - 1] == 1);
  CHECK(h.buckets[latency_bounds_ns.size()] == 1);
  CHECK(h.count() == 6);
  CHECK(h.sum_ns
        == 50'000 + 100'000 + 101'000 + 10'000'000'000 + 11'000'000'000);
}

TEST_CASE("histograms merge by adding counts and sums") {
  latency_histogram a;
  latency_histogram b;
  a.observe(1ms);
  b.observe(1ms);
  b.observe(3s);
  a.merge(b);
  CHECK(a.count() == 3);
  CHECK(a.buckets[3] == 2);  // 1 ms
  CHECK(a.buckets[14] == 1); // <= 5 s
  CHECK(a.sum_ns == 3'002'000'000);
  CHECK_FALSE(a.empty());
  CHECK(latency_histogram{}.empty());
}

TEST_CASE("request counters count by command and result") {
  request_counters c;
  CHECK(c.empty());
  c.count(static_cast<size_t>(command::login), result_of(errc::login_failed),
          2ms);
  c.count(static_cast<size_t>(command::login), request_result::ok, 2ms);
  c.count(unknown_command, request_result::bad_request, 0ns);
  request_counters sum;
  sum.merge(c);
  sum.merge(c);
  CHECK(sum.total() == 6);
  auto login = static_cast<size_t>(command::login);
  CHECK(sum.counts[login][static_cast<size_t>(errc::login_failed)] == 2);
  CHECK(sum.counts[login][0] == 2);
  CHECK(sum.counts[unknown_command][16] == 2);
  CHECK(sum.latency[login].count() == 4);
}

TEST_CASE("labels name commands, results and close reasons") {
  CHECK(command_label(0) == "REGISTER");
  CHECK(command_label(static_cast<size_t>(command::dump)) == "DUMP");
  CHECK(command_label(unknown_command) == "unknown");
  CHECK(result_name(request_result::ok) == "ok");
  CHECK(result_name(result_of(errc::not_logged_in)) == "not_logged_in");
  CHECK(result_name(result_of(errc::mailbox_unavailable))
        == "mailbox_unavailable");
  CHECK(result_name(request_result::internal_error) == "internal_error");
  CHECK(result_name(request_result::bad_request) == "bad_request");
  CHECK(close_reason_name(close_reason::no_progress) == "no_progress");
  CHECK(close_reason_name(close_reason::server_stopping) == "server_stopping");
}

TEST_CASE("label values escape backslash, double quote and line feed") {
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escape_label_value("two\nlines") == "two\\nlines");
}

TEST_CASE("floats are written as the text format wants them") {
  CHECK(format_value(0.0001) == "0.0001");
  CHECK(format_value(10) == "10");
  CHECK(format_value(2.5) == "2.5");
  CHECK(format_value(1.0 / 0.0) == "+Inf");
  CHECK(format_value(-1.0 / 0.0) == "-Inf");
  CHECK(format_value(0.0 / 0.0) == "NaN");
  CHECK(format_value(1e-30) == "1e-30");
}

TEST_CASE("the writer produces families, samples and histograms") {
  exposition_writer w;
  w.family("smsp_x_total", "counter", "A help\\text\nwith a line feed");
  w.sample("smsp_x_total", {}, uint64_t{7});
  w.sample("smsp_x_total", {{"a", "1"}, {"b", "q\"uote"}}, uint64_t{8});
  w.family("smsp_g", "gauge", "A gauge");
  w.sample("smsp_g", {}, 1.5);
  w.comment("note\nsplit");
  CHECK(w.text()
        == "# HELP smsp_x_total A help\\\\text\\nwith a line feed\n"
           "# TYPE smsp_x_total counter\n"
           "smsp_x_total 7\n"
           "smsp_x_total{a=\"1\",b=\"q\\\"uote\"} 8\n"
           "# HELP smsp_g A gauge\n"
           "# TYPE smsp_g gauge\n"
           "smsp_g 1.5\n"
           "# note split\n");
}

TEST_CASE("a histogram is written cumulatively with le in seconds") {
  latency_histogram h;
  h.observe(200us);
  h.observe(200us);
  h.observe(20s);
  exposition_writer w;
  w.histogram("smsp_h_seconds", {{"command", "COUNT"}}, h);
  auto& t = w.text();
  CHECK(t.find("smsp_h_seconds_bucket{command=\"COUNT\",le=\"0.0001\"} 0\n")
        != std::string::npos);
  CHECK(t.find("smsp_h_seconds_bucket{command=\"COUNT\",le=\"0.00025\"} 2\n")
        != std::string::npos);
  CHECK(t.find("smsp_h_seconds_bucket{command=\"COUNT\",le=\"10\"} 2\n")
        != std::string::npos);
  CHECK(t.find("smsp_h_seconds_bucket{command=\"COUNT\",le=\"+Inf\"} 3\n")
        != std::string::npos);
  CHECK(t.find("smsp_h_seconds_sum{command=\"COUNT\"} 20.0004\n")
        != std::string::npos);
  CHECK(t.find("smsp_h_seconds_count{command=\"COUNT\"} 3\n")
        != std::string::npos);
  // One line per bucket, plus sum and count.
  CHECK(std::count(t.begin(), t.end(), '\n')
        == static_cast<long>(latency_bounds_ns.size() + 3));
}
