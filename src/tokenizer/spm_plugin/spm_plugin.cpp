#include "spm_plugin.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
void set_err(char* err, size_t len, const std::string& msg) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, msg.c_str(), len - 1);
  err[len - 1] = '\0';
}
}  // namespace

extern "C" {

void* llmc_spm_load(const char* data, size_t size, char* err, size_t err_len) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->LoadFromSerializedProto(std::string(data, size));
  if (!status.ok()) {
    set_err(err, err_len, status.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

void llmc_spm_free(void* handle) { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

void llmc_spm_info(void* handle, LlmcSpmInfo* info) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  info->piece_size = sp->GetPieceSize();
  info->bos_id = sp->bos_id();
  info->eos_id = sp->eos_id();
  info->pad_id = sp->pad_id();
  info->unk_id = sp->unk_id();
}

int llmc_spm_encode(void* handle, const char* text, size_t len, int32_t** ids, size_t* n, char* err, size_t err_len) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  std::vector<int> out;
  const auto status = sp->Encode(std::string(text, len), &out);
  if (!status.ok()) {
    set_err(err, err_len, status.ToString());
    return 1;
  }
  *n = out.size();
  *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (out.empty() ? 1 : out.size())));
  for (size_t i = 0; i < out.size(); ++i) (*ids)[i] = out[i];
  return 0;
}

int llmc_spm_decode(void* handle, const int32_t* ids, size_t n, char** text, size_t* len, char* err, size_t err_len) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  std::vector<int> in(ids, ids + n);
  std::string out;
  const auto status = sp->Decode(in, &out);
  if (!status.ok()) {
    set_err(err, err_len, status.ToString());
    return 1;
  }
  *len = out.size();
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  std::memcpy(*text, out.data(), out.size());
  (*text)[out.size()] = '\0';
  return 0;
}

int llmc_spm_is_control(void* handle, int32_t id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->IsControl(id) ? 1 : 0;
}

int llmc_spm_train(const char* args, uint32_t seed, char** model, size_t* model_len, char* err, size_t err_len) {
  sentencepiece::SetRandomGeneratorSeed(seed);
  // The trainer logs its whole command line to stderr whatever the log level; llmc reports
  // failures from the returned status, so its stderr is muted while it runs.
  std::fflush(stderr);
  const int saved = dup(2);
  const int null_fd = open("/dev/null", O_WRONLY);
  if (saved >= 0 && null_fd >= 0) dup2(null_fd, 2);
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &serialized);
  std::fflush(stderr);
  if (saved >= 0) {
    dup2(saved, 2);
    close(saved);
  }
  if (null_fd >= 0) close(null_fd);
  if (!status.ok()) {
    set_err(err, err_len, status.ToString());
    return 1;
  }
  *model_len = serialized.size();
  *model = static_cast<char*>(std::malloc(serialized.empty() ? 1 : serialized.size()));
  std::memcpy(*model, serialized.data(), serialized.size());
  return 0;
}

void llmc_spm_release(void* p) { std::free(p); }
}
