#include "llmc/eval/evaluate.h"

#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/model/weight_count.h"
#include "llmc/eval/perplexity.h"
#include "llmc/eval/speed.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/model/causal_lm.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::eval {

std::string read_eval_text(const std::string& path) {
  std::string text = io::read_text_file(path);
  if (text.empty()) throw InputError(path + ": eval file is empty");
  if (!tokenizer::is_valid_utf8(text)) throw InputError(path + ": eval file is not valid UTF-8");
  return text;
}

nlohmann::json run_evaluate(const EvaluateOptions& o, const RunContext& ctx) {
  if (o.model_name_or_path.empty()) throw UsageError("--model_name_or_path is required");
  if (o.eval_file.empty() && o.prompt.empty() && !o.benchmark) {
    log_info("nothing to measure but size: pass --eval_file, --prompt or --benchmark");
  }
  // Validate cheap inputs before the (slow) model load.
  std::string text;
  if (!o.eval_file.empty()) text = read_eval_text(o.eval_file);

  const std::string dir = io::resolve_model_dir(o.model_name_or_path, o.revision);
  log_info("loading " + dir);
  auto model = model::load_causal_lm(dir, ctx);
  auto tok = tokenizer::load_tokenizer(dir);
  if (o.benchmark) check_benchmark_sizes(*model, o.bench_prompt_tokens, o.bench_new_tokens);

  nlohmann::json m = nlohmann::json::object();
  m["model_path"] = dir;
  const model::WeightCount stats = model::count_weights(*model);
  m["num_parameters"] = stats.num_parameters;
  m["disk_size_bytes"] = io::directory_size_bytes(dir);
  m["memory_footprint_bytes"] = stats.memory_footprint_bytes;
  m["sparsity"] = stats.sparsity();

  std::vector<int64_t> ids;
  if (!text.empty()) {
    ids = tok->encode(text, /*add_special_tokens=*/true);
    log_info(o.eval_file + ": " + std::to_string(ids.size()) + " tokens");
    const PerplexityResult ppl = perplexity(*model, ids, o.max_length, o.batch_size, ctx);
    m["perplexity"] = ppl.perplexity;
    m["predicted_tokens"] = ppl.predicted_tokens;
  }
  if (!o.prompt.empty()) {
    model::GenerationOptions g = o.generation;
    if (!g.eos_token_id) g.eos_token_id = tok->special().eos ? tok->special().eos : model->info().eos_token_id;
    g.progress = true;
    const std::vector<int64_t> prompt = tok->encode(o.prompt, true);
    const std::vector<int64_t> out = model::generate(*model, prompt, g, ctx);
    m["generated_text"] = tok->decode(out, /*skip_special_tokens=*/true);
    m["generated_tokens"] = out.size();
  }
  if (o.benchmark) {
    const SpeedResult s = benchmark_speed(*model, ids, o.bench_prompt_tokens, o.bench_new_tokens, ctx);
    m["prefill_tokens_per_s"] = s.prefill_tokens_per_s;
    m["decode_tokens_per_s"] = s.decode_tokens_per_s;
  }
  return m;
}

std::vector<OptionField> option_fields(EvaluateOptions& o) {
  using R = OptionField::Role;
  auto sw = [](OptionField f) {
    f.is_switch = true;
    return f;
  };
  return {
      {"model_name_or_path", "model directory or hub id (offline cache)", &o.model_name_or_path, R::kInputModel, true},
      {"eval_file", "UTF-8 text file for perplexity", &o.eval_file},
      {"max_length", "window length in tokens (0 = max_position_embeddings)", &o.max_length},
      {"batch_size", "windows per forward pass", &o.batch_size},
      {"prompt", "generate a continuation of this text", &o.prompt},
      {"max_new_tokens", "tokens to generate", &o.generation.max_new_tokens},
      sw({"do_sample", "sample instead of greedy decoding", &o.generation.do_sample}),
      {"temperature", "sampling temperature", &o.generation.temperature},
      {"top_k", "sample among the k most likely tokens (0 = all)", &o.generation.top_k},
      {"top_p", "nucleus sampling mass", &o.generation.top_p},
      sw({"benchmark", "measure prefill and decode tokens/s", &o.benchmark}),
      {"bench_prompt_tokens", "prompt length for --benchmark", &o.bench_prompt_tokens},
      {"bench_new_tokens", "decode steps for --benchmark", &o.bench_new_tokens},
  };
}

}  // namespace llmc::eval
