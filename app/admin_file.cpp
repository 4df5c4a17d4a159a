// The admin file: written atomically with mode 0600, read by smsp-admin.
#include "app/admin_file.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace smsp {

std::string admin_file_path(const std::string& data_dir) {
  return (std::filesystem::path{data_dir} / std::string{admin::file_name})
    .string();
}

std::string write_admin_file(const std::string& data_dir,
                             const admin::endpoint& e) {
  auto path = admin_file_path(data_dir);
  auto tmp = path + ".tmp." + std::to_string(::getpid());
  auto text = admin::format_file(e);
  auto fail = [&](const std::string& what) {
    auto why = what + " " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return why;
  };
  // 0600 from the start (whatever the umask): the token must never be
  // readable by others, not even for a moment.
  int fd = ::open(tmp.c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return fail("cannot create");
  if (::fchmod(fd, 0600) != 0) {
    ::close(fd);
    return fail("cannot set the mode of");
  }
  size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ::close(fd);
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail("cannot sync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return fail("cannot rename");
  return {};
}

void remove_admin_file(const std::string& data_dir) {
  ::unlink(admin_file_path(data_dir).c_str());
}

std::optional<admin::endpoint> read_admin_file(const std::string& data_dir,
                                               std::string* why) {
  auto path = admin_file_path(data_dir);
  std::ifstream in{path};
  if (!in) {
    if (why != nullptr)
      *why = errno == ENOENT
               ? "missing"
               : "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto e = admin::parse_file(text.str());
  if (!e && why != nullptr)
    *why = path + " is damaged (no host, port and token)";
  return e;
}

} // namespace smsp
