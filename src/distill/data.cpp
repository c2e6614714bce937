#include "llmc/distill/data.h"

#include <ATen/ops/empty.h>

#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"

namespace llmc::distill {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::vector<int64_t> load_token_ids(const std::string& path, const std::string& text_field, const tokenizer::Tokenizer& tok) {
  const bool txt = ends_with(path, ".txt");
  if (!txt && !ends_with(path, ".jsonl")) throw UsageError(path + ": expected a .txt or .jsonl file");
  const std::string bytes = io::read_text_file(path);
  if (txt) {
    if (!tokenizer::is_valid_utf8(bytes)) throw InputError(path + ": not valid UTF-8");
    return tok.encode(bytes, true);
  }
  std::vector<int64_t> ids;
  std::istringstream lines(bytes);
  std::string line;
  int64_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    const nlohmann::json j = io::parse_json(line, where);
    if (!j.is_object() || !j.contains(text_field) || !j[text_field].is_string()) {
      throw InputError(where + ": expected an object with a string field '" + text_field + "' (--text_field)");
    }
    const std::string text = j[text_field].get<std::string>();
    const std::vector<int64_t> part = tok.encode(text, true);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

at::Tensor pack_blocks(const std::vector<int64_t>& ids, int64_t block_size) {
  if (block_size < 2) throw UsageError("--block_size must be at least 2, found " + std::to_string(block_size));
  const int64_t n = static_cast<int64_t>(ids.size()) / block_size;
  at::Tensor out = at::empty({n, block_size}, at::TensorOptions().dtype(c10::kLong));
  std::copy(ids.begin(), ids.begin() + n * block_size, out.data_ptr<int64_t>());
  return out;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 gen(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch))));
  for (int64_t i = n - 1; i > 0; --i) {
    // Uniform in [0, i] without std::uniform_int_distribution (whose algorithm differs between
    // standard libraries): rejection sampling on the raw 64-bit output.
    const uint64_t range = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t r;
    do r = gen();
    while (r >= limit);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(r % range)]);
  }
  return order;
}

}  // namespace llmc::distill
