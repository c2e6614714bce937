// A name -> factory map. Each module fills its registry in one explicit function
// (no self-registering statics); lookups of unknown names are usage errors that list
// what is available.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "llmc/core/error.h"

namespace llmc {

template <class Value>
class Registry {
 public:
  explicit Registry(std::string what) : what_(std::move(what)) {}

  void add(const std::string& name, Value value) {
    if (!entries_.emplace(name, std::move(value)).second) {
      throw Error("duplicate " + what_ + " registration: '" + name + "'");
    }
  }

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  // Throws ErrorT (UsageError by default) naming the known entries.
  template <class ErrorT = UsageError>
  const Value& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      throw ErrorT("unsupported " + what_ + " '" + name + "' (supported: " + joined_names() + ")");
    }
    return it->second;
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }

  std::string joined_names() const {
    std::string s;
    for (const auto& kv : entries_) s += (s.empty() ? "" : ", ") + kv.first;
    return s;
  }

 private:
  std::string what_;
  std::map<std::string, Value> entries_;
};

}  // namespace llmc
