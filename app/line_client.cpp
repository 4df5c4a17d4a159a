// Blocking TCP line client for SMSP (poll with a timeout on every read).
#include "app/line_client.hpp"

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

void line_client::send_raw(std::string_view bytes) {
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

std::optional<std::string> line_client::read_reply(char term) {
  for (;;) {
    auto pos = inbuf_.find(term);
    if (pos != std::string::npos) {
      auto reply = inbuf_.substr(0, pos);
      inbuf_.erase(0, pos + 1);
      if (term == '\n' && !reply.empty() && reply.back() == '\r')
        reply.pop_back();
      return reply;
    }
    pollfd pfd{fd_, POLLIN, 0};
    auto rc = ::poll(&pfd, 1, static_cast<int>(timeout_.count()));
    if (rc < 0) {
      if (errno == EINTR)
        continue;
      throw sys_error("poll");
    }
    if (rc == 0)
      throw std::runtime_error("no reply from the server within "
                               + std::to_string(timeout_.count()) + " ms");
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

std::string line_client::call(std::string_view request) {
  std::string line{request};
  line += '\n';
  send_raw(line);
  auto reply = read_reply('\n');
  if (!reply)
    throw std::runtime_error("the server closed the connection");
  return *reply;
}

void line_client::shutdown_write() {
  ::shutdown(fd_, SHUT_WR);
}

} // namespace smsp
