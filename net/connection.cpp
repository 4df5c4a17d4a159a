// Connection broker: framing, one handler per command, replies in order.
#include "net/connection_state.hpp"

#include "actors/log.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

using broker = connection_broker;
using clock = std::chrono::steady_clock;

/// Far longer than one iteration of CAF's I/O loop; see update_reading.
constexpr auto reading_settle_time = std::chrono::milliseconds{10};

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

// -- replies ------------------------------------------------------------------

/// Requests whose effects later requests of the connection must see before
/// they start. The others travel connection -> registry -> one actor, so
/// CAF's per-sender message order already keeps them in sequence; STORE
/// reaches the mailbox through the imq, REGISTER/LOGIN finish after a
/// password hash and a store lookup, and DUMP reads the store.
bool is_barrier(command cmd) {
  return cmd == command::register_user || cmd == command::login
         || cmd == command::store || cmd == command::dump;
}

/// Records the reply of request `seq` and writes what is ready. A reply for
/// a request already answered (by the watchdog) is dropped.
void complete(broker* self, uint64_t seq, std::string reply) {
  auto& st = self->state;
  if (seq < st.first_seq || seq - st.first_seq >= st.started.size())
    return;
  auto& req = st.started[seq - st.first_seq];
  if (req.reply)
    return;
  req.reply = std::move(reply);
  if (is_barrier(req.cmd))
    st.barrier = false;
  pump(self);
}

std::string failure_reply(const caf::error& err, command cmd) {
  if (err.category() == error_category) {
    auto code = static_cast<errc>(err.code());
    // The original protocol's literal for MESSAGE without a session.
    if (code == errc::not_logged_in && cmd == command::message)
      return "You should log in first.";
    return error_reply(code);
  }
  log_line("connection: internal error: " + caf::to_string(err));
  return "KO internal error";
}

auto fail(broker* self, uint64_t seq, command cmd) {
  return [=](caf::error& err) { complete(self, seq, failure_reply(err, cmd)); };
}

/// Sends one request to the registry. Its deadline is kept by the
/// connection's watchdog rather than by a CAF request timeout: those cost a
/// timer on CAF's clock thread per request (measured: a third of the
/// throughput).
template <class... Ts>
auto ask_registry(broker* self, Ts&&... xs) {
  return self->request(self->state.deps.registry, caf::infinite,
                       std::forward<Ts>(xs)...);
}

/// Answers `OK` to a request that succeeded.
auto ok_reply(broker* self, uint64_t seq) {
  return [=](caf::ok_atom) { complete(self, seq, "OK"); };
}

/// Answers `OK <value>`: a cookie or a message text.
auto ok_value_reply(broker* self, uint64_t seq) {
  return [=](std::string& value) { complete(self, seq, "OK " + value); };
}

// -- command handlers ---------------------------------------------------------

// REGISTER <username> <password>
void on_register(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, register_atom::value, req.args[0], req.args[1])
    .then(ok_value_reply(self, seq), fail(self, seq, req.cmd()));
}

// LOGIN <username> <password>
void on_login(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, login_atom::value, req.args[0], req.args[1],
               self->remote_addr(self->state.hdl))
    .then(ok_value_reply(self, seq), fail(self, seq, req.cmd()));
}

// LOGOUT <cookie>
void on_logout(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, logout_atom::value, req.cookie())
    .then(ok_reply(self, seq), fail(self, seq, req.cmd()));
}

// MESSAGE <text> <cookie>
void on_message(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, post_atom::value, req.cookie(), req.args[0])
    .then(ok_reply(self, seq), fail(self, seq, req.cmd()));
}

// STORE <username> <cookie>
void on_store(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, store_atom::value, req.cookie(), req.args[0])
    .then(ok_reply(self, seq), fail(self, seq, req.cmd()));
}

// COUNT <username> <cookie>
void on_count(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, count_atom::value, req.cookie(), req.args[0])
    .then(
      [=](uint64_t n) { complete(self, seq, "COUNTED " + std::to_string(n)); },
      fail(self, seq, req.cmd()));
}

