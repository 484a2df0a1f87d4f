// A scenario file as a user may write it: loaded, or refused with a ScenarioError naming the
// key; never another exception, a crash or UB.
#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "sim/yaml_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet::sim;
  try {
    (void)load_scenario_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml", {});
  } catch (const ScenarioError&) {
  }
  return 0;
}
