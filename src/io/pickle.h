// A restricted unpickler for torch.save's data.pkl (docs/formats.md §3). It builds plain
// values; GLOBALs are names checked against an allowlist and are never imported or
// called; the only "calls" are the allowlisted rebuild functions, implemented here.
// Private to llmc::io.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmc::io::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kGlobal, kStorage, kTensor };

// Limits decided before anything is built (a state_dict's pickle needs far less): the depth of
// nested tuples / lists / dicts, and the number of memo entries.
constexpr size_t kMaxNesting = 1000;
constexpr size_t kMaxMemoEntries = size_t{1} << 22;

struct Value {
  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Releases nested values iteratively: a chain of a million nested tuples must not recurse.
  ~Value();

  Kind kind{Kind::kNone};
  size_t depth{0};     // nesting depth of a tuple / list / dict when it was made
  bool b{false};
  int64_t i{0};
  double f{0.0};
  std::string s;       // string / bytes / global "module.name"
  std::vector<ValuePtr> items;                          // tuple, list
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   // dict (insertion order)
  at::Tensor tensor;   // storage (1-D bytes or typed) or rebuilt tensor
  c10::ScalarType storage_dtype{c10::ScalarType::Undefined};  // for storages
};

// Resolves a persistent id ("storage", type, key, location, numel) to a 1-D CPU tensor of
// the storage's dtype (or uint8 bytes for an untyped storage).
using StorageLoader = std::function<at::Tensor(const std::string& key, c10::ScalarType dtype, int64_t numel)>;

// Throws InputError (prefixed by `where`) on malformed data or a forbidden global. The result
// owns everything it refers to; lists and dicts inside it are emptied when it is released.
ValuePtr unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::string& where);

}  // namespace llmc::io::pickle
