// quantize: bitsandbytes NF4/FP4 (+ double quantization) and LLM.int8, or round-to-nearest
// in the GPTQ layout. Thin: flags -> options -> llmc::quant::run_quantize.
#include "../common/tool.h"
#include "llmc/quant/quantize.h"

int main(int argc, char** argv) {
  CLI::App app{"quantize: write a quantized Hugging Face model directory that transformers and llmc load"};
  llmc::quant::QuantizeOptions o;
  llmc::cli::add_option_fields(app, llmc::quant::option_fields(o));
  return llmc::cli::run_tool("quantize", app, argc, argv,
                             [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
                               o.revision = f.revision;
                               o.overwrite = f.overwrite;
                               return llmc::quant::run_quantize(o, ctx, d);
                             });
}
