// The metrics endpoint: gathers each actor's figures and writes them out.
#include "app/metrics_http.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

// -- the process, read from /proc/self at scrape time ------------------------

/// Resident set size in bytes, or nullopt when /proc cannot tell.
std::optional<uint64_t> resident_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  uint64_t pages = 0;
  uint64_t resident = 0;
  if (!(statm >> pages >> resident))
    return std::nullopt;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

/// Open file descriptors, or nullopt when /proc cannot tell.
std::optional<uint64_t> open_fds() {
  std::error_code ec;
  uint64_t n = 0;
  std::filesystem::directory_iterator i{"/proc/self/fd", ec};
  if (ec)
    return std::nullopt;
  for (std::filesystem::directory_iterator end; !ec && i != end;
       i.increment(ec))
    ++n;
  // The iterator's own descriptor was counted too.
  return n > 0 ? n - 1 : 0;
}

// -- what one scrape gathers --------------------------------------------------

/// Every source's answer, or nothing when it did not answer in time.
struct gathered {
  std::optional<connection_totals> connections;
  std::optional<acceptor_figures> acceptor;
  std::optional<std::pair<registry_figures, throttle_figures>> registry;
  std::optional<uint64_t> imq;
  std::optional<writer_figures> writer;
  std::optional<hasher_figures> hasher;
};

constexpr const char* source_names[] = {"connections", "acceptor", "registry",
                                        "imq",         "store",    "hasher"};

/// Asks each source in turn; all of them together wait at most `timeout`.
gathered gather(caf::actor_system& sys, const metrics_sources& src,
                std::chrono::milliseconds timeout) {
  gathered g;
  caf::scoped_actor self{sys};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Time left for the next request; none once the deadline passed.
  auto left = [&]() -> std::optional<std::chrono::milliseconds> {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (d.count() <= 0)
      return std::nullopt;
    return d;
  };
  auto ask = [&](const auto& dest, auto on_value, auto... xs) {
    auto wait = left();
    if (!dest || !wait)
      return;
    self->request(dest, *wait, xs...).receive(on_value, [](caf::error&) {});
  };
  ask(
    src.connections,
    [&](connection_totals& x) { g.connections = std::move(x); },
    metrics_atom::value);
  ask(
    src.acceptor, [&](acceptor_figures& x) { g.acceptor = x; },
    metrics_atom::value);
  ask(
    src.registry,
    [&](registry_figures& r, throttle_figures& t) {
      g.registry.emplace(std::move(r), t);
    },
    metrics_atom::value);
  ask(
    src.imq, [&](uint64_t n) { g.imq = n; }, count_atom::value);
  ask(
    src.writer, [&](writer_figures& x) { g.writer = std::move(x); },
    metrics_atom::value);
  ask(
    src.hasher, [&](hasher_figures& x) { g.hasher = std::move(x); },
    metrics_atom::value);
  return g;
}

// -- the text -----------------------------------------------------------------

void write_requests(exposition_writer& w, const request_counters& r) {
  w.family("smsp_requests_total", "counter",
           "Requests answered, by command and result (ok, or the error: "
           "not_logged_in ... mailbox_unavailable, internal_error, "
           "bad_request for one that did not parse).");
  for (size_t c = 0; c < command_label_count; ++c)
    for (size_t k = 0; k < request_result_count; ++k)
      w.sample("smsp_requests_total",
               {{"command", command_label(c)},
                {"result", result_name(static_cast<request_result>(k))}},
               r.counts[c][k]);
  w.family("smsp_request_duration_seconds", "histogram",
           "Seconds from starting a request to having its reply, by command.");
  for (size_t c = 0; c < command_label_count; ++c)
    w.histogram("smsp_request_duration_seconds",
                {{"command", command_label(c)}}, r.latency[c]);
}

