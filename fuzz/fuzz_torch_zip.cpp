// A torch.save checkpoint: the zip reader, the restricted unpickler and tensor rebuilding.
#include <ATen/TensorOperators.h>

#include "fuzz_common.h"
#include "llmc/io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static llmc::fuzz::InputFile file;
  const std::string path = file.write(data, size);
  llmc::fuzz::expect_only_llmc_errors([&] {
    for (const auto& [name, t] : llmc::io::load_torch_checkpoint(path)) {
      if (t.numel() > 0) (void)t.contiguous().sum();
    }
  });
  return 0;
}
