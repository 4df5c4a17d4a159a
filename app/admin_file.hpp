// The admin file in the data dir: where a running server's admin listener is
// and its token (written by the server, read by smsp-admin). No CAF.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "net/wire/admin.hpp"

namespace smsp {

/// The data dir of smsp-actors and smsp-admin when none is given.
inline constexpr const char* default_data_dir = "./smsp-data";

/// DATA_DIR/admin.
std::string admin_file_path(const std::string& data_dir);

/// Writes `e` to DATA_DIR/admin with mode 0600: to a temporary file first,
/// synced, then renamed over the old one, so a reader sees a whole file or
/// none. Returns why it failed, or "".
std::string write_admin_file(const std::string& data_dir,
                             const admin::endpoint& e);

/// Removes DATA_DIR/admin (at a clean stop); a missing file is no error.
void remove_admin_file(const std::string& data_dir);

/// The file's content when it exists and parses; `why` (if given) says why
/// not: "missing", or what is wrong with it.
std::optional<admin::endpoint> read_admin_file(const std::string& data_dir,
                                               std::string* why = nullptr);

} // namespace smsp
