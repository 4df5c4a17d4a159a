// Connection broker: framing, flow control, replies in request order.
#include <algorithm>

#include <sys/socket.h>

#include "actors/log.hpp"
#include "actors/logic/credentials.hpp"
#include "caf/all.hpp"
#include "caf/io/network/default_multiplexer.hpp"
#include "net/commands.hpp"
#include "net/connection_state.hpp"
#include "net/wire/replies.hpp"

namespace smsp {

namespace {

using broker = connection_broker;

/// Far longer than one iteration of CAF's I/O loop; see read_state.
constexpr auto reading_settle_time = std::chrono::milliseconds{10};

/// Grants of the server-wide output budget come in chunks of this many
/// bytes, so that a connection asks rarely.
constexpr size_t grant_chunk = 64 * 1024;

/// Bytes read from the socket at a time, at first. CAF keeps a read buffer
/// of the current size per connection, zero-filled at once, so it is what
/// an idle connection costs (it was 16 KiB of the 20 KiB measured per idle
/// connection). A read that fills the buffer doubles it, up to
/// max_read_size; a longer request arrives over several reads. CAF 0.17
/// never gives a read buffer's memory back, so the size only grows.
constexpr size_t first_read_size = 1024;

constexpr size_t max_read_size = 16 * 1024;

/// A connection's write buffer keeps at most this much capacity once its
/// client has read everything: one large burst must not pin its memory.
constexpr size_t retained_output_capacity = 64 * 1024;

void pump(broker* self);
void write_ready(broker* self);

/// Sends `x` to this broker after `delay`, anonymously. In CAF 0.17 a broker
/// that quits while a message it sent itself is pending or queued is never
/// freed (measured: about 1.8 KiB per connection that closed with a deadline
/// check pending); without a sender there is no such leak.
template <class Duration, class Atom>
void send_self_later(broker* self, Duration delay, Atom x) {
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), delay, x);
}

steady_time now(broker* self) {
  return self->state.deps.cfg.now();
}

const std::string& peer_of(broker* self) {
  return self->state.peer;
}

/// "600 s" or "300 ms", for the log.
std::string to_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

// -- output accounting --------------------------------------------------------

size_t outstanding(const connection_state& st) {
  return st.unsent + st.reserved;
}

size_t encoded_size(std::string_view reply, terminator term) {
  return reply.size() + terminator_bytes(term).size();
}

/// What a queued request costs in memory, so that max_queued_bytes bounds
/// memory rather than bytes on the wire.
size_t queued_cost(const frame& f) {
  return sizeof(frame) + f.line.capacity() + 16;
}

/// The next request, parsed once.
const parse_result& parsed_next(connection_state& st) {
  if (!st.next)
    st.next = parse(st.queued.front(), st.deps.cfg.wire);
  return *st.next;
}

/// Whether the cookie can be one the server issued (new_cookie): else the
/// request needs no session lookup to fail.
bool cookie_shaped(const std::string& cookie) {
  return cookie.size() >= cookie_chars
         && std::all_of(cookie.begin(), cookie.end(), [](char c) {
              return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            });
}

/// A request that fails at the edge: its cookie is no session's.
bool needs_no_registry(const request& req) {
  return req.spec->needs_session && !cookie_shaped(req.cookie());
}

/// Bytes to hold for the reply to the next request until it is known.
size_t reply_bound(connection_state& st) {
  auto& parsed = parsed_next(st);
  if (auto err = std::get_if<parse_error>(&parsed))
    return encoded_size(reply::failure(*err), st.queued.front().term);
  auto& req = std::get<request>(parsed);
  if (needs_no_registry(req))
    return reply::max_short_bytes;
  return max_reply_bytes(row_of(req.cmd()), st.deps.cfg.wire);
}

/// Asks the acceptor for enough of the server-wide budget that `bytes` more
/// fit; one request at a time. The connection starts nothing that needs the
/// grant until it arrives; meanwhile its queue fills and reading pauses.
void ask_for_grant(broker* self, size_t bytes) {
  auto& st = self->state;
  if (st.grant_pending || !st.deps.budget)
    return;
  auto need = outstanding(st) + bytes - (st.free_output + st.granted);
  auto chunks = (need + grant_chunk - 1) / grant_chunk;
  auto ask = std::min(chunks * grant_chunk,
                      st.deps.cfg.max_unsent - st.free_output - st.granted);
  st.grant_pending = true;
  self->request(st.deps.budget, caf::infinite, grant_atom::value, uint64_t{ask})
    .then(
      [=](uint64_t given) {
        auto& st = self->state;
        st.grant_pending = false;
        st.granted += given;
        pump(self);
      },
      [=](caf::error&) {
        // The acceptor is gone, so the server is stopping: live on the
        // free allowance.
        self->state.grant_pending = false;
      });
}

