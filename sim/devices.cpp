#include "sim/devices.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <deque>
#include <mutex>

namespace bouquet::sim {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kTera = 1e12;
constexpr double kGiga = 1e9;

// Sources: NVIDIA's A100, T4, RTX A4000/A5000 datasheets; the Ampere GA102 and Turing TU102
// whitepapers (GeForce rates); the Pascal GP102 specifications (no tensor cores, FP16 at 1/64 and
// int8 through dp4a at 4x FP32). CPUs: cores x clock x 32 FP32 FLOP per cycle (two 256-bit FMA
// units) and DDR4-3200 channels x 25.6 GB/s.
const std::array<DeviceSpec, 11>& catalog() {
  static const std::array<DeviceSpec, 11> devices = {{
      {"a100-80gb", true, 19.5 * kTera, 312 * kTera, 624 * kTera, 2039 * kGiga, 80 * kGiB},
      {"a100-40gb", true, 19.5 * kTera, 312 * kTera, 624 * kTera, 1555 * kGiga, 40 * kGiB},
      {"t4", true, 8.1 * kTera, 65 * kTera, 130 * kTera, 320 * kGiga, 16 * kGiB},
      {"rtx-3060", true, 12.74 * kTera, 25.5 * kTera, 101.9 * kTera, 360 * kGiga, 12 * kGiB},
      {"rtx-2080-ti", true, 13.45 * kTera, 53.8 * kTera, 215.2 * kTera, 616 * kGiga, 11 * kGiB},
      {"rtx-3090", true, 35.58 * kTera, 71 * kTera, 284 * kTera, 936.2 * kGiga, 24 * kGiB},
      {"rtx-a4000", true, 19.17 * kTera, 76.7 * kTera, 153.4 * kTera, 448 * kGiga, 16 * kGiB},
      {"rtx-a5000", true, 27.77 * kTera, 111.1 * kTera, 222.2 * kTera, 768 * kGiga, 24 * kGiB},
      {"gtx-1080-ti", true, 11.34 * kTera, 0.177 * kTera, 45.4 * kTera, 484.4 * kGiga, 11 * kGiB},
      // A desktop: 8 cores at 3.5 GHz, dual-channel DDR4-3200.
      {"cpu-8core", false, 0.896 * kTera, 0.896 * kTera, 0.896 * kTera, 51.2 * kGiga, 64 * kGiB},
      // A server socket: 32 cores at 2.9 GHz, eight DDR4-3200 channels.
      {"cpu-32core", false, 2.97 * kTera, 2.97 * kTera, 2.97 * kTera, 204.8 * kGiga, 512 * kGiB},
  }};
  return devices;
}

// Device files read so far; a deque keeps the addresses find_device() handed out.
struct FileDevices {
  std::mutex mutex;
  std::deque<DeviceSpec> devices;
};
FileDevices& file_devices() {
  static FileDevices registry;
  return registry;
}

}  // namespace

std::string register_device_file(const std::string& path) {
  DeviceSpec device = read_device_file(path);
  std::string name = device.name;
  FileDevices& registry = file_devices();
  std::lock_guard lock(registry.mutex);
  registry.devices.push_back(std::move(device));
  return name;
}

const DeviceSpec* find_device(std::string_view name) {
  if (name.starts_with("file:")) {
    FileDevices& registry = file_devices();
    std::lock_guard lock(registry.mutex);
    for (auto it = registry.devices.rbegin(); it != registry.devices.rend(); ++it) {
      if (it->name == name) return &*it;
    }
    return nullptr;
  }
  std::string key(name);
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& device : catalog()) {
    if (device.name == key) return &device;
  }
  return nullptr;
}

std::vector<std::string> device_names() {
  std::vector<std::string> names;
  for (const auto& device : catalog()) names.push_back(device.name);
  return names;
}

}  // namespace bouquet::sim
