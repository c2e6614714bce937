// quantize: bitsandbytes NF4/FP4 (+ double quantization) and LLM.int8, or round-to-nearest
// in the GPTQ layout. Thin: flags -> options -> llmc::quant::run_quantize.
#include "../common/tool.h"
#include "llmc/quant/quantize.h"

int main(int argc, char** argv) {
  CLI::App app{"quantize: write a quantized Hugging Face model directory that transformers and llmc load"};
  llmc::quant::QuantizeOptions o;
  app.add_option("--model_name_or_path", o.model_name_or_path, "model directory or hub id (offline cache)")->required();
  app.add_option("--output_dir", o.output_dir, "where the quantized model directory goes")->required();
  app.add_option("--quantization_method", o.quantization_method, "bitsandbytes | rtn");
  app.add_option("--quantization_bits", o.quantization_bits, "bitsandbytes: 4 or 8; rtn: 2, 3, 4 or 8");
  app.add_option("--bnb_4bit_quant_type", o.bnb_4bit_quant_type, "nf4 | fp4");
  app.add_option("--bnb_4bit_use_double_quant", o.bnb_4bit_use_double_quant, "true | false: quantize the absmax too");
  app.add_option("--bnb_4bit_compute_dtype", o.bnb_4bit_compute_dtype, "recorded for transformers: float32 | bfloat16 | float16");
  app.add_option("--blocksize", o.blocksize, "4-bit block size: a power of two from 32 to 4096");
  app.add_option("--group_size", o.group_size, "rtn: input columns per scale (-1 = per row)");
  app.add_option("--skip_modules", o.skip_modules, "module-name substrings to leave unquantized");
  app.add_option("--max_shard_size", o.max_shard_size, "largest safetensors file, e.g. 5GB or 500MB");
  for (CLI::Option* opt : app.get_options()) opt->capture_default_str();
  return llmc::cli::run_tool("quantize", app, argc, argv,
                             [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate& d) {
                               o.revision = f.revision;
                               o.overwrite = f.overwrite;
                               return llmc::quant::run_quantize(o, ctx, d);
                             });
}
