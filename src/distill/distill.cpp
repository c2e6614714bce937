#include "llmc/distill/distill.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint.h"
#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/distill/data.h"
#include "llmc/distill/losses.h"
#include "llmc/distill/optimizer.h"
#include "llmc/model/weight_count.h"
#include "llmc/eval/perplexity.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "llmc/io/model_dir_writer.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::distill {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The options a resumed run must share with the run that wrote the checkpoint (they decide
// the data order, the loss and the schedule); logging, evaluation and saving may change.
nlohmann::json training_fingerprint(const DistillOptions& o, int64_t block_size, int64_t total_steps) {
  return {{"teacher_model", o.teacher_model},
          {"distillation_loss", o.distillation_loss},
          {"temperature", o.temperature},
          {"alpha", o.alpha},
          {"hidden_loss_weight", o.hidden_loss_weight},
          {"train_file", o.train_file},
          {"text_field", o.text_field},
          {"block_size", block_size},
          {"learning_rate", o.learning_rate},
          {"weight_decay", o.weight_decay},
          {"adam_beta1", o.adam_beta1},
          {"adam_beta2", o.adam_beta2},
          {"adam_epsilon", o.adam_epsilon},
          {"lr_scheduler_type", o.lr_scheduler_type},
          {"warmup_steps", o.warmup_steps},
          {"warmup_ratio", o.warmup_ratio},
          {"per_device_train_batch_size", o.per_device_train_batch_size},
          {"gradient_accumulation_steps", o.gradient_accumulation_steps},
          {"max_grad_norm", o.max_grad_norm},
          {"total_steps", total_steps},
          {"seed", o.seed}};
}

bool is_empty_dir(const std::string& dir) {
  std::error_code ec;
  return !fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::directory_iterator(dir, ec) == fs::directory_iterator());
}

// Parameters to train, each tensor once (a tied lm_head is the token embedding).
std::vector<TrainableParameter> trainable(const model::CausalLM& lm) {
  std::vector<TrainableParameter> out;
  std::set<const void*> seen;
  for (const auto& [name, t] : lm.named_parameters()) {
    if (!seen.insert(t.unsafeGetTensorImpl()).second) continue;
    at::Tensor p = t;
    p.requires_grad_(true);
    const bool bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    out.push_back({name, p, !bias && name.find("layer_norm") == std::string::npos});
  }
  return out;
}

// Tensors the trainer adds (the hidden-state projection): trained and checkpointed with the
// optimizer state, never part of the model.
bool is_trainer_tensor(const std::string& name) { return name.rfind("distill.", 0) == 0; }

io::StateDict weights_as(const std::vector<TrainableParameter>& params, c10::ScalarType dtype) {
  io::StateDict out;
  for (const auto& p : params) {
    if (is_trainer_tensor(p.name)) continue;
    out[p.name] = p.value.detach().to(c10::kCPU, dtype).contiguous();
  }
  return out;
}

// Two tokenizers are the same when they have the same size and tokenize a probe of the
// training text identically.
void check_same_tokenizer(const tokenizer::Tokenizer& teacher, const tokenizer::Tokenizer& student,
                          const std::string& probe, const std::string& teacher_dir, const std::string& student_dir) {
  const std::string explain =
      "; distillation compares the two models' next-token distributions id by id, so teacher and student must "
      "share one tokenizer (a student of the same family, or --student_config with --tokenizer " +
      teacher_dir + ")";
  if (teacher.vocab_size() != student.vocab_size() || teacher.name() != student.name()) {
    throw UsageError("teacher tokenizer (" + teacher.name() + ", " + std::to_string(teacher.vocab_size()) + " tokens, " +
                     teacher_dir + ") differs from the student's (" + student.name() + ", " +
                     std::to_string(student.vocab_size()) + " tokens, " + student_dir + ")" + explain);
  }
  const auto a = teacher.encode(probe, true), b = student.encode(probe, true);
  if (a != b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    throw UsageError("teacher and student tokenizers disagree on the training text at token " + std::to_string(i) +
                     " (teacher id " + (i < a.size() ? std::to_string(a[i]) : "none") + ", student id " +
                     (i < b.size() ? std::to_string(b[i]) : "none") + ")" + explain);
  }
}

// A probe of the training text for the tokenizer comparison: its first 64 KiB, cut at a
// character boundary.
std::string text_probe(const std::string& path) {
  std::string s = io::read_file_head(path, 64 * 1024);
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80) != 0) s.pop_back();
  return tokenizer::sanitize_utf8(s);
}

// Held-out figures over the perplexity protocol's windows of `window` tokens: the student's
// perplexity, the teacher's when asked, and the mean KL(teacher || student) per predicted
// token at temperature 1.
struct HeldOut {
  double student_perplexity{0};
  double teacher_perplexity{0};
  double kl_to_teacher{0};
  int64_t predicted_tokens{0};
};

