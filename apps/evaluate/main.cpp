// evaluate: perplexity, generation, speed and size of a model. Thin: flags -> options ->
// llmc::eval::run_evaluate.
#include "../common/tool.h"
#include "llmc/eval/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{"evaluate: perplexity (DESIGN.md §4), generation, speed and size of an OPT model"};
  llmc::eval::EvaluateOptions o;
  app.add_option("--model_name_or_path", o.model_name_or_path, "model directory or hub id (offline cache)")->required();
  app.add_option("--eval_file", o.eval_file, "UTF-8 text file for perplexity");
  app.add_option("--max_length", o.max_length, "window length in tokens (0 = max_position_embeddings)");
  app.add_option("--batch_size", o.batch_size, "windows per forward pass");
  app.add_option("--prompt", o.prompt, "generate a continuation of this text");
  app.add_option("--max_new_tokens", o.generation.max_new_tokens, "tokens to generate");
  app.add_flag("--do_sample", o.generation.do_sample, "sample instead of greedy decoding");
  app.add_option("--temperature", o.generation.temperature, "sampling temperature");
  app.add_option("--top_k", o.generation.top_k, "sample among the k most likely tokens (0 = all)");
  app.add_option("--top_p", o.generation.top_p, "nucleus sampling mass");
  app.add_flag("--benchmark", o.benchmark, "measure prefill and decode tokens/s");
  app.add_option("--bench_prompt_tokens", o.bench_prompt_tokens, "prompt length for --benchmark");
  app.add_option("--bench_new_tokens", o.bench_new_tokens, "decode steps for --benchmark");
  app.option_defaults()->always_capture_default();
  for (CLI::Option* opt : app.get_options()) opt->capture_default_str();
  return llmc::cli::run_tool("evaluate", app, argc, argv, [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate&) {
    o.revision = f.revision;
    return llmc::eval::run_evaluate(o, ctx);
  });
}
