// distill: train a student from a teacher's logits (kl, mse) or from text alone (ce), with
// exactly resumable checkpoints. Thin: flags -> options -> llmc::distill::run_distill.
#include "../common/tool.h"
#include "llmc/distill/distill.h"
#include "llmc/distill/losses.h"

int main(int argc, char** argv) {
  CLI::App app{
      "distill: train a student model on a text file, from a teacher's next-token distributions (kl, mse) or from the\n"
      "text alone (ce), and write it as a Hugging Face model directory. Checkpoints (output_dir/checkpoint-N/) resume\n"
      "exactly; SIGINT/SIGTERM finish the current step, save a checkpoint and exit 130."};
  llmc::distill::DistillOptions o;
  app.add_option("--teacher_model", o.teacher_model, "teacher: model directory or hub id (kl and mse need one)");
  app.add_option("--student_model", o.student_model, "student to train further: model directory or hub id");
  app.add_option("--student_config", o.student_config, "or a fresh student from this OPT config.json (transformers' init)");
  app.add_option("--tokenizer", o.tokenizer, "fresh student: copy the tokenizer of this model directory");
  app.add_option("--train_tokenizer", o.train_tokenizer, "fresh student: train one on --train_file, e.g. sentencepiece:4000");
  app.add_option("--output_dir", o.output_dir, "where the student and its checkpoint-N/ folders go")->required();
  app.add_option("--distillation_loss", o.distillation_loss,
                 "kl (alpha * soft KL * T^2 + (1 - alpha) * cross entropy) | mse (logits) | ce (no teacher)");
  app.add_option("--temperature", o.temperature, "softmax temperature T of the kl loss");
  app.add_option("--alpha", o.alpha, "weight of the soft term of the kl loss, in [0, 1]");
  app.add_option("--hidden_loss_weight", o.hidden_loss_weight,
                 "add this times the MSE between last hidden states (learned projection when widths differ)");
  app.add_option("--train_file", o.train_file, "training text: .txt (tokenized whole) or .jsonl (--text_field)");
  app.add_option("--eval_file", o.eval_file, "held-out text: perplexity (and KL to the teacher) before, every --eval_steps, after");
  app.add_option("--text_field", o.text_field, "field of each .jsonl object holding the text");
  app.add_option("--block_size", o.block_size, "tokens per training block (0 = min(512, max_position_embeddings))");
  app.add_option("--learning_rate", o.learning_rate, "AdamW peak learning rate");
  app.add_option("--weight_decay", o.weight_decay, "AdamW decoupled weight decay (not on biases and LayerNorms)");
  app.add_option("--adam_beta1", o.adam_beta1, "AdamW beta1");
  app.add_option("--adam_beta2", o.adam_beta2, "AdamW beta2");
  app.add_option("--adam_epsilon", o.adam_epsilon, "AdamW epsilon");
  app.add_option("--lr_scheduler_type", o.lr_scheduler_type, "linear | cosine | constant (after the warmup)");
  app.add_option("--warmup_steps", o.warmup_steps, "linear warmup steps (wins over --warmup_ratio)");
  app.add_option("--warmup_ratio", o.warmup_ratio, "warmup as a fraction of the steps");
  app.add_option("--per_device_train_batch_size", o.per_device_train_batch_size, "blocks per micro-batch");
  app.add_option("--per_device_eval_batch_size", o.per_device_eval_batch_size, "windows per held-out batch");
  app.add_option("--gradient_accumulation_steps", o.gradient_accumulation_steps, "micro-batches per optimizer step");
  app.add_option("--max_grad_norm", o.max_grad_norm, "clip the global gradient norm (0 = no clipping)");
  app.add_option("--max_steps", o.max_steps, "optimizer steps (> 0 wins over --num_train_epochs)");
  app.add_option("--num_train_epochs", o.num_train_epochs, "passes over the training blocks (may be fractional)");
  app.add_option("--logging_steps", o.logging_steps, "log loss parts, lr, grad norm and tokens/s every N steps");
  app.add_option("--eval_steps", o.eval_steps, "held-out evaluation every N steps");
  app.add_option("--save_steps", o.save_steps, "write output_dir/checkpoint-N every N steps");
  app.add_option("--save_total_limit", o.save_total_limit, "keep the newest N checkpoints (0 = all)");
  app.add_option("--save_dtype", o.save_dtype, "float32 | bfloat16 | float16 (default: the student's dtype)");
  app.add_option("--keep_sparsity", o.keep_sparsity, "keep the student's zeros: auto (when >= 1% are zero) | true | false");
  app.add_option("--resume_from_checkpoint", o.resume_from_checkpoint, "PATH or latest (the newest in --output_dir)");
  app.add_option("--max_shard_size", o.max_shard_size, "largest safetensors file of the final model, e.g. 5GB");
  for (CLI::Option* opt : app.get_options()) opt->capture_default_str();
  llmc::cli::CommonFlags defaults;
  defaults.seed = 42;  // transformers' Trainer default
  return llmc::cli::run_tool(
      "distill", app, argc, argv,
      [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
        o.revision = f.revision;
        o.overwrite = f.overwrite;
        o.seed = f.seed;
        return llmc::distill::run_distill(o, ctx, d);
      },
      defaults);
}
