#include "tests/net/support/swarm_processes.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

namespace bouquet::net::testing {

std::vector<ServerProcess> start_servers(const std::filesystem::path& model, const std::vector<std::string>& spans,
                                         const std::vector<std::string>& extra_flags) {
  std::vector<ServerProcess> servers;
  for (const auto& span : spans) {
    std::vector<std::string> args{"--model",  model.string(), "--blocks",  span,
                                  "--listen", "127.0.0.1:0",  "--threads", "1"};
    args.insert(args.end(), extra_flags.begin(), extra_flags.end());
    servers.emplace_back(BOUQUET_BINARY, args, /*ready_timeout_s=*/60);
  }
  return servers;
}

std::vector<std::string> addresses(const std::vector<ServerProcess>& servers) {
  std::vector<std::string> out;
  for (const auto& s : servers) out.push_back(s.address());
  return out;
}

CommandResult run_bouquet(const std::string& args, bool want_stderr) {
  CommandResult r;
  const std::string redirect = want_stderr ? " 2>&1 >/dev/null" : " 2>/dev/null";
  FILE* pipe = ::popen((std::string(BOUQUET_BINARY) + " " + args + redirect).c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return r;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

}  // namespace bouquet::net::testing