std::string render(const gathered& g, const metrics_endpoint_config& cfg) {
  exposition_writer w;
  bool answered[] = {g.connections.has_value(), g.acceptor.has_value(),
                     g.registry.has_value(),    g.imq.has_value(),
                     g.writer.has_value(),      g.hasher.has_value()};
  w.family("smsp_scrape_source_up", "gauge",
           "1 if the actor answered this scrape in time, 0 if its series are "
           "missing from it.");
  for (size_t i = 0; i < std::size(source_names); ++i) {
    if (!answered[i])
      w.comment(std::string{"source "} + source_names[i]
                + " did not answer within the scrape timeout: its series "
                  "are left out");
    w.sample("smsp_scrape_source_up", {{"source", source_names[i]}},
             uint64_t{answered[i] ? 1u : 0u});
  }
  w.family("smsp_build_info", "gauge",
           "Always 1; the version is in the label.");
  w.sample("smsp_build_info", {{"version", smsp_version()}}, uint64_t{1});
  w.single("smsp_start_time_seconds", "gauge",
           "When the server started, in seconds since the Unix epoch.",
           cfg.start_time);
  if (auto rss = resident_bytes()) {
    w.single("smsp_process_resident_memory_bytes", "gauge",
             "Resident memory of the server process in bytes.", *rss);
  }
  if (auto fds = open_fds()) {
    w.single("smsp_process_open_fds", "gauge",
             "File descriptors the server process has open.", *fds);
  }
  if (auto& a = g.acceptor) {
    w.single("smsp_connections_open", "gauge", "Client connections open now.",
             a->open);
    w.single("smsp_connections_accepted_total", "counter",
             "Client connections accepted.", a->accepted);
    w.single("smsp_connections_refused_busy_total", "counter",
             "Client connections refused with 'KO server busy' "
             "(--max-connections).",
             a->refused_busy);
  }
  if (auto& c = g.connections) {
    w.family("smsp_connections_closed_total", "counter",
             "Client connections closed, by reason: client_closed, idle "
             "(--idle-timeout), no_progress (replies unread for "
             "--idle-timeout), server_stopping.");
    for (size_t k = 0; k < close_reason_count; ++k)
      w.sample("smsp_connections_closed_total",
               {{"reason", close_reason_name(static_cast<close_reason>(k))}},
               c->closed[k]);
    write_requests(w, c->requests);
  }
  if (auto& r = g.registry) {
    auto& [figures, penalties] = *r;
    w.single("smsp_sessions", "gauge", "Live sessions (cookies).",
             figures.sessions);
    w.single("smsp_mailboxes_active", "gauge",
             "Mailboxes in memory (active); the others are passivated: "
             "their mail is on disk only.",
             figures.active_mailboxes);
    w.single("smsp_mailbox_activations_total", "counter",
             "Mailboxes loaded into memory (activated).", figures.activations);
    w.single("smsp_mailbox_passivations_total", "counter",
             "Mailboxes taken out of memory after --mailbox-idle "
             "(passivated).",
             figures.passivations);
    w.single("smsp_login_penalties_active", "gauge",
             "Login penalty windows open now (per address, username and "
             "address, or username).",
             penalties.active);
    w.single("smsp_login_penalties_total", "counter",
             "Login penalty windows opened.", penalties.total);
    w.single("smsp_logins_throttled_total", "counter",
             "LOGINs refused during a penalty window, without hashing.",
             penalties.refused);
    if (!figures.nodes.empty()) {
      uint64_t up = 0;
      for (auto& n : figures.nodes)
        up += n.up ? 1 : 0;
      w.family("smsp_mailbox_nodes", "gauge",
               "Mailbox nodes (--mailbox-node) by state, up or down.");
      w.sample("smsp_mailbox_nodes", {{"state", "up"}}, up);
      w.sample("smsp_mailbox_nodes", {{"state", "down"}},
               uint64_t{figures.nodes.size() - up});
      w.family("smsp_mailbox_node_up", "gauge",
               "1 if the mailbox node answers its heartbeats, else 0.");
      for (auto& n : figures.nodes)
        w.sample("smsp_mailbox_node_up", {{"node", n.address}},
                 uint64_t{n.up ? 1u : 0u});
    }
  }
  if (g.imq) {
    w.single("smsp_imq_messages", "gauge",
             "Messages on the incoming message queue (not yet stored).",
             *g.imq);
  }
  if (auto& s = g.writer) {
    w.single("smsp_store_commits_total", "counter",
             "Group commits of the store (one fsync each with --sync=full).",
             s->commits);
    w.single("smsp_store_writes_total", "counter",
             "Writes committed to the store.", s->writes);
    w.family("smsp_store_commit_duration_seconds", "histogram",
             "Seconds from a commit group's first write to the end of its "
             "commit.");
    w.histogram("smsp_store_commit_duration_seconds", {}, s->commit_latency);
  }
  if (auto& h = g.hasher) {
    w.single("smsp_hash_queue_depth", "gauge",
             "Password hashes waiting for a worker (--hash-queue bounds it).",
             h->queued);
    w.single("smsp_hash_workers_busy", "gauge",
             "Hash workers computing now, of --hash-workers.", h->busy);
    w.family("smsp_hash_duration_seconds", "histogram",
             "Seconds a worker took per password hash or verification.");
    w.histogram("smsp_hash_duration_seconds", {}, h->hash_time);
  }
  return w.text();
}

