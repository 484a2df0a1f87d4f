// Real `bouquet serve` processes for the slow tests: a tiny model split across several servers
// on 127.0.0.1, ports chosen by the servers (:0) and read from their listening lines.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "net/server/server_process.h"

namespace bouquet::net::testing {

// Starts one server per span ("A:B") of `model`; extra flags go to every server.
std::vector<ServerProcess> start_servers(const std::filesystem::path& model, const std::vector<std::string>& spans,
                                         const std::vector<std::string>& extra_flags = {});
std::vector<std::string> addresses(const std::vector<ServerProcess>& servers);
// What `bouquet ARGS` printed on one stream, and its exit status (-1 when it did not exit).
struct CommandResult {
  int status = -1;
  std::string output;
};
// Runs the built `bouquet` with `args` (a shell command line, quoted as needed) to completion and
// keeps its stdout, or its stderr when `want_stderr` (the other stream is discarded).
CommandResult run_bouquet(const std::string& args, bool want_stderr = false);

// "a,b,c" for --peers.
std::string join(const std::vector<std::string>& items, const char* separator = ",");

}  // namespace bouquet::net::testing
