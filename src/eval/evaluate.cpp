#include "llmc/eval/evaluate.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/model/weight_count.h"
#include "llmc/eval/compare.h"
#include "llmc/eval/logits_file.h"
#include "llmc/eval/perplexity.h"
#include "llmc/eval/tasks.h"
#include "llmc/io/hash.h"
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

namespace {

// Plain ASCII, accents, Cyrillic, Greek, CJK, emoji, digits and runs of whitespace.
constexpr const char* kTokenizerProbe =
    "The quick brown fox jumps over the lazy dog. Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 \u041c\u043e\u0441\u043a\u0432\u0430, "
    "\u0391\u03b8\u03ae\u03bd\u03b1, \u6771\u4eac 2024\u5e74 \U0001F642!\n\tTabs  and   spaces 1234567890 (x+y)=z; \"quoted\" it's.";

void check_same_tokenizer(const nlohmann::json& model_fp, const nlohmann::json& base_fp, const std::string& base) {
  if (model_fp == base_fp) return;
  throw UsageError("the model's tokenizer (" + model_fp.value("name", std::string("?")) + ", " +
                   std::to_string(model_fp.value("vocab_size", int64_t{0})) + " tokens) and the base's (" + base + ": " +
                   base_fp.value("name", std::string("?")) + ", " + std::to_string(base_fp.value("vocab_size", int64_t{0})) +
                   " tokens) differ or encode text differently; KL and top-1 agreement compare the two next-token "
                   "distributions id by id, so both models must share one tokenizer");
}

// What the comparison reads the base from: a loaded model or a saved logits file.
struct Base {
  std::string source;
  std::unique_ptr<model::CausalLM> model;
  std::unique_ptr<LogitsFileReader> file;
  int64_t shared_vocab{0};
};

}  // namespace

nlohmann::json tokenizer_fingerprint(const tokenizer::Tokenizer& tok) {
  std::string ids;
  for (int64_t id : tok.encode(kTokenizerProbe, true)) ids += std::to_string(id) + ",";
  return {{"name", tok.name()}, {"vocab_size", tok.vocab_size()}, {"probe_sha256", io::sha256_hex(ids)}};
}