/// Whether a reply of up to `bytes` may be added to what is outstanding;
/// asks for a grant when only the server-wide budget stands in the way.
bool output_allows(broker* self, size_t bytes) {
  auto& st = self->state;
  auto total = outstanding(st);
  if (total == 0)
    return true;
  if (total + bytes > st.deps.cfg.max_unsent)
    return false;
  if (total + bytes <= st.free_output + st.granted)
    return true;
  ask_for_grant(self, bytes);
  return false;
}

/// Gives back the grant beyond what is outstanding now (at the idle sweep,
/// or when the acceptor runs short and asks).
void release_spare_grant(broker* self) {
  auto& st = self->state;
  if (st.granted == 0)
    return;
  auto total = outstanding(st);
  auto needed = total > st.free_output ? total - st.free_output : size_t{0};
  needed = (needed + grant_chunk - 1) / grant_chunk * grant_chunk;
  if (st.granted <= needed)
    return;
  auto spare = st.granted - needed;
  st.granted = needed;
  self->send(st.deps.budget, release_atom::value, uint64_t{spare});
}

/// Appends `bytes` to the write buffer, growing its capacity no further
/// than max_unsent needs (doubling would keep up to twice that).
void reserve_output(broker* self, std::vector<char>& out, size_t bytes) {
  auto need = out.size() + bytes;
  if (need <= out.capacity())
    return;
  auto cap = std::max(self->state.deps.cfg.max_unsent, need);
  out.reserve(std::min(std::max(need, 2 * out.capacity()), cap));
}

// -- replies ------------------------------------------------------------------

/// Schedules one report of the requests counted, unless one is due anyway.
void arm_report(broker* self) {
  auto& st = self->state;
  if (st.report_armed)
    return;
  st.report_armed = true;
  send_self_later(self, st.deps.cfg.report_interval, report_atom::value);
}

/// Counts one answered request of command label `label` (metrics on).
/// O(1), no allocation: an array increment and a bucket search.
void count_request(broker* self, size_t label, request_result result,
                   steady_time started) {
  auto& st = self->state;
  if (!st.unreported)
    return;
  st.unreported->count(label, result, now(self) - started);
  arm_report(self);
}

/// Reports the requests counted since the last report to the metrics
/// actor; with `closing`, also that the connection closed and why, and
/// then counts no more.
void report(broker* self, std::optional<close_reason> closing = {}) {
  auto& st = self->state;
  if (!st.unreported || (!closing && st.unreported->empty()))
    return;
  connection_report r;
  r.requests = *st.unreported;
  r.closed = closing.has_value();
  r.reason = static_cast<uint8_t>(closing.value_or(close_reason{}));
  if (closing)
    st.unreported.reset();
  else
    *st.unreported = request_counters{};
  caf::anon_send(st.deps.metrics, report_atom::value, std::move(r));
}

/// Sets the reply of a started request, counts it as `result` and updates
/// its reservation.
void set_reply(broker* self, started_request& req, std::string text,
               request_result result) {
  auto& st = self->state;
  if (req.row != nullptr)
    count_request(self, static_cast<size_t>(req.row->cmd), result, req.started);
  st.reserved -= req.reserved;
  req.reserved = encoded_size(text, req.term);
  st.reserved += req.reserved;
  req.reply = std::move(text);
  if (req.row != nullptr
      && holds_later(req.row->order, st.deps.cfg.mailboxes_on_nodes))
    st.barrier = false;
}

/// Frees the write buffer `out` once everything in it was sent, if it grew
/// beyond retained_output_capacity: a large burst must not pin its memory.
void release_sent_output(std::vector<char>& out) {
  if (out.empty() && out.capacity() > retained_output_capacity)
    std::vector<char>{}.swap(out);
}