HeldOut evaluate_heldout(model::CausalLM& student, model::CausalLM* teacher, bool teacher_ppl,
                         const std::vector<int64_t>& ids, int64_t window, int64_t batch, int64_t shared_vocab,
                         const RunContext& ctx) {
  at::NoGradGuard no_grad;
  student.set_training(false);
  double s_nll = 0, t_nll = 0, kl = 0, predicted = 0;
  eval::for_each_window_batch(ids, window, batch, ctx.device, "held-out", ctx, [&](const at::Tensor& x, const at::Tensor& mask) {
    const int64_t T = x.size(1);
    if (T < 2) return;
    const at::Tensor valid = mask.slice(1, 1, T).to(c10::kFloat);  // positions that predict a real token
    const at::Tensor targets = x.slice(1, 1, T);
    auto nll = [&](const at::Tensor& logits) {
      const at::Tensor per_token = at::cross_entropy_loss(logits.slice(1, 0, T - 1).to(c10::kFloat).transpose(1, 2), targets,
                                                          {}, at::Reduction::None);
      return (per_token * valid).sum().item<double>();
    };
    const at::Tensor s_logits = student.forward(x, mask, nullptr);
    s_nll += nll(s_logits);
    if (teacher != nullptr) {
      const at::Tensor t_logits = teacher->forward(x, mask, nullptr);
      if (teacher_ppl) t_nll += nll(t_logits);
      auto logp = [&](const at::Tensor& l) {
        return at::log_softmax(l.slice(1, 0, T - 1).slice(-1, 0, shared_vocab).to(c10::kFloat), -1);
      };
      const at::Tensor lt = logp(t_logits), ls = logp(s_logits);
      kl += ((lt.exp() * (lt - ls)).sum(-1) * valid).sum().item<double>();
    }
    predicted += valid.sum().item<double>();
  });
  if (predicted == 0) throw InputError("the eval file has fewer than 2 tokens");
  HeldOut h;
  h.predicted_tokens = static_cast<int64_t>(predicted);
  h.student_perplexity = std::exp(s_nll / predicted);
  if (teacher_ppl) h.teacher_perplexity = std::exp(t_nll / predicted);
  if (teacher != nullptr) h.kl_to_teacher = kl / predicted;
  return h;
}

struct Student {
  std::unique_ptr<model::CausalLM> lm;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::string source;         // what it was loaded or made from
  std::string tokenizer_dir;  // where its tokenizer files are
  c10::ScalarType saved_dtype{c10::kFloat};
};

// The dtype a checkpoint was saved in (torch_dtype, else dtype); float32 when absent or unknown.
c10::ScalarType dtype_of_config(const nlohmann::json& config) {
  const std::string d = io::json_field<std::string>(config, "torch_dtype",
                                                     io::json_field<std::string>(config, "dtype", "", "config.json"), "config.json");
  return d == "float16" || d == "bfloat16" ? parse_dtype(d) : c10::kFloat;
}

// A fresh student: config + tokenizer (copied or trained) + transformers-style initial weights.
Student fresh_student(const DistillOptions& o, const RunContext& ctx) {
  nlohmann::json config = io::read_json_file(o.student_config);
  if (!config.is_object()) throw InputError(o.student_config + ": expected a JSON object (an OPT config.json)");
  if (!config.contains("model_type")) config["model_type"] = "opt";
  Student s;
  std::unique_ptr<tokenizer::Tokenizer>& tok = s.tok;
  if (!o.tokenizer.empty()) {
    s.tokenizer_dir = io::resolve_model_dir(o.tokenizer, o.revision);
    tok = tokenizer::load_tokenizer(s.tokenizer_dir);
  } else {
    const auto colon = o.train_tokenizer.find(':');
    int64_t pieces = 0;
    try {
      if (o.train_tokenizer.substr(0, colon) == "sentencepiece" && colon != std::string::npos) {
        pieces = std::stoll(o.train_tokenizer.substr(colon + 1));
      }
    } catch (const std::exception&) {
    }
    if (pieces <= 0) {
      throw UsageError("--train_tokenizer: expected sentencepiece:N (N pieces), found '" + o.train_tokenizer + "'");
    }
    s.tokenizer_dir = (fs::path(o.output_dir) / ".tokenizer").string();  // copied into checkpoints and the output
    log_info("training a SentencePiece BPE tokenizer of " + std::to_string(pieces) + " pieces on " + o.train_file);
    tok = tokenizer::train_sentencepiece(o.train_file, pieces, s.tokenizer_dir, static_cast<uint64_t>(o.seed));
  }
  const int64_t vocab = tok->vocab_size();
  if (io::json_field<int64_t>(config, "vocab_size", 0, "config") != vocab) {
    log_info("student vocab_size set to the tokenizer's " + std::to_string(vocab) + " (config said " +
             describe_json(config.value("vocab_size", nlohmann::json())) + ")");
    config["vocab_size"] = vocab;
  }
  const auto& sp = tok->special();
  if (sp.bos) config["bos_token_id"] = *sp.bos;
  if (sp.eos) config["eos_token_id"] = *sp.eos;
  if (sp.pad) config["pad_token_id"] = *sp.pad;
  config["torch_dtype"] = "float32";
  s.lm = model::make_causal_lm(config, model::init_weights(config, static_cast<uint64_t>(o.seed)), o.student_config, ctx);
  s.source = o.student_config;
  s.saved_dtype = c10::kFloat;
  return s;
}

