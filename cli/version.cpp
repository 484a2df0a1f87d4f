#include "cli/command.h"

#include <fmt/core.h>

namespace bouquet::cli {
namespace {

const CommandRegistration version_command{"version", "Print Bouquet's version", [](CLI::App&) {
                                            return [] {
                                              fmt::print("bouquet 0.1\n");
                                              return 0;
                                            };
                                          }};

}  // namespace
}  // namespace bouquet::cli
