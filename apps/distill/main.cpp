// distill: train a student from a teacher's logits (kl, mse) or from text alone (ce), with
// exactly resumable checkpoints. Thin: flags -> options -> llmc::distill::run_distill.
#include "../common/tool.h"
#include "llmc/distill/distill.h"

int main(int argc, char** argv) {
  CLI::App app{
      "distill: train a student model on a text file, from a teacher's next-token distributions (kl, mse) or from the\n"
      "text alone (ce), and write it as a Hugging Face model directory. Checkpoints (output_dir/checkpoint-N/) resume\n"
      "exactly; SIGINT/SIGTERM finish the current step, save a checkpoint and exit 130."};
  llmc::distill::DistillOptions o;
  llmc::cli::add_option_fields(app, llmc::distill::option_fields(o));
  llmc::cli::ToolSettings settings;
  settings.defaults.seed = 42;  // transformers' Trainer default
  return llmc::cli::run_tool(
      "distill", app, argc, argv,
      [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
        o.revision = f.revision;
        o.overwrite = f.overwrite;
        o.seed = static_cast<int64_t>(f.seed);
        return llmc::distill::run_distill(o, ctx, d);
      },
      settings);
}