/// Sends `out` (CAF's write buffer, holding every unsent byte) on the
/// socket now, without waiting for CAF's next loop; returns whether all of
/// it went. Why: CAF 0.17 writes only when epoll reports the socket
/// writable, which costs two epoll_ctl calls (measured: 2.1 of the ~15
/// system calls of a request), a wake-up and a data_transferred_msg per
/// reply. Only while CAF has nothing of this connection in flight, so
/// that bytes leave in order; what does not fit stays in `out` for CAF to
/// write. A send error leaves the bytes to CAF too, which then reports the
/// closed connection as usual.
bool write_directly(broker* self, std::vector<char>& out) {
  auto& st = self->state;
  if (st.socket < 0)
    return false;
  auto sent = ::send(st.socket, out.data(), out.size(),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent <= 0)
    return false;
  auto n = static_cast<size_t>(sent);
  st.unsent -= n;
  if (n < out.size()) {
    out.erase(out.begin(), out.begin() + static_cast<ptrdiff_t>(n));
    return false;
  }
  out.clear();
  release_sent_output(out);
  return true;
}

/// Writes the replies at the front that are known, and starts a DUMP whose
/// earlier requests are all answered.
void write_ready(broker* self) {
  auto& st = self->state;
  auto& out = self->wr_buf(st.hdl);
  auto before = st.unsent;
  while (!st.started.empty() && st.started.front().reply) {
    auto& front = st.started.front();
    reserve_output(self, out, front.reserved);
    encode_reply(*front.reply, front.term, out);
    st.reserved -= front.reserved;
    st.unsent += front.reserved;
    st.started.pop_front();
    ++st.first_seq;
  }
  if (st.dump_waiting && *st.dump_waiting == st.first_seq) {
    auto seq = *st.dump_waiting;
    st.dump_waiting.reset();
    self->request(st.deps.registry, caf::infinite, dump_atom::value)
      .then([=](caf::ok_atom) { complete(self, seq, std::string{reply::ok}); },
            [=](caf::error& err) {
              complete_failed(self, seq, command::dump, err);
            });
  }
  if (st.unsent == before)
    return;
  auto t = now(self);
  // Every complete request is answered, so a written reply is the request
  // activity the idle rule looks for; and the client owes progress on
  // output only from the moment it has some.
  st.last_activity = t;
  if (before == 0)
    st.last_progress = t;
  if (st.flush_posted)
    return;
  if (before == 0) {
    // The only reply, or the last of a batch, goes now. With more replies
    // to come (pipelining), a message to itself gathers the ones already
    // waiting in this broker's mailbox (a group commit answers many at
    // once) into one send, without CAF's write interest (two epoll_ctl
    // calls and a wake-up).
    if (st.started.empty()) {
      if (!write_directly(self, out))
        self->flush(st.hdl);
      return;
    }
    st.flush_posted = true;
    // Anonymously, as send_self_later: a message naming the broker as its
    // sender would keep a broker that quits before it arrives alive.
    caf::anon_send(caf::actor_cast<caf::actor>(self), flush_atom::value);
    return;
  }
  // CAF is writing: its next write carries these too.
  self->flush(st.hdl);
}

/// The replies gathered since flush_atom was posted leave: directly, or by
/// CAF what does not fit.
void flush_gathered(broker* self) {
  auto& st = self->state;
  st.flush_posted = false;
  if (st.unsent == 0)
    return;
  if (!write_directly(self, self->wr_buf(st.hdl)))
    self->flush(st.hdl);
}

// -- starting requests --------------------------------------------------------

bool can_start(broker* self) {
  auto& st = self->state;
  return !st.barrier && !st.queued.empty()
         && st.started.size() < st.deps.cfg.max_in_flight
         && output_allows(self, reply_bound(st));
}

/// Starts the next queued request. One that did not parse, or names no
/// possible session, is answered at once.
void start_next(broker* self) {
  auto& st = self->state;
  auto bound = reply_bound(st);
  auto parsed = std::move(*st.next);
  st.next.reset();
  auto term = st.queued.front().term;
  st.queued_bytes -= queued_cost(st.queued.front());
  st.queued.pop_front();
  auto seq = st.first_seq + st.started.size();
  st.reserved += bound;
  if (auto err = std::get_if<parse_error>(&parsed)) {
    // Answered at once: no latency to speak of.
    if (st.unreported) {
      auto label = err->spec != nullptr ? static_cast<size_t>(err->spec->cmd)
                                        : unknown_command;
      st.unreported->count(label, request_result::bad_request, {});
      arm_report(self);
    }
    st.started.push_back({term, nullptr, steady_time{}, steady_time{}, bound,
                          reply::failure(*err)});
    return;
  }
  auto& req = std::get<request>(parsed);
  auto& row = row_of(req.cmd());
  auto& waits = st.deps.cfg.waits;
  auto wait = row.wait == deadline::hashing ? waits.hashing + waits.request
                                            : waits.request;
  auto t = now(self);
  st.started.push_back({term, &row, t, t + wait, bound, {}});
  if (needs_no_registry(req)) {
    set_reply(self, st.started.back(),
              std::string{reply::failure(errc::not_logged_in, req.cmd())},
              result_of(errc::not_logged_in));
    return;
  }
  if (holds_later(row.order, st.deps.cfg.mailboxes_on_nodes))
    st.barrier = true;
  row.handle(self, seq, req);
}

