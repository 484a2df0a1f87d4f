// SimGrid keeps one engine per process and cannot start a second simulation after the first, so
// each simulation runs in a child process: run_isolated() forks, runs `body` in the child and
// returns the text it produced. The parent never touches SimGrid. A child that throws, aborts or
// is killed becomes a SimulationError carrying the child's message.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

namespace bouquet::sim {

class SimulationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string run_isolated(const std::function<std::string()>& body);

}  // namespace bouquet::sim
