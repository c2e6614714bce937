#include "llmc/calib/obs.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cholesky_inverse.h>
#include <ATen/ops/linalg_cholesky_ex.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <utility>

#include "llmc/core/error.h"

namespace llmc::calib {

// The edits in place below run under InferenceMode: a Hessian collected under it is an
// inference tensor, which refuses in-place updates outside it (normal tensors accept them
// either way).

int64_t zero_dead_inputs(at::Tensor& hessian, at::Tensor& weight) {
  c10::InferenceMode guard;
  at::Tensor diag = hessian.diagonal();
  at::Tensor dead = diag == 0;
  const int64_t n = dead.sum().item<int64_t>();
  if (n > 0) {
    diag.masked_fill_(dead, 1.0);
    weight.masked_fill_(dead.unsqueeze(0).expand_as(weight), 0.0);
  }
  return n;
}

DiagonalRestore::DiagonalRestore(const at::Tensor& matrix) {
  c10::InferenceMode guard;
  diag = matrix.diagonal();
  saved = diag.clone();
}

DiagonalRestore::~DiagonalRestore() {
  try {
    c10::InferenceMode guard;
    diag.copy_(saved);
  } catch (...) {  // a copy between two CPU float32 buffers of one shape: not expected to fail
  }
}

WorkingHessian::WorkingHessian(const at::Tensor& hessian) : matrix(hessian.to(c10::kCPU, c10::kFloat)) {
  if (matrix.is_same(hessian)) restore_.emplace(matrix);
}

InverseFactor inverse_factor(const at::Tensor& hessian, double damp_percent) {
  c10::InferenceMode guard;
  const DiagonalRestore restore(hessian);
  at::Tensor diag = restore.diag;
  const double mean_diag = diag.mean().item<double>();
  InverseFactor f;
  for (double damp = damp_percent; damp < 1.0; damp += 0.01, ++f.retries) {
    // Dampened in place and restored right after the factorization: no copy of H. Each
    // factor is released as soon as the next exists, so that besides H no more than two
    // matrices of its size live here at once.
    diag.add_(damp * mean_diag);
    auto [lower, info] = at::linalg_cholesky_ex(hessian);
    diag.copy_(restore.saved);
    if (info.item<int64_t>() != 0) continue;
    at::Tensor inv = at::cholesky_inverse(lower);
    lower = at::Tensor();
    auto [upper, info2] = at::linalg_cholesky_ex(inv, /*upper=*/true);
    inv = at::Tensor();
    if (info2.item<int64_t>() != 0 || !upper.isfinite().all().item<bool>()) continue;
    f.upper = upper;
    f.damp_used = damp;
    return f;
  }
  throw InputError("the calibration Hessian is not positive definite even with dampening 0.99 (--damp_percent " +
                   std::to_string(damp_percent) + "): the calibration inputs may hold NaN or infinite values");
}

}  // namespace llmc::calib
