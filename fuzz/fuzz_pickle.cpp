// The restricted unpickler alone (data.pkl), storages served as zero bytes of the declared size.
#include <ATen/TensorOperators.h>
#include <ATen/ops/zeros.h>

#include "fuzz_common.h"
#include "pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmc::fuzz::expect_only_llmc_errors([&] {
    const llmc::io::pickle::StorageLoader loader = [](const std::string&, c10::ScalarType dtype, int64_t numel) {
      if (numel > (int64_t{1} << 20)) throw llmc::InputError("fuzz: storage larger than 1M elements");
      return at::zeros({numel}, at::TensorOptions().dtype(dtype));
    };
    auto root = llmc::io::pickle::unpickle(data, size, loader, "fuzz");
    if (root->kind == llmc::io::pickle::Kind::kTensor && root->tensor.numel() > 0) (void)root->tensor.contiguous().sum();
  });
  return 0;
}
