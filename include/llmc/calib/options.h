// Calibration data options, the same in every tool that calibrates (quantize, prune): one
// option table, one reader (.txt or .jsonl), one sampling rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmc/core/options.h"

namespace llmc::calib {

struct CalibrationOptions {
  std::string calibration_file;        // .txt (the whole text) or .jsonl (one JSON object per line)
  std::string text_field{"text"};      // .jsonl: the field holding each document's text
  int64_t num_calibration_samples{128};
  int64_t calibration_seq_len{0};      // 0 = min(2048, max_position_embeddings)
};

// --calibration_file, --text_field, --num_calibration_samples, --calibration_seq_len: the same
// in quantize and prune.
std::vector<OptionField> option_fields(CalibrationOptions& o);
// UsageError for values out of range.
void validate(const CalibrationOptions& o);
// Tokens per calibration sample for a model with `max_positions`.
int64_t sample_length(const CalibrationOptions& o, int64_t max_positions);
// The calibration text tokenized by the model directory's tokenizer (documents of a .jsonl
// joined by blank lines). InputError when it is shorter than one sample of `sample_len` tokens.
std::vector<int64_t> calibration_ids(const CalibrationOptions& o, const std::string& model_dir, int64_t sample_len);

}  // namespace llmc::calib
