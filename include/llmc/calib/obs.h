// The optimal-brain-surgeon pieces GPTQ and SparseGPT share (docs/methods.md): dead inputs,
// dampening, and the upper Cholesky factor of the inverse Hessian that both update with.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace llmc::calib {

// Inputs that never fire (diag(H) == 0): H[d, d] = 1 and W[:, d] = 0, as the references do.
// H and W (float32 [in, in] and [out, in]) are edited in place; returns how many.
int64_t zero_dead_inputs(at::Tensor& hessian, at::Tensor& weight);

// Saves a square matrix's diagonal and puts it back, bit for bit, when it leaves scope (also
// when an exception passes): for methods that edit a caller's Hessian in place instead of
// copying it.
struct DiagonalRestore {
  explicit DiagonalRestore(const at::Tensor& matrix);
  ~DiagonalRestore();
  DiagonalRestore(const DiagonalRestore&) = delete;
  DiagonalRestore& operator=(const DiagonalRestore&) = delete;
  at::Tensor diag;   // a view of the matrix's diagonal
  at::Tensor saved;  // its values on entry
};

// A method's working Hessian: the caller's own matrix when it is CPU float32 (no copy of a
// matrix that is 268 MB for opt-1.3b's fc2; the diagonal entries the method sets, e.g. for dead
// inputs, are restored bit for bit when this leaves scope), else a converted copy, released
// as soon as `matrix` lets go of it.
class WorkingHessian {
 public:
  explicit WorkingHessian(const at::Tensor& hessian);
  at::Tensor matrix;

 private:
  std::optional<DiagonalRestore> restore_;
};

struct InverseFactor {
  at::Tensor upper;         // upper Cholesky factor of (H + damp * mean(diag H) I)^-1, float32
  double damp_used{0.0};    // the dampening that made H positive definite
  int retries{0};           // how many times it was raised (by 0.01, as GPTQModel does)
};

// InputError when no dampening below 1 makes H positive definite. H (CPU float32) is not
// copied: its diagonal is dampened in place for each factorization and restored bit for bit
// before this returns or throws.
InverseFactor inverse_factor(const at::Tensor& hessian, double damp_percent);

}  // namespace llmc::calib
