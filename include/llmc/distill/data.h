// Training and held-out text for distill: a .txt file tokenized whole, or a .jsonl file of
// objects whose `text_field` holds the text (each text tokenized with the tokenizer's
// special tokens, then concatenated); cut into blocks and ordered per epoch by a seed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llmc/tokenizer/tokenizer.h"

namespace llmc::distill {

// The token ids of a .txt or .jsonl file. InputError (with the line) for a missing file,
// invalid UTF-8, bad JSON or a missing/non-string field; UsageError for another extension.
std::vector<int64_t> load_token_ids(const std::string& path, const std::string& text_field, const tokenizer::Tokenizer& tok);

// Consecutive blocks of block_size tokens, [N, block_size] int64 on the CPU; the remainder
// shorter than a block is dropped (as transformers' run_clm group_texts).
at::Tensor pack_blocks(const std::vector<int64_t>& ids, int64_t block_size);

// SplitMix64's finaliser: well-mixed seeds from (seed, index) pairs (epochs, micro-batches).
uint64_t splitmix64(uint64_t x);

// The order of n blocks in `epoch`: a Fisher-Yates shuffle by a 64-bit generator seeded from
// (seed, epoch), the same on every machine and library version.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace llmc::distill