/// Reads only while few enough requests wait to start (see read_state).
void update_reading(broker* self) {
  auto& st = self->state;
  bool want = st.queued.size() < st.deps.cfg.max_queued
              && st.queued_bytes < st.deps.cfg.max_queued_bytes;
  switch (st.reading) {
    case read_state::reading:
      if (want)
        return;
      self->halt(st.hdl);
      st.reading = read_state::paused_settling;
      break;
    case read_state::paused:
      if (!want)
        return;
      self->trigger(st.hdl);
      st.reading = read_state::reading_settling;
      break;
    default:
      // Settling: the settled message switches again if still needed.
      return;
  }
  send_self_later(self, reading_settle_time, settled_atom::value);
}

/// Starts what may start, writes what is answered, adjusts reading.
void pump(broker* self) {
  auto& st = self->state;
  // Requests answered at once as they start (parse errors) make room for
  // more, and writing can too.
  do {
    while (can_start(self))
      start_next(self);
    write_ready(self);
  } while (can_start(self));
  update_reading(self);
  if (!st.started.empty() && !st.watchdog_armed) {
    st.watchdog_armed = true;
    send_self_later(self, st.deps.cfg.watchdog_interval, caf::tick_atom::value);
  }
}

/// Answers every request past its deadline with `KO internal error`.
void check_deadlines(broker* self) {
  auto& st = self->state;
  st.watchdog_armed = false;
  auto t = now(self);
  for (auto& req : st.started)
    if (!req.reply && req.deadline <= t) {
      log_warn("conn", "no answer in time to a "
                         + std::string{spec_of(req.row->cmd).name}
                         + " request");
      set_reply(self, req, std::string{reply::internal_error},
                request_result::internal_error);
    }
  pump(self);
}

/// Drops what the client has not read. CAF 0.17's close() first drains
/// the unsent bytes, so a client that never reads would keep its socket,
/// its buffers and its descriptor for ever (and keep the server from
/// stopping). With linger 0 and a shutdown the pending write fails, CAF
/// removes the socket, and the close resets the connection. Only on CAF's
/// default multiplexer, whose connection handles are the sockets; the
/// tests' multiplexer has none.
void abort_output(broker* self) {
  auto& st = self->state;
  if (st.unsent == 0 || st.socket < 0)
    return;
  linger no_linger{1, 0};
  ::setsockopt(st.socket, SOL_SOCKET, SO_LINGER, &no_linger, sizeof(no_linger));
  ::shutdown(st.socket, SHUT_RDWR);
}

void close_logged(broker* self, const std::string& why) {
  auto& st = self->state;
  auto line = peer_of(self) + " closed: " + why;
  if (auto partial = st.frames.buffered(); partial > 0)
    line += ", dropping " + std::to_string(partial)
            + " bytes of an unfinished request";
  log_info("conn", line);
  // The registry is not told: the client's session stays valid for its next
  // connection.
  abort_output(self);
  report(self, st.close_as);
  self->close(st.hdl);
  self->quit();
}

/// The idle rule, checked when the acceptor asks (see acceptor.cpp). A
/// connection with replies outstanding is closed when its client has taken
/// none of their bytes for idle_timeout. Otherwise, with nothing queued or
/// in flight, it is closed when it has written no reply (so received no
/// complete request) for idle_timeout. Bytes of an unfinished request do not
/// count: a slowloris that trickles a line and never ends it, or sends an
/// oversized one forever, is closed like a silent client, and until then the
/// framer holds at most max_request of it.
void check_idle(broker* self) {
  auto& st = self->state;
  auto t = now(self);
  auto limit = st.deps.cfg.idle_timeout;
  if (st.unsent > 0) {
    // What the metrics will say if the check below closes it.
    st.close_as = close_reason::no_progress;
    if (t - st.last_progress >= limit)
      close_logged(self, std::to_string(st.unsent)
                           + " bytes of replies unread for " + to_text(limit)
                           + " (--idle-timeout)");
    return;
  }
  release_spare_grant(self);
  if (!st.queued.empty() || !st.started.empty()) {
    st.last_activity = t;
    return;
  }
  // The client's last read of a reply counts as activity too.
  st.close_as = close_reason::idle;
  if (t - std::max(st.last_activity, st.last_progress) >= limit)
    close_logged(self, "idle for " + to_text(limit) + " (--idle-timeout)");
}

} // namespace

