// A subcommand of the `bouquet` binary. Each cli/<name>.cpp registers one at static-init time, so
// adding a command touches one new file and nothing else.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace bouquet::cli {

// Declares the subcommand's flags on `sub` (binding them to state it owns) and returns what runs
// it once parsing succeeded. The returned function's value is the process exit status.
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct CommandRegistration {
  CommandRegistration(std::string name, std::string help, CommandSetup setup);
};

}  // namespace bouquet::cli
