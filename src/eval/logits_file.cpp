#include "llmc/eval/logits_file.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/round.h>
#include <ATen/ops/where.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "llmc/core/error.h"
#include "llmc/core/version.h"
#include "llmc/io/json_file.h"

namespace llmc::eval {

namespace {

constexpr char kMagic[8] = {'L', 'L', 'M', 'C', 'L', 'O', 'G', 'P'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxHeaderBytes = 1u << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxLength = int64_t{1} << 20;
constexpr int64_t kMaxTokens = int64_t{1} << 36;
// 40 nats: the mass left out below the range is at most vocab·e^-40 (2e-13 for OPT's
// vocabulary; 16 nats, llama.cpp's range, left 3e-5 of KL on a random model), and a step of
// 6.1e-4 nats adds about step²/24 = 1.6e-8 of KL by rounding.
constexpr double kRangeNats = 40.0;
constexpr double kSteps = 65534.0;    // codes 1..65535 cover [top − 40 nats, top]
constexpr uint64_t kRecordFixed = 28;  // f64 target log p, f64 step, f64 floor log p, i32 argmax

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
T get(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

int64_t pieces_rows(int64_t vocab) { return std::max<int64_t>(1, (int64_t{4} << 20) / vocab); }

void pread_all(int fd, void* buf, uint64_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw InputError(path + ": cannot read at offset " + std::to_string(offset) + ": " + (r == 0 ? "unexpected end of file" : std::strerror(errno)));
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

int64_t int_field(const nlohmann::json& h, const char* key, int64_t lo, int64_t hi, const std::string& path) {
  const auto it = h.find(key);
  if (it == h.end() || !it->is_number_integer()) throw InputError(path + ": header field '" + key + "' is missing or not an integer");
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    throw InputError(path + ": header field '" + key + "' is " + std::to_string(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return v;
}

}  // namespace

uint64_t logits_record_bytes(int64_t vocab) { return kRecordFixed + 2 * static_cast<uint64_t>(vocab); }

int64_t protocol_predicted_tokens(int64_t n_tokens, int64_t max_length) {
  const int64_t full = n_tokens / max_length, rest = n_tokens % max_length;
  return full * (max_length - 1) + (rest > 0 ? rest - 1 : 0);
}

bool is_logits_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  const std::string head = io::read_file_head(path, sizeof(kMagic));
  return head.size() == sizeof(kMagic) && std::memcmp(head.data(), kMagic, sizeof(kMagic)) == 0;
}

// ---------------------------------------------------------------------------------------
// Writer

LogitsFileWriter::LogitsFileWriter(const std::string& path, const LogitsFileHeader& header, const std::vector<int64_t>& ids)
    : path_(path), header_(header) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  tmp_ = (target.parent_path() / (".tmp." + target.filename().string() + "." + std::to_string(::getpid()))).string();
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (f_ == nullptr) throw ResourceError(path + ": cannot write: " + std::strerror(errno));
  // As the reader: a throwing constructor runs no destructor, so the file is closed and the
  // partial temporary removed here.
  try {
    write_head(ids);
  } catch (...) {
    std::fclose(f_);
    f_ = nullptr;
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    throw;
  }
}

void LogitsFileWriter::write_head(const std::vector<int64_t>& ids) {
  const LogitsFileHeader& header = header_;
  nlohmann::json h;
  h["format"] = "llmc-base-logprobs";
  h["encoding"] = "u16 over the 40 nats below the top id";
  h["vocab_size"] = header.vocab_size;
  h["max_length"] = header.max_length;
  h["num_tokens"] = header.num_tokens;
  h["predicted_tokens"] = header.predicted_tokens;
  h["record_bytes"] = logits_record_bytes(header.vocab_size);
  h["tokenizer"] = header.tokenizer;
  h["model_path"] = header.model_path;
  h["llmc_version"] = version();
  // A model path that is not UTF-8 is written with replacement characters, not refused.
  const std::string json = h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, static_cast<uint32_t>(json.size()));
  out += json;
  for (int64_t id : ids) put<int32_t>(out, static_cast<int32_t>(id));
  if (std::fwrite(out.data(), 1, out.size(), f_) != out.size()) throw ResourceError(path_ + ": write failed: " + std::strerror(errno));
}

LogitsFileWriter::~LogitsFileWriter() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void LogitsFileWriter::append(const at::Tensor& logits, const at::Tensor& targets) {
  const int64_t V = header_.vocab_size;
  if (logits.size(1) != V) throw Error("logits file: rows of " + std::to_string(logits.size(1)) + " ids, header says " + std::to_string(V));
  const at::Tensor tgt = targets.to(c10::kCPU, c10::kLong).reshape({-1, 1});
  const int64_t n = logits.size(0);
  std::string out;
  std::vector<uint16_t> codes(static_cast<size_t>(V));
  for (int64_t r0 = 0; r0 < n; r0 += pieces_rows(V)) {
    const int64_t r1 = std::min(n, r0 + pieces_rows(V));
    const at::Tensor x = logits.slice(0, r0, r1).to(c10::kCPU, c10::kDouble).contiguous();
    const at::Tensor top = std::get<0>(x.max(-1, true));
    const at::Tensor floor = at::maximum(std::get<0>(x.min(-1, true)), top - kRangeNats);
    const at::Tensor step = (top - floor) / kSteps;
    const at::Tensor safe = at::where(step > 0, step, at::full_like(step, 1.0));
    const at::Tensor code = at::where(x < floor, at::full_like(x, 0.0), at::clamp(at::round((x - floor) / safe) + 1.0, 1.0, 65535.0))
                                .to(c10::kInt)
                                .contiguous();
    const at::Tensor lse = at::logsumexp(x, {-1}, true);
    const at::Tensor floor_logp = (floor - lse).contiguous();
    const at::Tensor target_logp = (x.gather(1, tgt.slice(0, r0, r1)) - lse).contiguous();
    const at::Tensor arg = at::argmax(x, -1).contiguous();
    const int32_t* cp = code.data_ptr<int32_t>();
    for (int64_t i = 0; i < r1 - r0; ++i) {
      out.clear();
      put<double>(out, target_logp.data_ptr<double>()[i]);
      put<double>(out, step.data_ptr<double>()[i]);
      put<double>(out, floor_logp.data_ptr<double>()[i]);
      put<int32_t>(out, static_cast<int32_t>(arg.data_ptr<int64_t>()[i]));
      for (int64_t v = 0; v < V; ++v) codes[static_cast<size_t>(v)] = static_cast<uint16_t>(cp[i * V + v]);
      out.append(reinterpret_cast<const char*>(codes.data()), codes.size() * 2);
      if (std::fwrite(out.data(), 1, out.size(), f_) != out.size()) throw ResourceError(path_ + ": write failed: " + std::strerror(errno));
    }
  }
  written_ += n;
}

void LogitsFileWriter::commit() {
  if (written_ != header_.predicted_tokens) {
    throw Error("logits file: " + std::to_string(written_) + " records written, " + std::to_string(header_.predicted_tokens) + " expected");
  }
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw ResourceError(path_ + ": write failed: " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw ResourceError(path_ + ": cannot move into place: " + ec.message());
  committed_ = true;
}

// ---------------------------------------------------------------------------------------
// Reader

LogitsFileReader::LogitsFileReader(const std::string& path) : path_(path) {
  fd_ = io::open_regular_file(path);
  // A constructor that throws runs no destructor: the descriptor is closed here (a fuzz run
  // of bad files ran out of descriptors).
  try {
    read_header(path);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

void LogitsFileReader::read_header(const std::string& path) {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw InputError(path + ": cannot stat: " + std::strerror(errno));
  const auto size = static_cast<uint64_t>(st.st_size);
  unsigned char head[16];
  if (size < sizeof(head)) throw InputError(path + ": too short for a logits file (" + std::to_string(size) + " bytes)");
  pread_all(fd_, head, sizeof(head), 0, path);
  if (std::memcmp(head, kMagic, sizeof(kMagic)) != 0) throw InputError(path + ": not an llmc logits file (magic differs)");
  const auto ver = get<uint32_t>(head + 8);
  if (ver != kVersion) throw InputError(path + ": logits file version " + std::to_string(ver) + ", this build reads " + std::to_string(kVersion));
  const auto hlen = get<uint32_t>(head + 12);
  if (hlen > kMaxHeaderBytes || hlen > size - sizeof(head)) {
    throw InputError(path + ": header of " + std::to_string(hlen) + " bytes does not fit (file " + std::to_string(size) + " bytes, limit " + std::to_string(kMaxHeaderBytes) + ")");
  }
  std::string json(hlen, '\0');
  pread_all(fd_, json.data(), hlen, sizeof(head), path);
  const nlohmann::json h = io::parse_json(json, path + " header");
  if (!h.is_object()) throw InputError(path + ": header is not a JSON object");
  header_.vocab_size = int_field(h, "vocab_size", 2, kMaxVocab, path);
  header_.max_length = int_field(h, "max_length", 2, kMaxLength, path);
  header_.num_tokens = int_field(h, "num_tokens", 2, kMaxTokens, path);
  header_.predicted_tokens = int_field(h, "predicted_tokens", 1, kMaxTokens, path);
  const int64_t expect_pred = protocol_predicted_tokens(header_.num_tokens, header_.max_length);
  if (header_.predicted_tokens != expect_pred) {
    throw InputError(path + ": predicted_tokens " + std::to_string(header_.predicted_tokens) + " does not follow from " +
                     std::to_string(header_.num_tokens) + " tokens in windows of " + std::to_string(header_.max_length) +
                     " (expected " + std::to_string(expect_pred) + ")");
  }
  if (h.contains("tokenizer")) header_.tokenizer = h["tokenizer"];
  if (h.contains("model_path") && h["model_path"].is_string()) header_.model_path = h["model_path"].get<std::string>();
  // Sizes: every product is bounded by the field limits (2^36 · (28 + 2^25) < 2^62).
  const uint64_t ids_off = sizeof(head) + hlen;
  const uint64_t ids_bytes = 4 * static_cast<uint64_t>(header_.num_tokens);
  records_offset_ = ids_off + ids_bytes;
  const uint64_t want = records_offset_ + static_cast<uint64_t>(header_.predicted_tokens) * logits_record_bytes(header_.vocab_size);
  if (size != want) {
    throw InputError(path + ": file is " + std::to_string(size) + " bytes, its header describes " + std::to_string(want));
  }
  std::vector<int32_t> raw(static_cast<size_t>(header_.num_tokens));
  pread_all(fd_, raw.data(), ids_bytes, ids_off, path);
  ids_.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < 0 || raw[i] >= header_.vocab_size) {
      throw InputError(path + ": token " + std::to_string(i) + " has id " + std::to_string(raw[i]) + ", outside the vocabulary of " + std::to_string(header_.vocab_size));
    }
    ids_.push_back(raw[i]);
  }
}

LogitsFileReader::~LogitsFileReader() {
  if (fd_ >= 0) ::close(fd_);
}

BaseDistribution LogitsFileReader::next(int64_t n, int64_t shared) {
  const int64_t V = header_.vocab_size;
  if (n < 0 || read_ + n > header_.predicted_tokens) throw Error("logits file: read past the last record");
  if (shared < 1 || shared > V) throw Error("logits file: shared vocabulary out of range");
  const uint64_t rb = logits_record_bytes(V);
  std::vector<unsigned char> buf(static_cast<size_t>(rb * static_cast<uint64_t>(n)));
  pread_all(fd_, buf.data(), buf.size(), records_offset_ + rb * static_cast<uint64_t>(read_), path_);
  at::Tensor logits = at::empty({n, shared}, at::TensorOptions().dtype(c10::kFloat));
  at::Tensor arg = at::empty({n}, at::TensorOptions().dtype(c10::kLong));
  at::Tensor tlogp = at::empty({n}, at::TensorOptions().dtype(c10::kDouble));
  float* lp = logits.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* r = buf.data() + rb * static_cast<uint64_t>(i);
    const auto where = [&](const char* what) {
      return path_ + ": record " + std::to_string(read_ + i) + " (offset " + std::to_string(records_offset_ + rb * static_cast<uint64_t>(read_ + i)) + "): " + what;
    };
    const double target = get<double>(r), step = get<double>(r + 8), floor_logp = get<double>(r + 16);
    const int32_t top = get<int32_t>(r + 24);
    if (!std::isfinite(target) || target > 1e-6) throw InputError(where("the correct token's log-probability is not a finite value <= 0"));
    if (!std::isfinite(step) || step < 0 || step > kRangeNats / kSteps * (1 + 1e-9)) throw InputError(where("step outside [0, 40/65534]"));
    if (!std::isfinite(floor_logp) || floor_logp > 1e-6) throw InputError(where("floor log-probability is not a finite value <= 0"));
    if (top < 0 || top >= V) throw InputError(where("most likely id outside the vocabulary"));
    // log p = floor_logp + step·(code − 1): kept as step·(code − 1), log p up to the row's
    // constant, which the comparison's normalization removes.
    float* row = lp + i * shared;
    const unsigned char* codes = r + kRecordFixed;
    bool any = false;
    for (int64_t v = 0; v < shared; ++v) {
      const auto c = get<uint16_t>(codes + 2 * v);
      any = any || c != 0;
      row[v] = c == 0 ? -std::numeric_limits<float>::infinity() : static_cast<float>(step * static_cast<double>(c - 1));
    }
    if (!any) throw InputError(where("no id among the shared vocabulary has any mass"));
    tlogp.data_ptr<double>()[i] = target;
    arg.data_ptr<int64_t>()[i] = top;
  }
  BaseDistribution b;
  b.logits = logits;
  if (shared == V) {  // the exact values; with fewer shared ids they follow from the codes
    b.argmax = arg;
    b.target_logp = tlogp;
  }
  read_ += n;
  return b;
}

}  // namespace llmc::eval