void complete(broker* self, uint64_t seq, std::string reply,
              request_result result) {
  auto& st = self->state;
  if (seq < st.first_seq || seq - st.first_seq >= st.started.size())
    return;
  auto& req = st.started[seq - st.first_seq];
  if (req.reply)
    return;
  set_reply(self, req, std::move(reply), result);
  pump(self);
}

void complete_failed(broker* self, uint64_t seq, command cmd,
                     const caf::error& err) {
  if (err.category() == error_category) {
    auto code = static_cast<errc>(err.code());
    complete(self, seq, std::string{reply::failure(code, cmd)},
             result_of(code));
    return;
  }
  log_error("conn", "internal error: " + caf::to_string(err));
  complete(self, seq, std::string{reply::internal_error},
           request_result::internal_error);
}

void dump_after_earlier(broker* self, uint64_t seq) {
  // DUMP is a barrier, so at most one waits; write_ready starts it.
  self->state.dump_waiting = seq;
  if (seq == self->state.first_seq)
    write_ready(self);
}

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps) {
  auto& st = self->state;
  st.deps = std::move(deps);
  auto& cfg = st.deps.cfg;
  st.hdl = hdl;
  st.peer = self->remote_addr(hdl) + ":"
            + std::to_string(self->remote_port(hdl));
  // On CAF's default multiplexer a connection handle is its socket.
  if (dynamic_cast<caf::io::network::default_multiplexer*>(
        &self->system().middleman().backend()))
    st.socket = static_cast<int>(hdl.id());
  st.frames = framer{cfg.wire.max_request};
  st.free_output = std::max(reply::max_short_bytes,
                            reply::max_text_bytes(cfg.wire.max_text));
  cfg.max_unsent = std::max(cfg.max_unsent, st.free_output);
  st.read_size = first_read_size;
  self->configure_read(hdl, caf::io::receive_policy::at_most(st.read_size));
  // Every write is acknowledged, so `unsent` is exact and the idle rule
  // sees whether the client reads.
  self->ack_writes(hdl, true);
  st.last_activity = st.last_progress = now(self);
  if (st.deps.metrics)
    st.unreported = std::make_unique<request_counters>();
  if (log_enabled(log_level::debug))
    log_debug("conn", peer_of(self) + " open");
  // Stopped with the server: replies the client has not read are dropped,
  // as the protocol allows, rather than keeping the server from stopping.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    abort_output(self);
    report(self, close_reason::server_stopping);
    self->quit(msg.reason);
  });
  return {
    [=](const caf::io::new_data_msg& msg) {
      auto& st = self->state;
      if (msg.buf.size() >= st.read_size && st.read_size < max_read_size) {
        // A client sending more than fits: read more at a time.
        st.read_size = std::min(2 * st.read_size, max_read_size);
        self->configure_read(st.hdl,
                             caf::io::receive_policy::at_most(st.read_size));
      }
      std::vector<frame> frames;
      st.frames.feed(msg.buf.data(), msg.buf.size(), frames);
      for (auto& f : frames) {
        st.queued_bytes += queued_cost(f);
        st.queued.push_back(std::move(f));
      }
      pump(self);
    },
    [=](const caf::io::data_transferred_msg& msg) {
      auto& st = self->state;
      st.unsent = msg.remaining;
      if (msg.written > 0 || st.unsent == 0)
        st.last_progress = now(self);
      if (st.unsent == 0)
        release_sent_output(self->wr_buf(st.hdl));
      pump(self);
    },
    [=](flush_atom) { flush_gathered(self); },
    [=](caf::tick_atom) { check_deadlines(self); },
    [=](caf::idle_atom) { check_idle(self); },
    [=](reclaim_atom) { release_spare_grant(self); },
    [=](settled_atom) {
      auto& st = self->state;
      st.reading = st.reading == read_state::paused_settling
                     ? read_state::paused
                     : read_state::reading;
      update_reading(self);
    },
    [=](report_atom) {
      self->state.report_armed = false;
      report(self);
    },
    [=](const caf::io::connection_closed_msg&) {
      report(self, close_reason::client_closed);
      if (log_enabled(log_level::debug))
        log_debug("conn", peer_of(self) + " closed by the client");
      self->quit();
    },
  };
}

} // namespace smsp
