// A checkpoint's tensors by name (Hugging Face key names), sorted by name.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

namespace llmc::io {

using StateDict = std::map<std::string, at::Tensor>;

// Bytes of a tensor's elements (numel * element size).
uint64_t tensor_nbytes(const at::Tensor& t);

// "[768, 3072]": a shape as error messages print it.
std::string shape_string(at::IntArrayRef shape);

}  // namespace llmc::io
