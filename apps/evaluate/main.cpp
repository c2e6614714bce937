// evaluate: perplexity, generation, speed and size of a model. Thin: flags -> options ->
// llmc::eval::run_evaluate.
#include <malloc.h>

#include "../common/tool.h"
#include "llmc/eval/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{"evaluate: perplexity, KL and agreement with a base model, task accuracy (docs/metrics.md), generation, speed and size of an OPT model"};
  llmc::eval::EvaluateOptions o;
  llmc::cli::add_option_fields(app, llmc::eval::option_fields(o));
  // Every batch allocates logits of the same few sizes (tens of MB): kept on the heap and
  // reused instead of mapped and faulted in afresh each time (measured 25-40% of a
  // perplexity run's time on the demo model).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  return llmc::cli::run_tool("evaluate", app, argc, argv, [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate&) {
    o.revision = f.revision;
    return llmc::eval::run_evaluate(o, ctx);
  });
}