// GETMSG <username> <cookie>
void on_getmsg(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, caf::get_atom::value, req.cookie(), req.args[0])
    .then(ok_value_reply(self, seq), fail(self, seq, req.cmd()));
}

// DELMSG <username> <cookie>
void on_delmsg(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, caf::delete_atom::value, req.cookie(), req.args[0])
    .then(ok_reply(self, seq), fail(self, seq, req.cmd()));
}

// DUMP
void on_dump(broker* self, uint64_t seq, const request&) {
  // DUMP shows the store's committed state: it waits until every earlier
  // request of this connection is answered, so their writes are in it (see
  // write_ready). It is a barrier, so at most one waits.
  self->state.dump_waiting = seq;
  if (seq == self->state.first_seq)
    write_ready(self);
}

void dispatch(broker* self, uint64_t seq, const request& req) {
  switch (req.cmd()) {
    case command::register_user:
      return on_register(self, seq, req);
    case command::login:
      return on_login(self, seq, req);
    case command::logout:
      return on_logout(self, seq, req);
    case command::message:
      return on_message(self, seq, req);
    case command::store:
      return on_store(self, seq, req);
    case command::count:
      return on_count(self, seq, req);
    case command::getmsg:
      return on_getmsg(self, seq, req);
    case command::delmsg:
      return on_delmsg(self, seq, req);
    case command::dump:
      return on_dump(self, seq, req);
  }
}

// -- flow control -------------------------------------------------------------

clock::duration wait_for(const connection_deps& deps, command cmd) {
  if (cmd == command::register_user || cmd == command::login)
    return deps.waits.hashing + deps.waits.request;
  return deps.waits.request;
}

bool can_start(const connection_state& st) {
  return !st.barrier && !st.backlogged && !st.queued.empty()
         && st.started.size() < st.deps.max_in_flight;
}

/// Starts the next queued request; a malformed one is answered at once.
void start_next(broker* self) {
  auto& st = self->state;
  auto next = std::move(st.queued.front());
  st.queued.pop_front();
  auto seq = st.first_seq + st.started.size();
  auto parsed = parse(next, st.deps.limits);
  if (auto err = std::get_if<parse_error>(&parsed)) {
    // Answered already: its command and deadline are never looked at.
    st.started.push_back(
      {next.term, command::dump, clock::time_point{}, error_reply(*err)});
    return;
  }
  auto& req = std::get<request>(parsed);
  st.started.push_back({next.term, req.cmd(),
                        clock::now() + wait_for(st.deps, req.cmd()),
                        std::nullopt});
  if (is_barrier(req.cmd()))
    st.barrier = true;
  dispatch(self, seq, req);
}

/// Writes the replies at the front that are known.
void write_ready(broker* self) {
  auto& st = self->state;
  auto& out = self->wr_buf(st.hdl);
  auto before = out.size();
  while (!st.started.empty() && st.started.front().reply) {
    encode_reply(*st.started.front().reply, st.started.front().term, out);
    st.started.pop_front();
    ++st.first_seq;
  }
  if (st.dump_waiting && *st.dump_waiting == st.first_seq) {
    auto seq = *st.dump_waiting;
    st.dump_waiting.reset();
    ask_registry(self, dump_atom::value)
      .then(ok_reply(self, seq), fail(self, seq, command::dump));
  }
  if (out.size() == before)
    return;
  // Every complete request is answered, so a written reply is the request
  // activity the idle rule looks for (see check_idle).
  st.last_activity = clock::now();
  self->flush(st.hdl);
  // What flush could not hand to the socket yet waits in wr_buf.
  if (!st.backlogged && out.size() > st.deps.max_unsent) {
    st.backlogged = true;
    self->ack_writes(st.hdl, true);
  }
}

