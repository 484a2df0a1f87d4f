// What every node of one simulation shares: the scenario, the cost model, the transport, the
// modelled directory and the results being collected. SimGrid runs actors one at a time in one
// thread, so plain shared state is safe here.
#pragma once

#include "core/block_span.h"
#include "core/compression.h"
#include "core/rng.h"
#include "sim/cost_model.h"
#include "sim/directory.h"
#include "sim/run_result.h"
#include "sim/scenario.h"
#include "sim/transport.h"

#include <map>
#include <string>

namespace bouquet::sim {

struct SimContext {
  explicit SimContext(const Scenario& s);

  const Scenario& scenario;
  const ModelShape& shape;
  WeightFormat format;
  CostModel cost;
  core::DType activation_dtype;
  core::Compression compression;
  std::string model_id;  // what servers serve and clients ask for
  Transport transport;
  Directory directory;
  core::Rng rng;  // nodes derive their own streams from it
  RunResult result;
  // placement "best": each unpinned server's span, by host, decided before the run.
  std::map<std::string, core::BlockSpan> best_spans;
};

}  // namespace bouquet::sim
