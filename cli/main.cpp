#include "cli/command.h"

#include <fmt/core.h>

#include <exception>
#include <map>
#include <memory>
#include <vector>

namespace bouquet::cli {
namespace {

struct Entry {
  std::string name;
  std::string help;
  CommandSetup setup;
};

std::vector<Entry>& registry() {
  static std::vector<Entry> entries;
  return entries;
}

}  // namespace

CommandRegistration::CommandRegistration(std::string name, std::string help, CommandSetup setup) {
  registry().push_back({std::move(name), std::move(help), std::move(setup)});
}

}  // namespace bouquet::cli

int main(int argc, char** argv) {
  using namespace bouquet::cli;
  CLI::App app{"Bouquet: run and fine-tune large language models over a swarm of GPUs"};
  app.require_subcommand(1);
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& entry : registry()) {
    CLI::App* sub = app.add_subcommand(entry.name, entry.help);
    runners[sub] = entry.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bouquet: error: {}\n", e.what());
    return 1;
  }
  return 2;
}
