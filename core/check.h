// Always-on assertions for programmer errors (a broken invariant, a misuse of an API). They stay in
// release builds: a wrong answer from a distributed system is worse than a crash with a reason.
// Expected failures (bad input, a vanished peer, a missing file) are typed errors instead.
#pragma once

#include <source_location>
#include <string_view>

namespace bouquet::core {

[[noreturn]] void check_failed(std::string_view condition, std::string_view message, std::source_location where);

}  // namespace bouquet::core

#define BOUQUET_CHECK(condition, message)                                                  \
  do {                                                                                     \
    if (!(condition)) [[unlikely]]                                                         \
      ::bouquet::core::check_failed(#condition, message, std::source_location::current()); \
  } while (0)