Student load_student(const std::string& dir, const RunContext& ctx) {
  Student s;
  s.lm = model::load_causal_lm(dir, ctx);
  s.tok = tokenizer::load_tokenizer(dir);
  s.source = dir;
  s.tokenizer_dir = dir;
  s.saved_dtype = dtype_of_config(s.lm->config());
  if (!s.lm->packed_weights().empty()) {
    throw UsageError("the student " + dir + " is quantized (" + s.lm->packed_weights().front().second->format() +
                     "); quantized weights cannot be trained: distill the unquantized model, then quantize");
  }
  return s;
}

// Masks that keep a sparse student's zeros: one per decoder-layer Linear weight.
std::vector<std::pair<at::Tensor, at::Tensor>> sparsity_masks(const model::CausalLM& lm, const std::string& mode) {
  const double sparsity = model::count_weights(lm).sparsity();
  if (!(mode == "true" || (mode == "auto" && sparsity >= 0.01))) return {};
  log_info("keeping the student's zeros (sparsity " + std::to_string(sparsity) + " of the decoder linears)");
  const auto names = lm.decoder_linear_weight_names();
  const std::set<std::string> wanted(names.begin(), names.end());
  std::vector<std::pair<at::Tensor, at::Tensor>> masks;
  for (const auto& [name, t] : lm.named_parameters()) {
    if (wanted.count(name)) masks.emplace_back(t, t.ne(0));
  }
  return masks;
}

}  // namespace

void validate(const DistillOptions& o) {
  const Loss& l = loss(o.distillation_loss);
  if (o.output_dir.empty()) throw UsageError("--output_dir is required");
  if (o.train_file.empty()) {
    throw UsageError("--train_file is required: distill trains on a text file (.txt, tokenized whole, or .jsonl with "
                     "--text_field)");
  }
  if (o.student_model.empty() == o.student_config.empty()) {
    throw UsageError("give exactly one of --student_model (a model to train further) and --student_config (an OPT "
                     "config.json for a fresh student)");
  }
  if (!o.student_config.empty() && o.tokenizer.empty() == o.train_tokenizer.empty()) {
    throw UsageError("a fresh student (--student_config) needs exactly one of --tokenizer DIR and --train_tokenizer "
                     "sentencepiece:N");
  }
  if (o.student_config.empty() && (!o.tokenizer.empty() || !o.train_tokenizer.empty())) {
    throw UsageError("--tokenizer and --train_tokenizer are for a fresh student (--student_config); a loaded student "
                     "keeps its own tokenizer");
  }
  if ((l.needs_teacher || o.hidden_loss_weight > 0) && o.teacher_model.empty()) {
    throw UsageError("--distillation_loss " + o.distillation_loss +
                     (o.hidden_loss_weight > 0 ? std::string(" with --hidden_loss_weight") : std::string()) +
                     " needs --teacher_model (the ce loss trains without one)");
  }
  auto positive = [](double v, const char* name) {
    if (!(v > 0)) throw UsageError(std::string("--") + name + " must be positive, found " + std::to_string(v));
  };
  positive(o.temperature, "temperature");
  positive(o.learning_rate, "learning_rate");
  positive(static_cast<double>(o.per_device_train_batch_size), "per_device_train_batch_size");
  positive(static_cast<double>(o.per_device_eval_batch_size), "per_device_eval_batch_size");
  positive(static_cast<double>(o.gradient_accumulation_steps), "gradient_accumulation_steps");
  positive(static_cast<double>(o.logging_steps), "logging_steps");
  positive(static_cast<double>(o.eval_steps), "eval_steps");
  positive(static_cast<double>(o.save_steps), "save_steps");
  positive(o.adam_epsilon, "adam_epsilon");
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw UsageError("--alpha must be in [0, 1], found " + std::to_string(o.alpha));
  if (!(o.hidden_loss_weight >= 0)) throw UsageError("--hidden_loss_weight must be >= 0");
  if (!(o.adam_beta1 >= 0 && o.adam_beta1 < 1 && o.adam_beta2 >= 0 && o.adam_beta2 < 1)) {
    throw UsageError("--adam_beta1 and --adam_beta2 must be in [0, 1)");
  }
  if (o.weight_decay < 0 || o.max_grad_norm < 0) throw UsageError("--weight_decay and --max_grad_norm must be >= 0");
  if (o.max_steps <= 0 && !(o.num_train_epochs > 0)) {
    throw UsageError("give --max_steps > 0 or --num_train_epochs > 0");
  }
  if (o.warmup_steps < 0 || !(o.warmup_ratio >= 0 && o.warmup_ratio < 1)) {
    throw UsageError("--warmup_steps must be >= 0 and --warmup_ratio in [0, 1)");
  }
  if (o.block_size != 0 && o.block_size < 2) throw UsageError("--block_size must be at least 2 (0 = default)");
  if (o.save_total_limit < 0) throw UsageError("--save_total_limit must be >= 0 (0 keeps every checkpoint)");
  if (o.keep_sparsity != "auto" && o.keep_sparsity != "true" && o.keep_sparsity != "false") {
    throw UsageError("--keep_sparsity: expected auto, true or false, found '" + o.keep_sparsity + "'");
  }
  lr_multiplier(o.lr_scheduler_type, 0, 0, 1);  // UsageError naming the schedules
  if (!o.save_dtype.empty()) parse_dtype(o.save_dtype);
  if (!o.resume_from_checkpoint.empty() && o.overwrite) {
    throw UsageError("--resume_from_checkpoint continues the run in --output_dir; --overwrite would clear it");
  }
  parse_byte_size(o.max_shard_size);
}

