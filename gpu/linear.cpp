#include "gpu/linear.h"

#include "core/check.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>

namespace bouquet::gpu {
namespace {

std::optional<kernels::Isa> chosen_isa(LinearKernels choice) {
  switch (choice) {
    case LinearKernels::best:
      return kernels::detected_isa();
    case LinearKernels::libtorch:
      return std::nullopt;
    case LinearKernels::portable:
      return kernels::Isa::portable;
    case LinearKernels::avx2:
      return kernels::Isa::avx2;
    case LinearKernels::avx512:
      return kernels::Isa::avx512;
  }
  return std::nullopt;
}

// Fewer output rows than this per thread cost more in hand-off than they save.
constexpr int64_t kRowsPerThreadMin = 256;

// bf16 weights past this many rows go to libtorch (oneDNN), measured faster there than the
// kernels at 9-16 rows (f32, int8 and NF4 stay with the kernels: libtorch's generic f32 product
// is ~10x slower and it has no int8 or NF4 product).
constexpr int64_t kBf16KernelRowsMax = 8;

// Splits the outputs over as many threads as libtorch is given (--threads), in chunks that each
// thread takes in turn (a shared counter), not in equal halves: on a busy machine a thread that
// waits for a core, or wakes late, takes fewer chunks instead of holding up the whole product.
//
// The threads are an OpenMP team opened here, in a file built with OpenMP (gpu/CMakeLists.txt):
// at::parallel_for is a header template whose `omp parallel` only forks where the caller is built
// with OpenMP, so from this layer it ran every chunk on one thread (perf: one thread did all the
// products; --threads 2 gave no speed-up while llama.cpp's second thread gave 1.8x).
thread_local int last_threads = 1;

void matvec_on_threads(kernels::Isa isa, const kernels::MatvecProblem& problem) {
  const int64_t out = problem.out;
  const int threads = at::get_num_threads();
  if (threads <= 1 || out < 2 * kRowsPerThreadMin || at::in_parallel_region() || omp_in_parallel()) {
    kernels::matvec(isa, problem, 0, out);
    last_threads = 1;
    return;
  }
  const int64_t chunk = std::max<int64_t>(64, (out / (8 * threads) + 15) / 16 * 16);
  const int64_t chunks = (out + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  std::exception_ptr failure;  // an exception may not leave the parallel region
  std::mutex failure_mutex;
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    if (omp_get_thread_num() == 0) team = omp_get_num_threads();
    try {
      for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
        kernels::matvec(isa, problem, c * chunk, std::min(out, (c + 1) * chunk));
      }
    } catch (...) {
      next = chunks;
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  }
  last_threads = team;
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

int last_product_threads() { return last_threads; }

Linear::Linear(const at::Tensor& weight, const ComputeOptions& options, const at::Tensor& bias)
    : weight_(weight.contiguous()), bias_(bias) {
  BOUQUET_CHECK(weight.dim() == 2, "Linear: the weight must be a matrix [out, in]");
  BOUQUET_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
                "Linear: the bias must be [out_features]");
  out_features_ = weight.size(0);
  in_features_ = weight.size(1);
  if (options.quant == WeightQuant::int8) {
    // Symmetric per-row scales: row o is weight[o] = int8[o] * scales[o]; an all-zero row keeps
    // scale 1 so nothing divides by zero.
    const at::Tensor w32 = weight_.detach().to(at::kFloat);
    at::Tensor max_abs = w32.abs().amax(1);
    scales_ = at::where(max_abs > 0, max_abs / 127.0, at::ones_like(max_abs)).contiguous();
    weight_ = at::round(w32 / scales_.unsqueeze(1)).clamp(-127, 127).to(at::kChar).contiguous();
  } else if (options.quant == WeightQuant::nf4 || options.quant == WeightQuant::nf4_nodq) {
    nf4_ = quantize_nf4(weight_, options.quant == WeightQuant::nf4);
    weight_ = nf4_->indices;
  }
  // The kernels serve CPU inference in f32 or bf16; a weight that itself wants gradients goes
  // through libtorch so autograd sees it.
  const bool kernel_dtype = options.dtype == at::kFloat || options.dtype == at::kBFloat16;
  if (options.device.is_cpu() && kernel_dtype && !weight.requires_grad()) {
    isa_ = chosen_isa(options.kernels);
  }
  if (isa_) {
    BOUQUET_CHECK(kernels::isa_supported(*isa_), "Linear: kernels for an instruction set this CPU lacks");
    compute_dtype_ = options.dtype;
    if (nf4_) {
      weight_type_ = kernels::WeightType::nf4;
    } else if (scales_.defined()) {
      weight_type_ = kernels::WeightType::int8;
    } else if (weight_.scalar_type() == at::kFloat) {
      weight_type_ = kernels::WeightType::f32;
    } else if (weight_.scalar_type() == at::kBFloat16) {
      weight_type_ = kernels::WeightType::bf16;
    } else {
      isa_.reset();  // a weight in a dtype the kernels do not read: libtorch handles it
    }
  }
}

bool Linear::kernels_apply(const at::Tensor& input) const {
  if (!isa_ || input.dim() == 0 || input.size(-1) != in_features_) return false;
  if (!input.device().is_cpu() || input.scalar_type() != compute_dtype_) return false;
  if (at::GradMode::is_enabled() && input.requires_grad()) return false;
  const int64_t rows = input.numel() / std::max<int64_t>(in_features_, 1);
  // Past kMatvecRowsMax rows (a prefill) the kernels take passes of that many rows: NF4 has no
  // dense weight to hand libtorch, and for f32 and int8 this libtorch's f32 product (Debian's
  // generic BLAS) is ~10x slower than the kernels at any row count (measured 1.6 vs 18 GFLOP/s).
  if (weight_type_ == kernels::WeightType::bf16 && rows > kBf16KernelRowsMax) return false;
  return rows >= 1 && in_features_ > 0;
}

at::Tensor Linear::apply_with_kernels(const at::Tensor& input) const {
  const at::Tensor x = input.to(at::kFloat).contiguous();
  const int64_t rows = x.numel() / in_features_;
  at::Tensor y = at::empty({rows, out_features_}, x.options());
  kernels::MatvecProblem problem;
  problem.in = in_features_;
  problem.weight = weight_.data_ptr();
  problem.weight_type = weight_type_;
  problem.scales = scales_.defined() ? scales_.data_ptr<float>() : nullptr;
  if (nf4_) problem.nf4_absmax = nf4_->kernel_absmax();
  problem.out = out_features_;
  const kernels::Isa isa = *isa_;
  for (int64_t row = 0; row < rows; row += kernels::kMatvecRowsMax) {
    problem.rows = std::min(kernels::kMatvecRowsMax, rows - row);
    problem.x = x.data_ptr<float>() + row * in_features_;
    problem.y = y.data_ptr<float>() + row * out_features_;
    matvec_on_threads(isa, problem);
  }
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = out_features_;
  y = y.view(shape);
  if (compute_dtype_ != at::kFloat) y = y.to(compute_dtype_);
  if (bias_.defined()) y.add_(bias_);
  return y;
}

at::Tensor Linear::apply_with_libtorch(const at::Tensor& input) const {
  if (nf4_) return at::linear(input, dequantize_nf4(*nf4_, input.scalar_type()), bias_);
  if (!scales_.defined()) return at::linear(input, weight_, bias_);
  // Per-row scales commute with the product: (x q^T) * s == x (q * s)^T, and this keeps autograd
  // for the input intact. int8 values are exact in every floating dtype; the scales are applied
  // in f32 at least.
  const at::ScalarType dtype = input.scalar_type();
  const at::ScalarType wide = dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor y = (at::linear(input, weight_.to(dtype)).to(wide) * scales_.to(wide)).to(dtype);
  if (bias_.defined()) y = y + bias_;
  return y;
}

at::Tensor Linear::operator()(const at::Tensor& input) const {
  BOUQUET_CHECK(weight_.defined(), "Linear: used before it was given a weight");
  const at::Tensor output = kernels_apply(input) ? apply_with_kernels(input) : apply_with_libtorch(input);
  const LoraAdapter* adapter = lora_site_.empty() ? nullptr : active_lora();
  return adapter == nullptr ? output : adapter->apply(lora_site_, input, output);
}

uint64_t Linear::weight_bytes() const {
  uint64_t total = nf4_ ? nf4_->bytes() : weight_.numel() * weight_.element_size();
  if (scales_.defined()) total += scales_.numel() * scales_.element_size();
  if (bias_.defined()) total += bias_.numel() * bias_.element_size();
  return total;
}

}  // namespace bouquet::gpu
