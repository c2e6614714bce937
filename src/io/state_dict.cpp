#include "llmc/io/state_dict.h"

namespace llmc::io {

uint64_t tensor_nbytes(const at::Tensor& t) {
  return static_cast<uint64_t>(t.numel()) * static_cast<uint64_t>(t.element_size());
}

}  // namespace llmc::io
