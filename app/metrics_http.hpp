// The metrics endpoint: GET /metrics in the Prometheus text format (0.0.4),
// served by libmicrohttpd on a thread of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "actors/messages.hpp"
#include "caf/expected.hpp"
#include "caf/fwd.hpp"

struct MHD_Daemon;

namespace smsp {

/// The actors a scrape asks, each for its own figures (metrics_atom, or
/// count_atom for the IMQ's length).
struct metrics_sources {
  metrics_actor connections;
  acceptor_metrics_actor acceptor;
  registry_actor registry;
  imq_actor imq;
  writer_actor writer;
  hasher_actor hasher;
};

struct metrics_endpoint_config {
  /// Address to listen on: a numeric IPv4 or IPv6 address or a host name.
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  uint16_t port = 0;
  /// How long one scrape waits for all the actors together; those that
  /// have not answered by then are left out (smsp_scrape_source_up 0).
  std::chrono::milliseconds scrape_timeout{std::chrono::seconds{2}};
  /// The server's start, in seconds since the Unix epoch.
  double start_time = 0;
};

/// Serves /metrics until stopped or destroyed. Its HTTP thread asks the
/// actors through a scoped actor with timeouts, so a scrape never hangs;
/// it shares no state with them. One scrape at a time (libmicrohttpd's one
/// internal thread), at most 8 clients connected at once.
class metrics_endpoint {
public:
  /// Binds cfg.host:cfg.port and starts serving; an error when the address
  /// cannot be bound or resolved. `sys` must outlive the endpoint's stop().
  static caf::expected<std::shared_ptr<metrics_endpoint>>
  start(caf::actor_system& sys, metrics_sources sources,
        metrics_endpoint_config cfg);

  metrics_endpoint(const metrics_endpoint&) = delete;
  metrics_endpoint& operator=(const metrics_endpoint&) = delete;

  /// Stops serving (waits for a scrape under way, at most its timeout).
  ~metrics_endpoint();

  /// Stops serving; idempotent. Call before the actors stop.
  void stop();

  /// The port actually bound.
  uint16_t port() const {
    return port_;
  }

  /// One scrape's text (what GET /metrics answers).
  std::string scrape();

private:
  metrics_endpoint(caf::actor_system& sys, metrics_sources sources,
                   metrics_endpoint_config cfg);

  caf::actor_system& sys_;
  metrics_sources sources_;
  metrics_endpoint_config cfg_;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
};

} // namespace smsp