// -- HTTP
// -----------------------------------------------------------------------

MHD_Result send_text(MHD_Connection* conn, unsigned status,
                     const std::string& text, const char* content_type) {
  auto* resp = MHD_create_response_from_buffer(
    text.size(), const_cast<char*>(text.data()), MHD_RESPMEM_MUST_COPY);
  if (resp == nullptr)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  auto result = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return result;
}

/// libmicrohttpd's request callback, on its thread: GET (or HEAD) /metrics
/// is the scrape, any other path is 404, any other method 405.
MHD_Result on_request(void* cls, MHD_Connection* conn, const char* url,
                      const char* method, const char*, const char*,
                      size_t* upload_size, void**) {
  constexpr const char* plain = "text/plain; charset=utf-8";
  std::string_view m{method};
  if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
    // A body, if any, is not read: the connection closes after the reply.
    *upload_size = 0;
    return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                     "only GET /metrics is served\n", plain);
  }
  if (std::string_view{url} != "/metrics")
    return send_text(conn, MHD_HTTP_NOT_FOUND,
                     "not found: only /metrics is served here\n", plain);
  auto* endpoint = static_cast<metrics_endpoint*>(cls);
  return send_text(conn, MHD_HTTP_OK, endpoint->scrape(),
                   "text/plain; version=0.0.4; charset=utf-8");
}

/// `host` as a socket address with `port`, or why not.
caf::expected<sockaddr_storage> socket_address(const std::string& host,
                                               uint16_t port) {
  sockaddr_storage addr{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  auto bare = host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']')
    bare = bare.substr(1, bare.size() - 2);
  if (::inet_pton(AF_INET, bare.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return addr;
  }
  if (::inet_pton(AF_INET6, bare.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return addr;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (auto rc = ::getaddrinfo(bare.c_str(), nullptr, &hints, &found); rc != 0)
    return caf::make_error(caf::sec::runtime_error,
                           "--metrics-host " + host
                             + " cannot be resolved: " + ::gai_strerror(rc));
  std::memcpy(&addr, found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  if (addr.ss_family == AF_INET)
    v4->sin_port = htons(port);
  else
    v6->sin6_port = htons(port);
  return addr;
}

} // namespace

metrics_endpoint::metrics_endpoint(caf::actor_system& sys,
                                   metrics_sources sources,
                                   metrics_endpoint_config cfg)
  : sys_(sys), sources_(std::move(sources)), cfg_(std::move(cfg)) {
  // nop
}

caf::expected<std::shared_ptr<metrics_endpoint>>
metrics_endpoint::start(caf::actor_system& sys, metrics_sources sources,
                        metrics_endpoint_config cfg) {
  auto addr = socket_address(cfg.host, cfg.port);
  if (!addr)
    return std::move(addr.error());
  std::shared_ptr<metrics_endpoint> self{
    new metrics_endpoint(sys, std::move(sources), cfg)};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
  if (addr->ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  self->daemon_ = MHD_start_daemon(flags, cfg.port, nullptr, nullptr,
                                   on_request, self.get(), MHD_OPTION_SOCK_ADDR,
                                   reinterpret_cast<sockaddr*>(&*addr),
                                   MHD_OPTION_CONNECTION_LIMIT, 8u,
                                   MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                   MHD_OPTION_END);
  if (self->daemon_ == nullptr)
    return caf::make_error(caf::sec::runtime_error,
                           "cannot serve metrics on " + cfg.host + ":"
                             + std::to_string(cfg.port)
                             + " (is the port in use, or the address not on "
                               "this machine?)");
  auto* info = MHD_get_daemon_info(self->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  self->port_ = info != nullptr ? info->port : cfg.port;
  return self;
}

metrics_endpoint::~metrics_endpoint() {
  stop();
}

void metrics_endpoint::stop() {
  if (daemon_ != nullptr) {
    MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
  }
}

std::string metrics_endpoint::scrape() {
  return render(gather(sys_, sources_, cfg_.scrape_timeout), cfg_);
}

} // namespace smsp
