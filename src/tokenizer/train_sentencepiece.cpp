// Training a SentencePiece BPE tokenizer for a model made from scratch, saved the way
// transformers loads it (tokenizer.model + tokenizer_config.json naming LlamaTokenizer).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::tokenizer {

// The serialized model (sentencepiece_tokenizer.cpp).
std::string train_sentencepiece_model(const std::string& args, uint32_t seed);

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> train_sentencepiece(const std::string& text_file, int64_t vocab_size, const std::string& out_dir,
                                               uint64_t seed) {
  if (vocab_size < 260 || vocab_size > 1000000) {
    throw UsageError("--train_tokenizer sentencepiece:N: N must be in [260, 1000000] (256 byte pieces + specials), found " +
                     std::to_string(vocab_size));
  }
  std::error_code ec;
  if (!fs::is_regular_file(text_file, ec)) throw InputError(text_file + ": training text not found");
  fs::create_directories(out_dir, ec);
  if (ec) throw InputError(out_dir + ": cannot create directory: " + ec.message());
  const std::string prefix = (fs::path(out_dir) / "tokenizer").string();
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  // Ids as LLaMA's tokenizer has them (unk 0, bos 1, eos 2) plus pad 3; byte fallback so that
  // every text is encodable; hard_vocab_limit off so that a small text gives fewer pieces
  // instead of failing.
  const std::string args = "--input=" + text_file + " --vocab_size=" +
                           std::to_string(vocab_size) +
                           " --model_type=bpe --character_coverage=1.0 --byte_fallback=true --hard_vocab_limit=false"
                           " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 --input_sentence_size=2000000"
                           " --shuffle_input_sentence=true --max_sentence_length=65536 --minloglevel=1 --num_threads=" +
                           std::to_string(threads);
  // Written here, not by the library: a failed write (a full disk) must be seen.
  const std::string model = train_sentencepiece_model(args, static_cast<uint32_t>(seed));
  io::write_file_atomic(prefix + ".model", model);
  nlohmann::json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"pad_token", "<pad>"}};
  nlohmann::json config = special;
  config["tokenizer_class"] = "LlamaTokenizer";
  config["add_bos_token"] = true;
  config["add_eos_token"] = false;
  config["legacy"] = true;
  config["clean_up_tokenization_spaces"] = false;
  io::write_file_atomic((fs::path(out_dir) / "tokenizer_config.json").string(), config.dump(2) + "\n");
  io::write_file_atomic((fs::path(out_dir) / "special_tokens_map.json").string(), special.dump(2) + "\n");
  return load_tokenizer(out_dir);
}

}  // namespace llmc::tokenizer