nlohmann::json run_distill(const DistillOptions& o, const RunContext& ctx,
                           const std::function<nlohmann::json(const nlohmann::json&)>& decorate) {
  const auto start = Clock::now();
  validate(o);
  const Loss& loss_fn = loss(o.distillation_loss);
  std::error_code ec;

  // ---- Output directory: fresh, cleared, or resumed.
  std::optional<std::string> resume;
  if (!o.resume_from_checkpoint.empty()) resume = resolve_checkpoint(o.resume_from_checkpoint, o.output_dir);
  if (!o.resume_from_checkpoint.empty() && !resume) {
    log_warn("no checkpoint in " + o.output_dir + " to resume from: starting from the beginning");
  }
  if (!resume) {
    if (fs::exists(o.output_dir, ec) && !fs::is_directory(o.output_dir, ec)) {
      throw UsageError("--output_dir " + o.output_dir + " exists and is not a directory");
    }
    if (!is_empty_dir(o.output_dir) && o.resume_from_checkpoint.empty()) {
      if (!o.overwrite) {
        throw UsageError("output directory '" + o.output_dir +
                         "' is not empty (pass --overwrite to clear it, or --resume_from_checkpoint latest to continue "
                         "its run)");
      }
      fs::remove_all(o.output_dir, ec);
      if (ec) throw ResourceError("cannot clear " + o.output_dir + ": " + ec.message());
    }
  }
  fs::create_directories(o.output_dir, ec);
  if (ec) throw ResourceError("cannot create " + o.output_dir + ": " + ec.message());
  io::ModelDirWriter::remove_abandoned(o.output_dir);  // staging left by killed runs

  // ---- Models.
  Student student;
  nlohmann::json state = nlohmann::json::object();
  if (resume) {
    log_info("resuming from " + *resume);
    state = read_trainer_state(*resume);
    student = load_student(*resume, ctx);
    const std::string state_file = *resume + "/trainer_state.json";
    student.saved_dtype = parse_dtype(io::json_field<std::string>(state, "save_dtype", "float32", state_file));
    student.source = io::json_field<std::string>(state, "student", *resume, state_file);
    // The checkpoint may be thinned out (--save_total_limit) while training goes on: its
    // tokenizer files are copied to a stable place first.
    student.tokenizer_dir = (fs::path(o.output_dir) / ".tokenizer").string();
    if (fs::path(*resume) != fs::path(student.tokenizer_dir)) {
      fs::remove_all(student.tokenizer_dir, ec);
      fs::create_directories(student.tokenizer_dir, ec);
      io::copy_model_side_files(*resume, student.tokenizer_dir);
    }
  } else if (!o.student_model.empty()) {
    student = load_student(io::resolve_model_dir(o.student_model, o.revision), ctx);
  } else {
    student = fresh_student(o, ctx);
  }
  const c10::ScalarType save_dtype = o.save_dtype.empty() ? student.saved_dtype : parse_dtype(o.save_dtype);
  const tokenizer::Tokenizer& tok = *student.tok;

  std::unique_ptr<model::CausalLM> teacher;
  std::string teacher_dir;
  int64_t shared_vocab = student.lm->info().vocab_size;
  if (!o.teacher_model.empty()) {
    teacher_dir = io::resolve_model_dir(o.teacher_model, o.revision);
    auto teacher_tok = tokenizer::load_tokenizer(teacher_dir);
    check_same_tokenizer(*teacher_tok, tok, text_probe(o.train_file), teacher_dir, student.tokenizer_dir);
    teacher = model::load_causal_lm(teacher_dir, ctx);
    const int64_t vt = teacher->info().vocab_size, vs = student.lm->info().vocab_size;
    shared_vocab = std::min(vt, vs);
    if (shared_vocab < tok.vocab_size()) {
      throw UsageError("vocab_size of the " + std::string(vt < vs ? "teacher" : "student") + " (" +
                       std::to_string(shared_vocab) + ") is smaller than the tokenizer's " +
                       std::to_string(tok.vocab_size()) + " tokens; the two models' vocabularies may differ only by "
                       "padding rows beyond the tokenizer");
    }
    if (vt != vs) {
      log_info("teacher and student vocab_size differ (" + std::to_string(vt) + " vs " + std::to_string(vs) +
               "): logits are compared over the first " + std::to_string(shared_vocab) + " ids");
    }
  }

  // ---- Data.
  const int64_t block = o.block_size > 0 ? o.block_size : std::min<int64_t>(512, student.lm->info().max_positions);
  if (block > student.lm->info().max_positions || (teacher && block > teacher->info().max_positions)) {
    throw UsageError("--block_size " + std::to_string(block) + " exceeds max_position_embeddings of the " +
                     (block > student.lm->info().max_positions ? "student" : "teacher"));
  }
  log_info("tokenizing " + o.train_file);
  const at::Tensor blocks = pack_blocks(load_token_ids(o.train_file, o.text_field, tok), block);
  const int64_t n_blocks = blocks.size(0);
  if (n_blocks == 0) {
    throw InputError(o.train_file + ": fewer tokens than one block of " + std::to_string(block) +
                     " (lower --block_size or give more text)");
  }
  std::vector<int64_t> eval_ids;
  if (!o.eval_file.empty()) eval_ids = load_token_ids(o.eval_file, o.text_field, tok);

  const int64_t batch = o.per_device_train_batch_size, accum = o.gradient_accumulation_steps;
  const int64_t micro_per_epoch = (n_blocks + batch - 1) / batch;
  const int64_t steps_per_epoch = std::max<int64_t>(1, micro_per_epoch / accum);
  const int64_t total_steps = o.max_steps > 0 ? o.max_steps
                                              : static_cast<int64_t>(std::ceil(o.num_train_epochs * steps_per_epoch));
  const int64_t warmup = o.warmup_steps > 0 ? o.warmup_steps
                                            : static_cast<int64_t>(std::ceil(o.warmup_ratio * static_cast<double>(total_steps)));
  const nlohmann::json fingerprint = training_fingerprint(o, block, total_steps);
  if (resume && state.contains("fingerprint") && state["fingerprint"] != fingerprint) {
    const nlohmann::json saved =
        io::json_field<nlohmann::json>(state, "fingerprint", nlohmann::json::object(), *resume + "/trainer_state.json");
    std::string diff;
    for (auto it = fingerprint.begin(); it != fingerprint.end(); ++it) {
      const nlohmann::json was = saved.contains(it.key()) ? saved[it.key()] : nlohmann::json();
      if (was != it.value()) {
        diff += (diff.empty() ? "" : ", ") + it.key() + " (checkpoint " + describe_json(was) + ", now " + describe_json(it.value()) + ")";
      }
    }
    throw UsageError("cannot resume " + *resume + " with other training settings: " + diff);
  }
  log_info(std::to_string(n_blocks) + " blocks of " + std::to_string(block) + " tokens; " + std::to_string(total_steps) +
           " optimizer steps of " + std::to_string(batch * accum) + " blocks (" + std::to_string(steps_per_epoch) +
           " per epoch)");

  // ---- Trainable parameters, optimizer, optional hidden-state projection.
  std::vector<TrainableParameter> params = trainable(*student.lm);
  at::Tensor proj_w, proj_b;
  if (o.hidden_loss_weight > 0) {
    const int64_t es = student.lm->config().value("word_embed_proj_dim", student.lm->config().value("hidden_size", int64_t{0}));
    const int64_t et = teacher->config().value("word_embed_proj_dim", teacher->config().value("hidden_size", int64_t{0}));
    if (es != et) {
      at::NoGradGuard no_grad;
      at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(o.seed) + 1);
      proj_w = at::empty({et, es}).normal_(0.0, 0.02, gen).to(ctx.device, ctx.dtype).requires_grad_(true);
      proj_b = at::zeros({et}, at::TensorOptions().dtype(ctx.dtype).device(ctx.device)).requires_grad_(true);
      params.push_back({"distill.hidden_projection.weight", proj_w, true});
      params.push_back({"distill.hidden_projection.bias", proj_b, false});
    }
  }
  AdamW optimizer(params, AdamWOptions{o.adam_beta1, o.adam_beta2, o.adam_epsilon, o.weight_decay});
  const auto masks = sparsity_masks(*student.lm, o.keep_sparsity);

  nlohmann::json log_history = nlohmann::json::array(), eval_history = nlohmann::json::array();
  int64_t start_step = 0;
  double train_seconds = 0;
  int64_t trained_tokens = 0;
  nlohmann::json before = nlohmann::json::object();
  if (resume) {
    io::StateDict opt_state = read_optimizer_state(*resume);
    {
      at::NoGradGuard no_grad;
      for (const auto& p : params) {
        if (!is_trainer_tensor(p.name)) continue;
        if (!opt_state.count(p.name)) throw InputError(*resume + ": optimizer.safetensors lacks '" + p.name + "'");
        p.value.copy_(opt_state.at(p.name));
      }
    }
    start_step = state["global_step"].get<int64_t>();
    optimizer.load_state(opt_state, start_step, *resume);
    const std::string state_file = *resume + "/trainer_state.json";
    for (const char* key : {"log_history", "eval_history"}) {
      if (state.contains(key) && !state[key].is_array()) throw InputError(state_file + ": field '" + key + "' must be a list");
    }
    log_history = state.value("log_history", nlohmann::json::array());
    eval_history = state.value("eval_history", nlohmann::json::array());
    train_seconds = io::json_field<double>(state, "train_seconds", 0.0, state_file);
    trained_tokens = io::json_field<int64_t>(state, "trained_tokens", 0, state_file);
    before = io::json_field<nlohmann::json>(state, "before", nlohmann::json::object(), state_file);
  }
  if (start_step > total_steps) throw UsageError(*resume + " is past the last step " + std::to_string(total_steps));

  // ---- Held-out figures before training (teacher once).
  const int64_t eval_batch = o.per_device_eval_batch_size;
  auto heldout = [&](bool with_teacher_ppl) {
    return evaluate_heldout(*student.lm, teacher.get(), with_teacher_ppl, eval_ids, block, eval_batch, shared_vocab, ctx);
  };
  auto record_eval = [&](int64_t step, const HeldOut& h) {
    nlohmann::json e = {{"step", step}, {"perplexity", h.student_perplexity}};
    if (teacher) e["kl_to_teacher"] = h.kl_to_teacher;
    eval_history.push_back(e);
  };
  if (!eval_ids.empty() && before.empty()) {
    log_info("held-out evaluation before training");
    const HeldOut h = heldout(teacher != nullptr);
    before["perplexity"] = h.student_perplexity;
    before["predicted_tokens"] = h.predicted_tokens;
    if (teacher) {
      before["teacher_perplexity"] = h.teacher_perplexity;
      before["kl_to_teacher"] = h.kl_to_teacher;
    }
    log_info("student perplexity " + std::to_string(h.student_perplexity) +
             (teacher ? ", teacher " + std::to_string(h.teacher_perplexity) + ", KL to teacher " +
                            std::to_string(h.kl_to_teacher)
                      : std::string()));
  }

  // ---- Checkpoints.
  auto save = [&](int64_t step) {
    Checkpoint c;
    c.model = weights_as(params, ctx.dtype);
    c.config = student.lm->config();
    c.config["torch_dtype"] = dtype_name(ctx.dtype);
    c.optimizer = optimizer.state();
    for (const auto& p : params) {
      if (is_trainer_tensor(p.name)) c.optimizer[p.name] = p.value.detach();
    }
    for (auto& [k, v] : c.optimizer) v = v.to(c10::kCPU).contiguous();
    const int64_t micro = step % steps_per_epoch * accum;
    c.state = {{"global_step", step},
               {"total_steps", total_steps},
               {"epoch", step / steps_per_epoch},
               {"micro_batch_in_epoch", micro},
               {"blocks_in_epoch_done", std::min(n_blocks, micro * batch)},
               {"data_order", "epoch e visits the blocks in epoch_order(n_blocks, seed, e) (Fisher-Yates over SplitMix64-"
                              "seeded mt19937_64)"},
               {"rng", {{"scheme", "dropout: the device's default generator reseeded before each micro-batch with "
                                   "SplitMix64(seed ^ SplitMix64(micro-batch index)); initialisation: seed"},
                        {"seed", o.seed}}},
               {"lr", o.learning_rate * lr_multiplier(o.lr_scheduler_type, step, warmup, total_steps)},
               {"scheduler", {{"type", o.lr_scheduler_type}, {"warmup_steps", warmup}, {"total_steps", total_steps}}},
               {"fingerprint", fingerprint},
               {"save_dtype", dtype_name(save_dtype)},
               {"student", student.source},
               {"log_history", log_history},
               {"eval_history", eval_history},
               {"before", before},
               {"train_seconds", train_seconds},
               {"trained_tokens", trained_tokens}};
    c.tokenizer_dir = student.tokenizer_dir;
    const std::string path = save_checkpoint(o.output_dir, step, c, o.save_total_limit);
    log_info("saved " + path);
  };

  // ---- Training.
  at::Generator dropout_gen = at::globalContext().defaultGenerator(ctx.device);
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  double window_seconds = 0;
  int64_t window_tokens = 0, window_steps = 0;
  std::map<std::string, double> window_parts;
  double window_loss = 0, window_grad = 0;
  const bool cancellable = ctx.cancel_flag != nullptr;
  for (int64_t step = start_step; step < total_steps; ++step) {
    const auto t0 = Clock::now();
    const int64_t epoch = step / steps_per_epoch;
    if (epoch != order_epoch) {
      order = epoch_order(n_blocks, static_cast<uint64_t>(o.seed), epoch);
      order_epoch = epoch;
    }
    student.lm->set_training(true);
    double step_loss = 0;
    std::map<std::string, double> step_parts;
    for (int64_t j = 0; j < accum; ++j) {
      const int64_t k = step % steps_per_epoch * accum + j;
      const int64_t lo = std::min(n_blocks, k * batch), hi = std::min(n_blocks, (k + 1) * batch);
      if (lo >= hi) continue;
      std::vector<int64_t> rows(order.begin() + lo, order.begin() + hi);
      const at::Tensor x = blocks.index_select(0, at::tensor(rows, at::TensorOptions().dtype(c10::kLong))).to(ctx.device);
      const at::Tensor mask = at::ones_like(x);
      {
        std::lock_guard<std::mutex> lock(dropout_gen.mutex());
        dropout_gen.set_current_seed(splitmix64(static_cast<uint64_t>(o.seed) ^ splitmix64(static_cast<uint64_t>(step * accum + j))));
      }
      LossInputs in;
      at::Tensor t_hidden;
      if (teacher) {
        at::NoGradGuard no_grad;
        t_hidden = teacher->hidden_states(x, mask);
        in.teacher_logits = teacher->logits(t_hidden);
      }
      const at::Tensor s_hidden = student.lm->hidden_states(x, mask);
      in.student_logits = student.lm->logits(s_hidden);
      in.input_ids = x;
      in.shared_vocab = shared_vocab;
      in.temperature = o.temperature;
      in.alpha = o.alpha;
      LossValue v = loss_fn.compute(in);
      at::Tensor total = v.total;
      if (o.hidden_loss_weight > 0) {
        const at::Tensor hs = proj_w.defined() ? at::linear(s_hidden, proj_w, proj_b) : s_hidden;
        const at::Tensor hidden = at::mse_loss(hs.to(c10::kFloat), t_hidden.to(c10::kFloat));
        v.parts["hidden"] = hidden.item<double>();
        total = total + hidden * o.hidden_loss_weight;
      }
      (total / static_cast<double>(accum)).backward();
      step_loss += total.item<double>() / static_cast<double>(accum);
      for (const auto& [name, value] : v.parts) step_parts[name] += value / static_cast<double>(accum);
      trained_tokens += x.numel();
      window_tokens += x.numel();
    }
    const double grad_norm = clip_grad_norm(params, o.max_grad_norm);
    const double lr = o.learning_rate * lr_multiplier(o.lr_scheduler_type, step, warmup, total_steps);
    optimizer.step(lr);
    optimizer.zero_grad();
    if (!masks.empty()) {
      at::NoGradGuard no_grad;
      for (const auto& [w, m] : masks) w.mul_(m);
    }
    const double dt = seconds_since(t0);
    train_seconds += dt;
    window_seconds += dt;
    window_loss += step_loss;
    window_grad += grad_norm;
    for (const auto& [name, value] : step_parts) window_parts[name] += value;
    ++window_steps;
    const int64_t done = step + 1;

    if (done % o.logging_steps == 0 || done == total_steps) {
      nlohmann::json entry = {{"step", done},
                              {"epoch", static_cast<double>(done) / static_cast<double>(steps_per_epoch)},
                              {"loss", window_loss / window_steps},
                              {"lr", lr},
                              {"grad_norm", window_grad / window_steps},
                              {"tokens_per_s", static_cast<double>(window_tokens) / std::max(1e-9, window_seconds)}};
      std::string parts;
      for (const auto& [name, value] : window_parts) {
        entry[name] = value / window_steps;
        parts += " " + name + " " + std::to_string(value / window_steps);
      }
      log_history.push_back(entry);
      log_info("step " + std::to_string(done) + "/" + std::to_string(total_steps) + " loss " +
               std::to_string(entry["loss"].get<double>()) + " (" + parts.substr(parts.empty() ? 0 : 1) + ") lr " +
               std::to_string(lr) + " grad_norm " + std::to_string(entry["grad_norm"].get<double>()) + " tokens/s " +
               std::to_string(static_cast<int64_t>(entry["tokens_per_s"].get<double>())));
      window_seconds = 0;
      window_tokens = window_steps = 0;
      window_loss = window_grad = 0;
      window_parts.clear();
    }
    bool cancelled = cancellable && ctx.cancel_flag->load();
    if (!eval_ids.empty() && done % o.eval_steps == 0 && done != total_steps && !cancelled) {
      try {
        const HeldOut h = heldout(false);
        record_eval(done, h);
        log_info("step " + std::to_string(done) + " held-out perplexity " + std::to_string(h.student_perplexity));
      } catch (const Cancelled&) {
        cancelled = true;  // interrupted while evaluating: the step is done, save it
      }
    }
    if ((done % o.save_steps == 0 && done != total_steps) || cancelled) save(done);
    if (cancelled) {
      log_warn("interrupted: checkpoint-" + std::to_string(done) + " saved; continue with --resume_from_checkpoint latest");
      throw Cancelled();
    }
  }
  student.lm->set_training(false);

  // ---- Final figures and files.
  nlohmann::json m = nlohmann::json::object();
  if (!eval_ids.empty()) {
    log_info("held-out evaluation after training");
    HeldOut h;
    try {
      h = heldout(false);
    } catch (const Cancelled&) {
      save(total_steps);  // every step is done: keep it
      throw;
    }
    record_eval(total_steps, h);
    m["perplexity_before"] = before.value("perplexity", nlohmann::json());
    m["perplexity_after"] = h.student_perplexity;
    m["eval_predicted_tokens"] = h.predicted_tokens;
    if (teacher) {
      m["teacher_perplexity"] = before.value("teacher_perplexity", nlohmann::json());
      m["kl_to_teacher_before"] = before.value("kl_to_teacher", nlohmann::json());
      m["kl_to_teacher_after"] = h.kl_to_teacher;
    }
  }
  nlohmann::json config = student.lm->config();
  config["torch_dtype"] = dtype_name(save_dtype);
  io::ModelDirWriter out(o.output_dir, io::ModelDirWriter::Place::kIntoDirectory, /*overwrite=*/true);
  for (const auto& [name, t] : weights_as(params, save_dtype)) out.add_tensor(name, t);
  out.finish_weights(parse_byte_size(o.max_shard_size));
  out.write_json("config.json", config);
  out.copy_side_files(student.tokenizer_dir);

  const model::WeightCount stats = model::count_weights(*student.lm);
  m["distillation_loss"] = o.distillation_loss;
  m["teacher"] = teacher_dir.empty() ? nlohmann::json() : nlohmann::json(teacher_dir);
  m["student"] = student.source;
  if (resume) m["resumed_from"] = *resume;
  m["block_size"] = block;
  m["train_blocks"] = n_blocks;
  m["total_steps"] = total_steps;
  m["steps_per_epoch"] = steps_per_epoch;
  m["trained_tokens"] = trained_tokens;
  m["train_seconds"] = train_seconds;
  m["train_tokens_per_s"] = static_cast<double>(trained_tokens) / std::max(1e-9, train_seconds);
  m["final_loss"] = log_history.empty() ? nlohmann::json() : log_history.back()["loss"];
  m["loss_curve"] = log_history;
  m["eval_curve"] = eval_history;
  m["save_dtype"] = dtype_name(save_dtype);
  m["input"] = {{"path", student.source},
                {"num_parameters", stats.num_parameters},
                {"disk_size_bytes", fs::is_directory(student.source, ec) ? io::directory_size_bytes(student.source) : 0}};
  m["output"] = stats.block(o.output_dir, out.staged_bytes());
  m["elapsed_s"] = seconds_since(start);
  out.commit("metrics.json", decorate(m));
  fs::remove_all(fs::path(o.output_dir) / ".tokenizer", ec);  // a trained tokenizer is in the output now
  log_info("wrote " + o.output_dir);
  return m;
}