/// Reads only while the client keeps up: few enough queued requests and
/// unread replies. Otherwise the kernel's buffers push back on the client.
///
/// At most one switch per settle period: in CAF 0.17 halt() and trigger()
/// queue an event for the I/O loop, and a halt and a trigger in one loop
/// iteration squash into nothing while the scribe believes it is reading,
/// so the connection would never read again (seen under ASan). A switch
/// waits until the previous one has taken effect.
void update_reading(broker* self) {
  auto& st = self->state;
  bool want = !st.backlogged && st.queued.size() < st.deps.max_queued;
  if (want == st.reading || st.reading_settling)
    return;
  st.reading = want;
  if (want)
    self->trigger(st.hdl);
  else
    self->halt(st.hdl);
  st.reading_settling = true;
  send_self_later(self, reading_settle_time, settled_atom::value);
}

/// Starts what may start, writes what is answered, adjusts reading.
void pump(broker* self) {
  auto& st = self->state;
  // Malformed requests are answered as they start, so writing can make
  // room for more to start.
  do {
    while (can_start(st))
      start_next(self);
    write_ready(self);
  } while (can_start(st));
  update_reading(self);
  if (!st.started.empty() && !st.watchdog_armed) {
    st.watchdog_armed = true;
    send_self_later(self, st.deps.watchdog_interval, caf::tick_atom::value);
  }
}

/// Answers every request past its deadline with `KO internal error`.
void check_deadlines(broker* self) {
  auto& st = self->state;
  st.watchdog_armed = false;
  auto now = clock::now();
  for (auto& req : st.started)
    if (!req.reply && req.deadline <= now) {
      log_line("connection: no answer in time to a "
               + std::string{spec_of(req.cmd).name} + " request");
      req.reply = "KO internal error";
      if (is_barrier(req.cmd))
        st.barrier = false;
    }
  pump(self);
}

/// "600 s" or "300 ms", for the log.
std::string to_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

/// The idle rule, checked when the acceptor asks (see server.cpp): closes
/// the connection when nothing is queued, in flight or waiting to be
/// written, and it has written no reply (so received no complete request)
/// for idle_timeout. Bytes of an unfinished request do not count: a
/// slowloris that trickles a line and never ends it, or sends an oversized
/// one forever, is closed like a silent client, and until then the framer
/// holds at most max_request of it.
void check_idle(broker* self) {
  auto& st = self->state;
  auto now = clock::now();
  if (!st.queued.empty() || !st.started.empty() || st.backlogged
      || !self->wr_buf(st.hdl).empty()) {
    st.last_activity = now;
    return;
  }
  if (now - st.last_activity < st.deps.idle_timeout)
    return;
  auto why = "connection " + self->remote_addr(st.hdl) + ":"
             + std::to_string(self->remote_port(st.hdl)) + " closed: idle for "
             + to_text(st.deps.idle_timeout) + " (--idle-timeout)";
  if (auto partial = st.frames.buffered(); partial > 0)
    why += ", dropping " + std::to_string(partial)
           + " bytes of an unfinished request";
  log_line(why);
  // The registry is not told: the client's session stays valid for its next
  // connection.
  self->close(st.hdl);
  self->quit();
}

} // namespace

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.hdl = hdl;
  st.frames = framer{st.deps.limits.max_request};
  self->configure_read(hdl, caf::io::receive_policy::at_most(64 * 1024));
  st.last_activity = clock::now();
  return {
    [=](const caf::io::new_data_msg& msg) {
      auto& st = self->state;
      std::vector<frame> frames;
      st.frames.feed(msg.buf.data(), msg.buf.size(), frames);
      for (auto& f : frames)
        st.queued.emplace_back(std::move(f));
      pump(self);
    },
    [=](const caf::io::data_transferred_msg& msg) {
      auto& st = self->state;
      if (st.backlogged && msg.remaining <= st.deps.max_unsent / 2) {
        st.backlogged = false;
        self->ack_writes(st.hdl, false);
        // The client read its backlog: the idle clock starts now.
        st.last_activity = clock::now();
        pump(self);
      }
    },
    [=](caf::tick_atom) { check_deadlines(self); },
    [=](caf::idle_atom) { check_idle(self); },
    [=](settled_atom) {
      self->state.reading_settling = false;
      update_reading(self);
    },
    [=](const caf::io::connection_closed_msg&) { self->quit(); },
  };
}

} // namespace smsp