nlohmann::json run_evaluate(const EvaluateOptions& o, const RunContext& ctx) {
  if (o.model_name_or_path.empty()) throw UsageError("--model_name_or_path is required");
  if (o.eval_file.empty() && o.prompt.empty() && !o.benchmark && o.tasks.empty() && o.compare_to.empty()) {
    log_info("nothing to measure but size: pass --eval_file, --tasks, --compare_to, --prompt or --benchmark");
  }
  if (o.limit < 0) throw UsageError("--limit must be >= 0 (0 = every example), found " + std::to_string(o.limit));
  const bool compare_file = !o.compare_to.empty() && is_logits_file(o.compare_to);
  if (!o.compare_to.empty() && !compare_file && o.eval_file.empty()) {
    throw UsageError("--compare_to a model needs --eval_file (the text both models are run on)");
  }
  if (!o.save_logits.empty() && o.eval_file.empty()) throw UsageError("--save_logits needs --eval_file");
  // Validate cheap inputs before the (slow) model load.
  std::string text;
  if (!o.eval_file.empty()) text = read_eval_text(o.eval_file);
  std::vector<Task> tasks;
  if (!o.tasks.empty()) {
    for (const auto& path : split_task_list(o.tasks)) {
      tasks.push_back(read_task_file(path, o.limit));
      for (size_t i = 0; i + 1 < tasks.size(); ++i) {
        if (tasks[i].name == tasks.back().name) throw UsageError("--tasks: two task files named '" + tasks.back().name + "'");
      }
    }
  }
  Base base;
  if (compare_file) base.file = std::make_unique<LogitsFileReader>(o.compare_to);

  const std::string dir = io::resolve_model_dir(o.model_name_or_path, o.revision);
  log_info("loading " + dir);
  auto model = model::load_causal_lm(dir, ctx);
  auto tok = tokenizer::load_tokenizer(dir);
  if (o.benchmark) check_benchmark_sizes(*model, o.bench_prompt_tokens, o.bench_new_tokens);
  const nlohmann::json fingerprint = tokenizer_fingerprint(*tok);

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
  }
  int64_t max_length = o.max_length;
  int64_t base_vocab = 0;
  if (base.file) {
    const LogitsFileHeader& h = base.file->header();
    base.source = o.compare_to;
    check_same_tokenizer(fingerprint, h.tokenizer, o.compare_to);
    if (ids.empty()) {
      ids = base.file->ids();
    } else if (ids != base.file->ids()) {
      throw UsageError(o.eval_file + " does not encode to the " + std::to_string(h.num_tokens) + " tokens saved in " +
                       o.compare_to + ": compare over the text the base was evaluated on (or leave --eval_file out)");
    }
    if (max_length != 0 && max_length != h.max_length) {
      throw UsageError("--max_length " + std::to_string(max_length) + " differs from the " + std::to_string(h.max_length) +
                       " the base's log-probabilities were saved with; the windows must be the same");
    }
    max_length = h.max_length;
    base_vocab = h.vocab_size;
  } else if (!o.compare_to.empty()) {
    const std::string base_dir = io::resolve_model_dir(o.compare_to, o.revision);
    log_info("loading the base " + base_dir);
    base.source = base_dir;
    // The base's 16-bit weights stay 16-bit in memory (converted exactly in each product):
    // beside a candidate that is packed or dense, at most one of the two is held in float32.
    RunContext base_ctx = ctx;
    base_ctx.keep_16bit_weights = true;
    base.model = model::load_causal_lm(base_dir, base_ctx);
    check_same_tokenizer(fingerprint, tokenizer_fingerprint(*tokenizer::load_tokenizer(base_dir)), base_dir);
    base_vocab = base.model->info().vocab_size;
  }
  if (!o.compare_to.empty()) {
    base.shared_vocab = std::min(model->info().vocab_size, base_vocab);
    if (base.shared_vocab < tok->vocab_size()) {
      throw UsageError("the shared vocabulary of the model (" + std::to_string(model->info().vocab_size) + " ids) and the base (" +
                       std::to_string(base_vocab) + ") is smaller than the tokenizer's " + std::to_string(tok->vocab_size()) +
                       " tokens: the models do not share a vocabulary");
    }
    if (model->info().vocab_size != base_vocab) {
      log_info("vocab_size differs (" + std::to_string(model->info().vocab_size) + " vs " + std::to_string(base_vocab) +
               "): distributions are compared over the first " + std::to_string(base.shared_vocab) + " ids");
    }
  }

  if (!ids.empty()) {
    const int64_t window = max_length == 0 ? model->info().max_positions : max_length;
    std::unique_ptr<LogitsFileWriter> writer;
    if (!o.save_logits.empty()) {
      if (window < 2 || window > model->info().max_positions) {
        throw UsageError("--max_length must be between 2 and max_position_embeddings (" + std::to_string(model->info().max_positions) + ")");
      }
      LogitsFileHeader h;
      h.vocab_size = model->info().vocab_size;
      h.max_length = window;
      h.num_tokens = static_cast<int64_t>(ids.size());
      h.predicted_tokens = protocol_predicted_tokens(h.num_tokens, window);
      h.tokenizer = fingerprint;
      h.model_path = dir;
      writer = std::make_unique<LogitsFileWriter>(o.save_logits, h, ids);
      log_info("writing the log-probabilities to " + o.save_logits + " (" +
               std::to_string(logits_record_bytes(h.vocab_size) * static_cast<uint64_t>(h.predicted_tokens) >> 20) + " MiB)");
    }
    CompareAccumulator acc;
    WindowObserver observe;
    if (writer || !o.compare_to.empty()) {
      observe = [&](const at::Tensor& logits, const at::Tensor& batch, const at::Tensor& mask) {
        at::Tensor base_logits;
        if (base.model) base_logits = base.model->forward(batch, mask, nullptr);
        // Window by window, on views of the logits (no copy of a [B, T, V] tensor).
        for_each_window_rows(logits, batch, mask, [&](int64_t w, const at::Tensor& rows, const at::Tensor& targets) {
          if (writer) writer->append(rows, targets);
          if (o.compare_to.empty()) return;
          // A base model's rows are compared a window at a time (no temporaries); a file's are
          // decoded a piece at a time.
          const int64_t n = rows.size(0), step = base.model ? n : compare_rows_per_piece(base.shared_vocab);
          for (int64_t r0 = 0; r0 < n; r0 += step) {
            const int64_t r1 = std::min(n, r0 + step);
            const BaseDistribution b = base.model ? base_from_logits(base_logits[w].slice(0, r0, r1), base.shared_vocab)
                                                  : base.file->next(r1 - r0, base.shared_vocab);
            acc.add(rows.slice(0, r0, r1), b, targets.slice(0, r0, r1));
          }
        });
      };
    }
    const PerplexityResult ppl = perplexity(*model, ids, max_length, o.batch_size, ctx, observe);
    m["perplexity"] = ppl.perplexity;
    m["predicted_tokens"] = ppl.predicted_tokens;
    if (writer) {
      writer->commit();
      const uint64_t bytes = std::filesystem::file_size(o.save_logits);
      m["saved_logits"] = {{"path", o.save_logits}, {"bytes", bytes},
                           {"bytes_per_predicted_token", static_cast<double>(bytes) / static_cast<double>(ppl.predicted_tokens)}};
    }
    if (!o.compare_to.empty()) {
      nlohmann::json c = acc.summary();
      c["base"] = base.source;
      c["base_kind"] = base.model ? "model" : "logits_file";
      c["shared_vocab"] = base.shared_vocab;
      c["max_length"] = window;
      m["compare"] = c;
      log_info("compare with " + base.source + ": mean KL " + std::to_string(c["kl_mean"].get<double>()) + " nats, top-1 agreement " +
               std::to_string(c["top1_agreement"].get<double>()) + ", perplexity ratio " + std::to_string(c["perplexity_ratio"].get<double>()));
    }
  }
  base.model.reset();
  if (!tasks.empty()) {
    nlohmann::json t = nlohmann::json::object();
    for (const Task& task : tasks) {
      t[task.name] = score_task(*model, *tok, task, o.batch_size, ctx);
      t[task.name]["path"] = task.path;
    }
    m["tasks"] = t;
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
      {"compare_to", "base to compare with over --eval_file's windows: a model (directory or hub id) or a --save_logits file",
       &o.compare_to},
      {"save_logits", "write this model's log-probabilities over --eval_file's windows to FILE (for --compare_to FILE)",
       &o.save_logits},
      {"tasks", "task files to score, comma-separated .jsonl (docs/metrics.md)", &o.tasks},
      {"limit", "examples per task (0 = all)", &o.limit},
  };
}

}  // namespace llmc::eval
