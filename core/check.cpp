#include "core/check.h"

#include <fmt/core.h>

#include <cstdlib>

namespace bouquet::core {

void check_failed(std::string_view condition, std::string_view message, std::source_location where) {
  fmt::print(stderr, "bouquet: internal error at {}:{}: {} ({})\n", where.file_name(), where.line(), message,
             condition);
  std::abort();
}

}  // namespace bouquet::core
