#include "sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <filesystem>
#include <mutex>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"
#include "spm_model_check.h"
#include "spm_plugin/spm_plugin.h"

namespace llmc::tokenizer {

struct SpmApi {
  decltype(&llmc_spm_load) load;
  decltype(&llmc_spm_free) free;
  decltype(&llmc_spm_info) info;
  decltype(&llmc_spm_encode) encode;
  decltype(&llmc_spm_decode) decode;
  decltype(&llmc_spm_is_control) is_control;
  decltype(&llmc_spm_release) release;
  decltype(&llmc_spm_train) train;
};

namespace {

// The plugin: $LLMC_SPM_PLUGIN, else the build tree's copy, else ../lib next to the
// executable.
std::vector<std::string> plugin_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LLMC_SPM_PLUGIN")) out.emplace_back(env);
  out.emplace_back(LLMC_SPM_PLUGIN_PATH);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / ".." / "lib" / "libllmc_spm.so").string());
  return out;
}

const SpmApi& api() {
  static std::once_flag once;
  static SpmApi table{};
  static std::string error;
  std::call_once(once, [] {
    void* lib = nullptr;
    std::string tried;
    for (const auto& path : plugin_candidates()) {
#ifdef LLMC_SANITIZED
      // The sanitizer runtime refuses RTLD_DEEPBIND; a link-map namespace of its own keeps
      // the plugin's protobuf apart from LibTorch's just the same.
      lib = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
#else
      lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
      if (lib != nullptr) break;
      tried += "\n  " + path + ": " + dlerror();
    }
    if (lib == nullptr) {
      error = "the SentencePiece plugin libllmc_spm.so could not be loaded; tried:" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(lib, name);
      if (p == nullptr) error = std::string("SentencePiece plugin lacks ") + name;
      return p;
    };
    table.load = reinterpret_cast<decltype(table.load)>(sym("llmc_spm_load"));
    table.free = reinterpret_cast<decltype(table.free)>(sym("llmc_spm_free"));
    table.info = reinterpret_cast<decltype(table.info)>(sym("llmc_spm_info"));
    table.encode = reinterpret_cast<decltype(table.encode)>(sym("llmc_spm_encode"));
    table.decode = reinterpret_cast<decltype(table.decode)>(sym("llmc_spm_decode"));
    table.is_control = reinterpret_cast<decltype(table.is_control)>(sym("llmc_spm_is_control"));
    table.release = reinterpret_cast<decltype(table.release)>(sym("llmc_spm_release"));
    table.train = reinterpret_cast<decltype(table.train)>(sym("llmc_spm_train"));
  });
  if (!error.empty()) throw Error(error);
  return table;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, const SpecialTokens& special)
    : api_(&api()) {
  // Checked here first: the library trusts the file (spm_model_check.cpp).
  const std::string bytes = io::read_text_file(model_path, uint64_t{1} << 30);
  check_sentencepiece_model(bytes, model_path);
  char err[512] = {0};
  handle_ = api_->load(bytes.data(), bytes.size(), err, sizeof(err));
  if (handle_ == nullptr) throw InputError(model_path + ": cannot load SentencePiece model: " + err);
  LlmcSpmInfo info{};
  api_->info(handle_, &info);
  piece_size_ = info.piece_size;
  special_ = special;
  auto fill = [](std::optional<int64_t>& slot, int32_t id) {
    if (!slot && id >= 0) slot = id;
  };
  fill(special_.bos, info.bos_id);
  fill(special_.eos, info.eos_id);
  fill(special_.pad, info.pad_id);
  fill(special_.unk, info.unk_id);
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (handle_ != nullptr) api_->free(handle_);
}

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text, bool add_special_tokens) const {
  if (!is_valid_utf8(text)) throw InputError("text to tokenize is not valid UTF-8");
  int32_t* ids = nullptr;
  size_t n = 0;
  char err[512] = {0};
  if (api_->encode(handle_, text.data(), text.size(), &ids, &n, err, sizeof(err)) != 0) {
    throw InputError(std::string("SentencePiece encode failed: ") + err);
  }
  std::vector<int64_t> out;
  if (add_special_tokens && special_.add_bos && special_.bos) out.push_back(*special_.bos);
  out.insert(out.end(), ids, ids + n);
  api_->release(ids);
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<int32_t> kept;
  for (int64_t id : ids) {
    if (id < 0 || id >= piece_size_) continue;
    if (skip_special_tokens && (api_->is_control(handle_, static_cast<int32_t>(id)) != 0 || id == special_.pad ||
                                id == special_.bos || id == special_.eos)) {
      continue;
    }
    kept.push_back(static_cast<int32_t>(id));
  }
  char* text = nullptr;
  size_t len = 0;
  char err[512] = {0};
  if (api_->decode(handle_, kept.data(), kept.size(), &text, &len, err, sizeof(err)) != 0) {
    throw InputError(std::string("SentencePiece decode failed: ") + err);
  }
  std::string out(text, len);
  api_->release(text);
  return sanitize_utf8(out);
}

std::string train_sentencepiece_model(const std::string& args, uint32_t seed) {
  char err[1024] = {0};
  char* model = nullptr;
  size_t len = 0;
  if (api().train(args.c_str(), seed, &model, &len, err, sizeof(err)) != 0) {
    throw InputError(std::string("SentencePiece training failed: ") + err);
  }
  std::string bytes(model, len);
  api().release(model);
  return bytes;
}

}  // namespace llmc::tokenizer
