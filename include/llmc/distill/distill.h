// The `distill` tool as one library call: trains a student (a loaded model or a fresh one
// from an OPT config) on a text file, from a teacher's logits (kl, mse) or from the text
// alone (ce), with AdamW, a learning-rate schedule, gradient accumulation and clipping,
// checkpoints that resume exactly, and writes the student as a Hugging Face directory plus
// metrics.json.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmc/core/options.h"
#include "llmc/core/run_context.h"

namespace llmc::distill {

struct DistillOptions {
  // Models
  std::string teacher_model;          // needed by kl and mse (and --hidden_loss_weight)
  std::string student_model;          // a model llmc loads, or:
  std::string student_config;         // an OPT config.json for a fresh student
  std::string tokenizer;              // fresh student: copy this directory's tokenizer
  std::string train_tokenizer;        // fresh student: "sentencepiece:N"
  std::string revision{"main"};
  std::string output_dir;
  // Loss
  std::string distillation_loss{"kl"};
  double temperature{3.0};
  double alpha{0.5};
  double hidden_loss_weight{0.0};
  // Data
  std::string train_file;
  std::string eval_file;
  std::string text_field{"text"};
  int64_t block_size{0};              // 0 = min(512, max_position_embeddings)
  // Trainer (transformers' Trainer defaults)
  double learning_rate{5e-5};
  double weight_decay{0.0};
  double adam_beta1{0.9};
  double adam_beta2{0.999};
  double adam_epsilon{1e-8};
  std::string lr_scheduler_type{"linear"};
  int64_t warmup_steps{0};
  double warmup_ratio{0.0};
  int64_t per_device_train_batch_size{8};
  int64_t per_device_eval_batch_size{8};
  int64_t gradient_accumulation_steps{1};
  double max_grad_norm{1.0};
  int64_t max_steps{-1};
  double num_train_epochs{1.0};
  int64_t logging_steps{10};
  int64_t eval_steps{500};
  int64_t save_steps{500};
  int64_t save_total_limit{2};        // 0 = keep every checkpoint
  std::string save_dtype;             // "" = the student's dtype
  std::string keep_sparsity{"auto"};  // auto | true | false
  std::string resume_from_checkpoint; // PATH | latest
  std::string max_shard_size{"5GB"};
  int64_t seed{42};                   // data order, dropout, initialisation (a common flag of the tools)
  bool overwrite{false};
};

// The flags of `distill` (and the keys of a pipeline stage's options), bound to `o`.
std::vector<OptionField> option_fields(DistillOptions& o);

// UsageError (exit 2) for values out of range or flags that cannot be combined.
void validate(const DistillOptions& options);

nlohmann::json run_distill(const DistillOptions& options, const RunContext& ctx,
                           const std::function<nlohmann::json(const nlohmann::json&)>& decorate);

}  // namespace llmc::distill
