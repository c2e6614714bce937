// The safetensors reader: header validation, then every tensor materialised.
#include <ATen/TensorOperators.h>

#include "fuzz_common.h"
#include "llmc/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static llmc::fuzz::InputFile file;
  const std::string path = file.write(data, size);
  llmc::fuzz::expect_only_llmc_errors([&] {
    for (const auto& [name, t] : llmc::io::SafetensorsFile::open(path).load_all()) {
      if (t.numel() > 0) (void)t.sum();  // touch every byte the reader exposes
    }
  });
  return 0;
}
