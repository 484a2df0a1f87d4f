// A subcommand of the `bouquet` binary. Each cli/<name>.cpp registers one at static-init time, so
// adding a command touches one new file and nothing else.
#pragma once

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <functional>
#include <string>

namespace bouquet::cli {

// Declares the subcommand's flags on `sub` (binding them to state it owns) and returns what runs
// it once parsing succeeded. The returned function's value is the process exit status.
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct CommandRegistration {
  CommandRegistration(std::string name, std::string help, CommandSetup setup);
};

// A number flag's check: a finite number in [lo, hi]. CLI::Range alone lets "nan" through (every
// comparison with NaN is false) and "inf" reads as a number; a value like --max-frame-bytes 0 that
// would make the command hang or spin is refused at parsing, naming the flag. Integer flags use
// CLI::Range(lo, hi), which also refuses a negative value for an unsigned flag.
inline CLI::Validator finite_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || !std::isfinite(value) || value < lo || value > hi) {
          return fmt::format("'{}' is not a finite number in [{:g}, {:g}]", text, lo, hi);
        }
        return {};
      },
      fmt::format("in [{:g}, {:g}]", lo, hi));
}

}  // namespace bouquet::cli
