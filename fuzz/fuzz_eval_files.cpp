// evaluate's own input files, chosen by the first byte: 0 a base log-probabilities file
// (--compare_to FILE: header, sizes, ids, then every record read), 1 a task file (--tasks).
#include <ATen/TensorOperators.h>

#include "fuzz_common.h"
#include "llmc/eval/logits_file.h"
#include "llmc/eval/tasks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static llmc::fuzz::InputFile file;
  const std::string path = file.write(data + 1, size - 1);
  llmc::fuzz::expect_only_llmc_errors([&] {
    if (data[0] == 0) {
      llmc::eval::LogitsFileReader r(path);
      const auto& h = r.header();
      const int64_t shared = h.vocab_size > 2 ? h.vocab_size - (data[size - 1] & 1) : h.vocab_size;
      for (int64_t done = 0; done < h.predicted_tokens;) {
        const int64_t n = std::min<int64_t>(7, h.predicted_tokens - done);
        const auto b = r.next(n, shared);
        (void)b.logits.sum();
        done += n;
      }
    } else if (data[0] == 1) {
      (void)llmc::eval::read_task_file(path, 0);
    }
  });
  return 0;
}
