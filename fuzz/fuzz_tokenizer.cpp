// Tokenizer files and the BPE tokenizer: the first byte picks what the rest is.
//   0: a vocab.json (with fixed merges), loaded and used on a fixed text
//   1: a tokenizer_config.json beside a fixed GPT-2 vocabulary
//   2: a SentencePiece tokenizer.model, checked, loaded and used on a fixed text
//   3: text encoded (and decoded) by a fixed byte-level BPE with a few merges
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "llmc/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

// GPT-2's byte-to-unicode table: printable bytes keep their code point, the rest from 256.
std::string byte_symbol(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      const bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      const int cp = printable ? i : next++;
      std::string s;
      if (cp < 0x80) s += static_cast<char>(cp);
      else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      t[static_cast<size_t>(i)] = s;
    }
    return t;
  }();
  return table[static_cast<size_t>(b)];
}

struct Fixed {
  std::string dir;
  Fixed() {
    dir = (fs::temp_directory_path() / ("llmc-fuzz-tok-" + std::to_string(::getpid()))).string();
    fs::create_directories(dir);
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
    const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}, {"ab", "c"}, {byte_symbol(' '), "a"},
                                                                     {byte_symbol(' '), byte_symbol(' ')}, {"t", "h"}};
    int id = 256;
    std::ofstream m(dir + "/merges.txt");
    m << "#version: 0.2\n";
    for (const auto& [a, b] : merges) {
      m << a << " " << b << "\n";
      vocab[a + b] = id++;
    }
    vocab["<|endoftext|>"] = id;
    std::ofstream(dir + "/vocab.json") << vocab.dump();
    std::ofstream(dir + "/tokenizer_config.json") << R"({"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>"})";
  }
};

const Fixed& fixed() {
  static Fixed f;
  return f;
}

void write(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Fixed& f = fixed();
  const std::string scratch = f.dir + "/case";
  llmc::fuzz::expect_only_llmc_errors([&] {
    fs::remove_all(scratch);
    fs::create_directories(scratch);
    const uint8_t kind = data[0] % 4;
    const uint8_t* body = data + 1;
    const size_t n = size - 1;
    const std::string text = "the cat sat on the mat, abc  abcab \xE2\x96\x81 thth";
    if (kind == 3) {
      static const auto tok = llmc::tokenizer::load_tokenizer(f.dir);
      const std::string input(reinterpret_cast<const char*>(body), n);
      if (!llmc::tokenizer::is_valid_utf8(input)) return;
      const auto ids = tok->encode(input, true);
      if (tok->decode(ids, false) != input) std::abort();  // byte-level BPE round-trips exactly
      return;
    }
    if (kind == 0) {
      write(scratch + "/vocab.json", body, n);
      fs::copy_file(f.dir + "/merges.txt", scratch + "/merges.txt");
    } else if (kind == 1) {
      write(scratch + "/tokenizer_config.json", body, n);
      fs::copy_file(f.dir + "/merges.txt", scratch + "/merges.txt");
      fs::copy_file(f.dir + "/vocab.json", scratch + "/vocab.json");
    } else {
      write(scratch + "/tokenizer.model", body, n);
    }
    auto tok = llmc::tokenizer::load_tokenizer(scratch);
    (void)tok->decode(tok->encode(text, true), true);
  });
  return 0;
}
