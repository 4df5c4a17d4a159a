// The connection broker: framing, one command handler per SMSP command, ordered
// replies.
#include "net/connection_impl.hpp"

#include "actors/log.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

using broker = connection_broker;

void pump(broker* self);

// -- replies ------------------------------------------------------------------

void write_reply(broker* self, std::string_view reply, terminator term) {
  encode_reply(reply, term, self->wr_buf(self->state.hdl));
}

/// Answers the request with the actors and lets the next one start.
void answer(broker* self, std::string_view reply) {
  auto& st = self->state;
  write_reply(self, reply, st.current_term);
  st.busy = false;
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

auto fail(broker* self) {
  return [=](caf::error& err) {
    answer(self, failure_reply(err, self->state.current));
  };
}

// -- sessions -----------------------------------------------------------------

/// Resolves the cookie and calls `then(caller, caller's mailbox)` when the
/// request's <username> argument is the caller; otherwise answers.
template<class F>
void with_own_mailbox(broker* self, const request& req, F then) {
  auto& st = self->state;
  auto target = req.args[0];
  self
    ->request(st.deps.registry, st.deps.waits.request, session_atom::value,
              req.cookie())
    .then(
      [=](std::string& caller, mailbox_actor& box) {
        if (caller != target)
          answer(self, error_reply(errc::not_your_mailbox));
        else
          then(box);
      },
      fail(self));
}

// -- command handlers ---------------------------------------------------------

/// Outlasts the registry's own wait for the hasher, so a late hash is
/// reported by the registry (which then creates nothing), never half-seen.
std::chrono::milliseconds hashing_wait(const connection_state& st) {
  return st.deps.waits.hashing + st.deps.waits.request;
}

// REGISTER <username> <password>
void on_register(broker* self, const request& req) {
  auto& st = self->state;
  self
    ->request(st.deps.registry, hashing_wait(st), register_atom::value,
              req.args[0], req.args[1])
    .then([=](std::string& cookie) { answer(self, "OK " + cookie); },
          fail(self));
}

// LOGIN <username> <password>
void on_login(broker* self, const request& req) {
  auto& st = self->state;
  self
    ->request(st.deps.registry, hashing_wait(st), login_atom::value,
              req.args[0], req.args[1])
    .then([=](std::string& cookie) { answer(self, "OK " + cookie); },
          fail(self));
}

// LOGOUT <cookie>
void on_logout(broker* self, const request& req) {
  auto& st = self->state;
  self
    ->request(st.deps.registry, st.deps.waits.request, logout_atom::value,
              req.cookie())
    .then([=](caf::ok_atom) { answer(self, "OK"); }, fail(self));
}

// MESSAGE <text> <cookie>
void on_message(broker* self, const request& req) {
  auto& st = self->state;
  auto text = req.args[0];
  self
    ->request(st.deps.registry, st.deps.waits.request, session_atom::value,
              req.cookie())
    .then(
      [=](std::string& poster, mailbox_actor&) {
        auto& st = self->state;
        self
          ->request(st.deps.imq, st.deps.waits.request, post_atom::value,
                    std::move(poster), text)
          .then([=](caf::ok_atom) { answer(self, "OK"); }, fail(self));
      },
      fail(self));
}

// STORE <username> <cookie>
void on_store(broker* self, const request& req) {
  auto& st = self->state;
  self
    ->request(st.deps.registry, st.deps.waits.request, session_atom::value,
              req.cookie(), req.args[0])
    .then(
      [=](std::string& poster, mailbox_actor& target) {
        auto& st = self->state;
        self
          ->request(st.deps.imq, st.deps.waits.request, store_atom::value,
                    std::move(poster), std::move(target))
          .then([=](caf::ok_atom) { answer(self, "OK"); }, fail(self));
      },
      fail(self));
}

// COUNT <username> <cookie>
void on_count(broker* self, const request& req) {
  with_own_mailbox(self, req, [=](mailbox_actor box) {
    self->request(box, self->state.deps.waits.request, count_atom::value)
      .then([=](uint64_t n) { answer(self, "COUNTED " + std::to_string(n)); },
            fail(self));
  });
}

// GETMSG <username> <cookie>
void on_getmsg(broker* self, const request& req) {
  with_own_mailbox(self, req, [=](mailbox_actor box) {
    self->request(box, self->state.deps.waits.request, caf::get_atom::value)
      .then([=](std::string& text) { answer(self, "OK " + text); }, fail(self));
  });
}

// DELMSG <username> <cookie>
void on_delmsg(broker* self, const request& req) {
  with_own_mailbox(self, req, [=](mailbox_actor box) {
    self->request(box, self->state.deps.waits.request, caf::delete_atom::value)
      .then([=](caf::ok_atom) { answer(self, "OK"); }, fail(self));
  });
}

// DUMP
void on_dump(broker* self, const request&) {
  auto& st = self->state;
  self->request(st.deps.imq, st.deps.waits.request, dump_atom::value)
    .then(
      [=](caf::ok_atom) {
        auto& st = self->state;
        self->request(st.deps.registry, st.deps.waits.request, dump_atom::value)
          .then([=](caf::ok_atom) { answer(self, "OK"); }, fail(self));
      },
      fail(self));
}

void dispatch(broker* self, const request& req) {
  switch (req.cmd()) {
  case command::register_user:
    return on_register(self, req);
  case command::login:
    return on_login(self, req);
  case command::logout:
    return on_logout(self, req);
  case command::message:
    return on_message(self, req);
  case command::store:
    return on_store(self, req);
  case command::count:
    return on_count(self, req);
  case command::getmsg:
    return on_getmsg(self, req);
  case command::delmsg:
    return on_delmsg(self, req);
  case command::dump:
    return on_dump(self, req);
  }
}

// -- flow control -------------------------------------------------------------

/// Reads only while the client keeps up: few enough queued requests and
/// unread replies. Otherwise the kernel's buffers push back on the client.
void update_reading(broker* self) {
  auto& st = self->state;
  bool want = !st.backlogged && st.queued.size() < st.deps.max_queued;
  if (want == st.reading)
    return;
  st.reading = want;
  if (want)
    self->trigger(st.hdl);
  else
    self->halt(st.hdl);
}

/// Starts queued requests until one has to wait for the actors.
void pump(broker* self) {
  auto& st = self->state;
  bool wrote = false;
  while (!st.busy && !st.backlogged && !st.queued.empty()) {
    auto next = std::move(st.queued.front());
    st.queued.pop_front();
    auto parsed = parse(next, st.deps.limits);
    if (auto err = std::get_if<parse_error>(&parsed)) {
      write_reply(self, error_reply(*err), next.term);
      wrote = true;
      continue;
    }
    auto& req = std::get<request>(parsed);
    st.busy = true;
    st.current = req.cmd();
    st.current_term = next.term;
    dispatch(self, req);
  }
  if (wrote || !self->wr_buf(st.hdl).empty()) {
    self->flush(st.hdl);
    // What flush could not hand to the socket yet waits in wr_buf.
    if (!st.backlogged && self->wr_buf(st.hdl).size() > st.deps.max_unsent) {
      st.backlogged = true;
      self->ack_writes(st.hdl, true);
    }
  }
  update_reading(self);
}

} // namespace

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.hdl = hdl;
  st.frames = framer{st.deps.limits.max_request};
  self->configure_read(hdl, caf::io::receive_policy::at_most(64 * 1024));
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
        pump(self);
      }
    },
    [=](const caf::io::connection_closed_msg&) { self->quit(); },
  };
}

} // namespace smsp
