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
  app.add_option("--model_path", o.model_path, "model directory or hub id (quantized inputs are re-quantized)")->required();
  app.add_option("--output_dir", o.output_dir, "where the pruned model directory goes")->required();
  app.add_option("--pruning_ratio", o.pruning_ratio, "fraction to remove, in (0, 1)");
  app.add_option("--pruning_method", o.pruning_method,
                 "magnitude | random | wanda (|w| x input norm, per output row; needs calibration) | activation "
                 "(structured: mean |activation| of the neuron; needs calibration)");
  app.add_option("--pruning_type", o.pruning_type, "structured (FFN neurons) | unstructured | semi_structured");
  app.add_option("--sparsity_pattern", o.sparsity_pattern, "N:M for semi_structured (2:4, 4:8)");
  app.add_option("--scope", o.scope, "layer (same ratio per Linear) | global (one threshold; unstructured)");
  app.add_option("--structure", o.structure, "structured: ffn (FFN neurons) | hidden (hidden_size)");
  app.add_option("--calibration_file", o.calibration_file, "text for the calibration-based methods");
  app.add_option("--num_calibration_samples", o.num_calibration_samples, "calibration sequences (sampled with --seed)");
  app.add_option("--calibration_seq_len", o.calibration_seq_len, "tokens per calibration sequence");
  app.add_option("--eval_file", o.eval_file, "report perplexity before and after on this text");
  app.add_option("--max_length", o.eval_max_length, "perplexity window (0 = max_position_embeddings)");
  app.add_option("--max_shard_size", o.max_shard_size, "largest safetensors file, e.g. 5GB");
  for (CLI::Option* opt : app.get_options()) opt->capture_default_str();
  return llmc::cli::run_tool("prune", app, argc, argv,
                             [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
                               o.revision = f.revision;
                               o.overwrite = f.overwrite;
                               return llmc::prune::run_prune(o, ctx, d);
                             });
}
