// C ABI of the SentencePiece plugin (libllmc_spm.so). Debian's libsentencepiece embeds its
// own protobuf-lite, whose exported symbols clash with the libprotobuf that LibTorch loads
// (a crash in static initialization when both are linked into one program). The plugin is
// therefore loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), which keeps each copy to itself.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

struct LlmcSpmInfo {
  int32_t piece_size;
  int32_t bos_id;
  int32_t eos_id;
  int32_t pad_id;
  int32_t unk_id;
};

// Returns a handle, or null with a message in err.
// Loads a serialized ModelProto (the bytes of tokenizer.model); NULL and a message on error.
void* llmc_spm_load(const char* data, size_t size, char* err, size_t err_len);
void llmc_spm_free(void* handle);
void llmc_spm_info(void* handle, LlmcSpmInfo* info);
// ids: malloc'd array the caller frees with llmc_spm_release. Returns 0 on success.
int llmc_spm_encode(void* handle, const char* text, size_t len, int32_t** ids, size_t* n, char* err, size_t err_len);
// text: malloc'd, caller frees with llmc_spm_release. Returns 0 on success.
int llmc_spm_decode(void* handle, const int32_t* ids, size_t n, char** text, size_t* len, char* err, size_t err_len);
int llmc_spm_is_control(void* handle, int32_t id);
// Trains a model: `args` in spm_train's flag syntax ("--input=... --model_prefix=..."),
// `seed` seeds the trainer's sampling. Returns 0 on success.
// Trains a model; its serialized ModelProto is returned in *model (free with
// llmc_spm_release): the caller writes the file, so that a failed write is seen.
int llmc_spm_train(const char* args, uint32_t seed, char** model, size_t* model_len, char* err, size_t err_len);
void llmc_spm_release(void* p);
}