std::vector<OptionField> option_fields(DistillOptions& o) {
  using R = OptionField::Role;
  return {
      {"teacher_model", "teacher: model directory or hub id (kl and mse need one)", &o.teacher_model},
      {"student_model", "student to train further: model directory or hub id", &o.student_model, R::kInputModel},
      {"student_config", "or a fresh student from this OPT config.json (transformers' init)", &o.student_config},
      {"tokenizer", "fresh student: copy the tokenizer of this model directory", &o.tokenizer},
      {"train_tokenizer", "fresh student: train one on --train_file, e.g. sentencepiece:4000", &o.train_tokenizer},
      {"output_dir", "where the student and its checkpoint-N/ folders go", &o.output_dir, R::kOutputDir, true},
      {"distillation_loss", "kl (alpha * soft KL * T^2 + (1 - alpha) * cross entropy) | mse (logits) | ce (no teacher)",
       &o.distillation_loss},
      {"temperature", "softmax temperature T of the kl loss", &o.temperature},
      {"alpha", "weight of the soft term of the kl loss, in [0, 1]", &o.alpha},
      {"hidden_loss_weight", "add this times the MSE between last hidden states (learned projection when widths differ)",
       &o.hidden_loss_weight},
      {"train_file", "training text: .txt (tokenized whole) or .jsonl (--text_field)", &o.train_file},
      {"eval_file", "held-out text: perplexity (and KL to the teacher) before, every --eval_steps, after", &o.eval_file},
      {"text_field", "field of each .jsonl object holding the text", &o.text_field},
      {"block_size", "tokens per training block (0 = min(512, max_position_embeddings))", &o.block_size},
      {"learning_rate", "AdamW peak learning rate", &o.learning_rate},
      {"weight_decay", "AdamW decoupled weight decay (not on biases and LayerNorms)", &o.weight_decay},
      {"adam_beta1", "AdamW beta1", &o.adam_beta1},
      {"adam_beta2", "AdamW beta2", &o.adam_beta2},
      {"adam_epsilon", "AdamW epsilon", &o.adam_epsilon},
      {"lr_scheduler_type", "linear | cosine | constant (after the warmup)", &o.lr_scheduler_type},
      {"warmup_steps", "linear warmup steps (wins over --warmup_ratio)", &o.warmup_steps},
      {"warmup_ratio", "warmup as a fraction of the steps", &o.warmup_ratio},
      {"per_device_train_batch_size", "blocks per micro-batch", &o.per_device_train_batch_size},
      {"per_device_eval_batch_size", "windows per held-out batch", &o.per_device_eval_batch_size},
      {"gradient_accumulation_steps", "micro-batches per optimizer step", &o.gradient_accumulation_steps},
      {"max_grad_norm", "clip the global gradient norm (0 = no clipping)", &o.max_grad_norm},
      {"max_steps", "optimizer steps (> 0 wins over --num_train_epochs)", &o.max_steps},
      {"num_train_epochs", "passes over the training blocks (may be fractional)", &o.num_train_epochs},
      {"logging_steps", "log loss parts, lr, grad norm and tokens/s every N steps", &o.logging_steps},
      {"eval_steps", "held-out evaluation every N steps", &o.eval_steps},
      {"save_steps", "write output_dir/checkpoint-N every N steps", &o.save_steps},
      {"save_total_limit", "keep the newest N checkpoints (0 = all)", &o.save_total_limit},
      {"save_dtype", "float32 | bfloat16 | float16 (default: the student's dtype)", &o.save_dtype},
      {"keep_sparsity", "keep the student's zeros: auto (when >= 1% are zero) | true | false", &o.keep_sparsity},
      {"resume_from_checkpoint", "PATH or latest (the newest in --output_dir)", &o.resume_from_checkpoint},
      {"max_shard_size", "largest safetensors file of the final model, e.g. 5GB", &o.max_shard_size},
      {"seed", "random seed: data order, dropout, initialisation", &o.seed, R::kCommon},
  };
}

}  // namespace llmc::distill
