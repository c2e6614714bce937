// evaluate: perplexity, generation, speed and size of a model. Thin: flags -> options ->
// llmc::eval::run_evaluate.
#include "../common/tool.h"
#include "llmc/eval/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{"evaluate: perplexity (docs/metrics.md), generation, speed and size of an OPT model"};
  llmc::eval::EvaluateOptions o;
  llmc::cli::add_option_fields(app, llmc::eval::option_fields(o));
  return llmc::cli::run_tool("evaluate", app, argc, argv, [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate&) {
    o.revision = f.revision;
    return llmc::eval::run_evaluate(o, ctx);
  });
}
