// The tests' server configurations: the binary's defaults, resolved by the
// same function as smsp-actors' command line.
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <variant>

#include "app/options.hpp"

namespace smsp::testing {

/// resolve_options(opts), failing the test when the options do not fit.
inline server_config resolved(const server_options& opts) {
  auto result = resolve_options(opts);
  if (auto why = std::get_if<std::string>(&result))
    FAIL("bad test options: " << *why);
  return std::get<server_config>(result);
}

} // namespace smsp::testing
