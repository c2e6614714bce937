#include "llmc/calib/obs.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cholesky_inverse.h>
#include <ATen/ops/linalg_cholesky_ex.h>

#include <cmath>
#include <utility>

#include "llmc/core/error.h"

namespace llmc::calib {

int64_t zero_dead_inputs(at::Tensor& hessian, at::Tensor& weight) {
  at::Tensor diag = hessian.diagonal();
  at::Tensor dead = diag == 0;
  const int64_t n = dead.sum().item<int64_t>();
  if (n > 0) {
    diag.masked_fill_(dead, 1.0);
    weight.masked_fill_(dead.unsqueeze(0).expand_as(weight), 0.0);
  }
  return n;
}

namespace {

// The upper factor of H^-1 from the dampened H (consumed: it is released as soon as its
// Cholesky factor exists, and each factor as soon as the next one does, so that no more than
// two matrices of this size live here at once); undefined when H is not positive definite.
at::Tensor try_factor(at::Tensor h) {
  auto [lower, info] = at::linalg_cholesky_ex(h);
  h = at::Tensor();
  if (info.item<int64_t>() != 0) return at::Tensor();
  at::Tensor inv = at::cholesky_inverse(lower);
  lower = at::Tensor();
  auto [upper, info2] = at::linalg_cholesky_ex(inv, /*upper=*/true);
  inv = at::Tensor();
  if (info2.item<int64_t>() != 0 || !upper.isfinite().all().item<bool>()) return at::Tensor();
  return upper;
}

}  // namespace

InverseFactor inverse_factor(const at::Tensor& hessian, double damp_percent) {
  const double mean_diag = hessian.diagonal().mean().item<double>();
  InverseFactor f;
  for (double damp = damp_percent; damp < 1.0; damp += 0.01, ++f.retries) {
    at::Tensor h = hessian.clone();
    h.diagonal().add_(damp * mean_diag);
    f.upper = try_factor(std::move(h));
    if (f.upper.defined()) {
      f.damp_used = damp;
      return f;
    }
  }
  throw InputError("the calibration Hessian is not positive definite even with dampening 0.99 (--damp_percent " +
                   std::to_string(damp_percent) + "): the calibration inputs may hold NaN or infinite values");
}

}  // namespace llmc::calib
