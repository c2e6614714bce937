// prune: unstructured, N:M semi-structured, or structured (whole FFN neurons) pruning of the
// decoder layers' Linears. Thin: flags -> options -> llmc::prune::run_prune.
#include "../common/tool.h"
#include "llmc/prune/prune.h"

int main(int argc, char** argv) {
  CLI::App app{
      "prune: remove weights of the decoder layers' Linears and write a Hugging Face model directory.\n"
      "Structured pruning removes whole FFN neurons or hidden channels (the model shrinks); removing attention\n"
      "heads cannot be expressed in transformers' OPT and is not offered."};
  llmc::prune::PruneOptions o;
  llmc::cli::add_option_fields(app, llmc::prune::option_fields(o));
  return llmc::cli::run_tool("prune", app, argc, argv,
                             [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
                               o.revision = f.revision;
                               o.overwrite = f.overwrite;
                               return llmc::prune::run_prune(o, ctx, d);
                             });
}
