// Blocking TCP line client for SMSP (poll against a deadline per reply).
#include "app/line_client.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace smsp {

namespace {

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

/// Binds `fd` (of `family`) to the numeric `address`, any port. Returns an
/// empty string on success, else why not.
std::string bind_local(int fd, int family, const std::string& address) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
  addrinfo* found = nullptr;
  if (auto rc = getaddrinfo(address.c_str(), nullptr, &hints, &found))
    return "cannot use local address " + address + ": " + gai_strerror(rc);
  std::string why;
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0)
    why = "cannot bind to " + address + ": " + std::strerror(errno);
  freeaddrinfo(found);
  return why;
}

} // namespace

line_client::line_client(const std::string& host, uint16_t port,
                         std::chrono::milliseconds timeout,
                         const std::string& local_address)
  : timeout_(timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (auto rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found))
    throw std::runtime_error("cannot resolve " + host + ": "
                             + gai_strerror(rc));
  std::string last_error = "no address";
  for (auto ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    if (!local_address.empty()) {
      auto why = bind_local(fd, ai->ai_family, local_address);
      if (!why.empty()) {
        last_error = why;
        ::close(fd);
        continue;
      }
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  freeaddrinfo(found);
  if (fd_ < 0)
    throw std::runtime_error("cannot connect to " + host + ":" + service + ": "
                             + last_error);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

line_client::~line_client() {
  if (fd_ >= 0)
    ::close(fd_);
}

template <class Error>
void line_client::give_up(const std::string& why) {
  given_up_ = why;
  inbuf_.clear();
  inbuf_.shrink_to_fit();
  // The descriptor stays ours until the destructor: fd() remains valid.
  ::shutdown(fd_, SHUT_RDWR);
  throw Error(why);
}

void line_client::check_usable() const {
  if (!given_up_.empty())
    throw std::runtime_error("connection given up earlier: " + given_up_);
}

bool line_client::peer_closed() const {
  if (!given_up_.empty())
    return true;
  if (!inbuf_.empty())
    return false;
  pollfd pfd{fd_, POLLIN, 0};
  if (::poll(&pfd, 1, 0) <= 0)
    return false;
  if ((pfd.revents & (POLLERR | POLLNVAL)) != 0)
    return true;
  char byte;
  auto n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // 0: an orderly close; ECONNRESET: the server's abortive close.
  return n == 0
         || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
             && errno != EINTR);
}

void line_client::send_raw(std::string_view bytes) {
  check_usable();
  while (!bytes.empty()) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw sys_error("send");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

std::optional<std::string> line_client::read_reply(terminator term) {
  check_usable();
  using clock = std::chrono::steady_clock;
  // One deadline for the whole reply: a server that trickles a byte now and
  // then must not hold the caller longer than the timeout.
  auto deadline = clock::now() + timeout_;
  auto last = term == terminator::nul ? '\0' : '\n';
  // Bytes of inbuf_ already searched for `last`: each byte is looked at once
  // (a reply arriving in many small pieces costs linear, not quadratic, time).
  size_t searched = 0;
  for (;;) {
    // Only the first max_reply_ bytes may hold the terminator.
    auto window = std::string_view{inbuf_}.substr(0, max_reply_);
    auto pos = window.find(last, searched);
    if (pos != std::string_view::npos) {
      auto len = pos;
      if (term == terminator::crlf) {
        if (pos == 0 || inbuf_[pos - 1] != '\r')
          give_up<std::runtime_error>(
            "the server ended a reply with a bare LF where CRLF was due");
        --len;
      }
      auto reply = inbuf_.substr(0, len);
      inbuf_.erase(0, pos + 1);
      return reply;
    }
    if (inbuf_.size() >= max_reply_)
      give_up<reply_too_long>("the server's reply exceeds "
                              + std::to_string(max_reply_)
                              + " bytes, the longest allowed (terminator "
                                "included)");
    searched = inbuf_.size();
    auto left
      = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0)
      give_up<std::runtime_error>(
        "no complete reply from the server within "
        + std::to_string(timeout_.count()) + " ms"
        + (inbuf_.empty()
             ? std::string{}
             : " (" + std::to_string(inbuf_.size()) + " bytes of it arrived)"));
    pollfd pfd{fd_, POLLIN, 0};
    auto rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0) {
      if (errno == EINTR)
        continue;
      throw sys_error("poll");
    }
    if (rc == 0)
      continue; // the deadline check above decides
    char buf[65536];
    auto n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ECONNRESET)
        return std::nullopt;
      throw sys_error("recv");
    }
    if (n == 0)
      return std::nullopt;
    inbuf_.append(buf, static_cast<size_t>(n));
  }
}

std::string line_client::call(std::string_view request, terminator term) {
  std::string line{request};
  line += terminator_bytes(term);
  send_raw(line);
  auto reply = read_reply(term);
  if (!reply)
    throw std::runtime_error("the server closed the connection");
  return *reply;
}

void line_client::shutdown_write() {
  ::shutdown(fd_, SHUT_WR);
}

} // namespace smsp
