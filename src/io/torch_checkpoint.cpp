#include "llmc/io/torch_checkpoint.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "llmc/core/error.h"
#include "llmc/core/options.h"
#include "llmc/io/json_file.h"
#include "pickle.h"
#include "zip_reader.h"

namespace llmc::io {

namespace {

bool starts_with_bytes(const std::string& head, const char* magic, size_t n) {
  return head.size() >= n && std::memcmp(head.data(), magic, n) == 0;
}


std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

StateDict load_torch_checkpoint(const std::string& path) {
  const std::string head = read_file_head(path, 16);
  if (!starts_with_bytes(head, "PK\x03\x04", 4)) {
    if (starts_with_bytes(head, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14)) {
      throw InputError(path + ": legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current "
                       "torch.save (zip format) or convert it to safetensors");
    }
    throw InputError(path + ": not a PyTorch zip checkpoint (no ZIP header)");
  }
  ZipReader zip(path);
  const std::string& first = zip.first_name();
  const auto slash = first.find('/');
  if (slash == std::string::npos || slash == 0) {
    throw InputError(path + ": zip entry '" + first + "' is not in a subdirectory (not a torch.save archive)");
  }
  const std::string prefix = first.substr(0, slash + 1);
  if (zip.has(prefix + "constants.pkl") && !zip.has(prefix + "data.pkl")) {
    throw InputError(path + ": this is a TorchScript archive, not a state_dict checkpoint");
  }
  bool big_endian = false;
  if (zip.has(prefix + "byteorder")) {
    const ZipRecord& r = zip.record(prefix + "byteorder");
    std::string order = trim(std::string(reinterpret_cast<const char*>(zip.data(r)), std::min<uint64_t>(r.size, 16)));
    if (order == "big") big_endian = true;
    else if (order != "little") throw InputError(path + ": unknown byteorder '" + order + "'");
  }

  auto keep = zip.mapping();
  pickle::StorageLoader loader = [&](const std::string& key, c10::ScalarType dtype, int64_t numel) -> at::Tensor {
    const std::string name = prefix + "data/" + key;
    const ZipRecord& r = zip.record(name);
    const uint64_t elem = c10::elementSize(dtype);
    if (static_cast<uint64_t>(numel) > r.size / elem) {
      throw InputError(path + ": storage '" + quote_prefix(key) + "' declares " + std::to_string(numel) + " elements of " +
                       std::to_string(elem) + " bytes but its record holds " + std::to_string(r.size) + " bytes");
    }
    const auto options = at::TensorOptions().dtype(dtype);
    if (numel == 0) return at::empty({0}, options);
    uint8_t* ptr = const_cast<uint8_t*>(zip.data(r));
    at::Tensor t;
    if (!big_endian && reinterpret_cast<uintptr_t>(ptr) % elem == 0) {
      t = at::from_blob(ptr, {numel}, [keep](void*) {}, options);
    } else {
      t = at::empty({numel}, options);
      std::memcpy(t.data_ptr(), ptr, static_cast<size_t>(numel) * elem);
      if (big_endian && elem > 1) {
        auto* b = static_cast<uint8_t*>(t.data_ptr());
        for (int64_t i = 0; i < numel; ++i) std::reverse(b + i * elem, b + (i + 1) * elem);
      }
    }
    return t;
  };

  const ZipRecord& pkl = zip.record(prefix + "data.pkl");
  pickle::ValuePtr root = pickle::unpickle(zip.data(pkl), pkl.size, loader, path + ": " + prefix + "data.pkl");
  if (root->kind != pickle::Kind::kDict) {
    throw InputError(path + ": the checkpoint is not a state_dict (expected a dict or OrderedDict of tensors)");
  }
  StateDict out;
  for (const auto& [k, v] : root->entries) {
    if (k->kind != pickle::Kind::kString) throw InputError(path + ": state_dict key is not a string");
    if (v->kind != pickle::Kind::kTensor) {
      throw InputError(path + ": state_dict entry '" + quote_prefix(k->s) + "' is not a tensor");
    }
    out[k->s] = v->tensor;
  }
  return out;
}

}  // namespace llmc::io
