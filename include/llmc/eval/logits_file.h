// The base-log-probabilities file of `evaluate --save_logits` / `--compare_to FILE`
// (docs/formats.md "Base log-probabilities"): the token ids and window length of a
// perplexity run, then one record per predicted token holding the base's full next-token
// distribution in 16 bits per id (a per-token range of 40 nats below the most likely id in
// 65535 steps), its most likely id and the exact log-probability of the correct token.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmc/eval/compare.h"

namespace llmc::eval {

// Bytes of one record for a vocabulary of `vocab` ids.
uint64_t logits_record_bytes(int64_t vocab);

// Predicted tokens of the perplexity protocol: windows of max_length over n tokens, each
// window of L tokens predicting L − 1.
int64_t protocol_predicted_tokens(int64_t n_tokens, int64_t max_length);

struct LogitsFileHeader {
  int64_t vocab_size{0};  // ids per record (the base model's vocab_size)
  int64_t max_length{0};
  int64_t num_tokens{0};
  int64_t predicted_tokens{0};
  nlohmann::json tokenizer;  // tokenizer_fingerprint() of the base
  std::string model_path;
};

// Written to `path` through a temporary sibling, renamed by commit(); the temporary is
// removed when the writer is destroyed uncommitted.
class LogitsFileWriter {
 public:
  LogitsFileWriter(const std::string& path, const LogitsFileHeader& header, const std::vector<int64_t>& ids);
  ~LogitsFileWriter();
  LogitsFileWriter(const LogitsFileWriter&) = delete;
  LogitsFileWriter& operator=(const LogitsFileWriter&) = delete;
  // Rows of the base's logits [N, vocab_size] with their targets [N], in protocol order.
  void append(const at::Tensor& logits, const at::Tensor& targets);
  void commit();

 private:
  void write_head(const std::vector<int64_t>& ids);
  std::string path_, tmp_;
  std::FILE* f_{nullptr};
  LogitsFileHeader header_;
  int64_t written_{0};
  bool committed_{false};
};

// Reads and checks a file from anyone: magic, version, a bounded JSON header with typed
// fields, the exact file size for its counts, token ids inside the vocabulary; each record's
// numbers when it is read. InputError (exit 3) naming the file and the offset otherwise.
class LogitsFileReader {
 public:
  explicit LogitsFileReader(const std::string& path);
  ~LogitsFileReader();
  LogitsFileReader(const LogitsFileReader&) = delete;
  LogitsFileReader& operator=(const LogitsFileReader&) = delete;
  const LogitsFileHeader& header() const { return header_; }
  const std::vector<int64_t>& ids() const { return ids_; }
  // The next n records as the base distribution over the first `shared` ids (renormalized
  // there; ids coded 0, more than 40 nats below the top, carry no mass).
  BaseDistribution next(int64_t n, int64_t shared);

 private:
  void read_header(const std::string& path);
  std::string path_;
  int fd_{-1};
  LogitsFileHeader header_;
  std::vector<int64_t> ids_;
  uint64_t records_offset_{0};
  int64_t read_{0};
};

// True when `path` is a regular file that starts with the logits file's magic.
bool is_logits_file(const std::string& path);

}  // namespace llmc::eval
