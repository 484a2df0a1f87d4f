// Calibration: a scenario file may name, per weight format, one row whose published figure fixes
// that format's efficiency. The efficiency is solved by running that row's simulation (secant
// steps on 1 / efficiency, on which a row's time is close to affine) until it reproduces the
// published figure, then written into every row; all other rows stay predictions.
#pragma once

#include "sim/scenario.h"

#include <string>
#include <vector>

namespace bouquet::sim {

struct Calibrated {
  std::string format;
  std::string row;
  std::string metric;
  double published = 0;
  double efficiency = 0;
  int simulations = 0;  // runs the solve took
};

// Solves every calibration entry of `file`, in order, and sets the efficiencies in file.base and
// every row scenario. Throws SimulationError when a published figure is out of reach (it would
// need an efficiency above 1) or the solve does not converge.
std::vector<Calibrated> calibrate(ScenarioFile& file);

}  // namespace bouquet::sim
