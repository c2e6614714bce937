#include "llmc/core/options.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"

namespace llmc {

namespace {

template <class... F>
struct Overload : F... {
  using F::operator()...;
};
template <class... F>
Overload(F...) -> Overload<F...>;

}  // namespace

void apply_json_options(const std::vector<OptionField>& fields, const nlohmann::json& values, const std::string& where) {
  if (!values.is_object()) throw UsageError(where + ": expected an object of flag names and values");
  for (auto it = values.begin(); it != values.end(); ++it) {
    const std::string path = where + "." + it.key();
    const OptionField* field = nullptr;
    for (const auto& f : fields) {
      if (f.name == it.key()) field = &f;
    }
    if (field == nullptr) {
      std::string names;
      for (const auto& f : fields) {
        if (f.role == OptionField::Role::kPlain || f.role == OptionField::Role::kCommon) names += (names.empty() ? "" : ", ") + f.name;
      }
      throw UsageError(path + ": unknown option (this tool's options: " + names + ")");
    }
    if (field->role == OptionField::Role::kInputModel || field->role == OptionField::Role::kOutputDir) {
      throw UsageError(path + ": set by the pipeline (the previous stage's output, or the stage's own directory)");
    }
    const nlohmann::json& v = it.value();
    auto wrong = [&](const char* expected) { return UsageError(path + ": expected " + expected + ", found " + describe_json(v)); };
    std::visit(Overload{[&](std::string* s) {
                          if (!v.is_string()) throw wrong("a string");
                          *s = v.get<std::string>();
                        },
                        [&](double* d) {
                          if (!v.is_number()) throw wrong("a number");
                          *d = v.get<double>();
                        },
                        [&](int64_t* i) {
                          if (!v.is_number_integer()) throw wrong("an integer");
                          *i = v.get<int64_t>();
                        },
                        [&](bool* b) {
                          if (!v.is_boolean()) throw wrong("true or false");
                          *b = v.get<bool>();
                        },
                        [&](std::vector<std::string>* list) {
                          if (v.is_string()) {
                            *list = {v.get<std::string>()};
                            return;
                          }
                          if (!v.is_array()) throw wrong("a string or a list of strings");
                          list->clear();
                          for (const auto& e : v) {
                            if (!e.is_string()) throw wrong("a list of strings");
                            list->push_back(e.get<std::string>());
                          }
                        }},
               field->target);
  }
}

nlohmann::json option_value(const OptionField& field) {
  return std::visit([](auto* p) { return nlohmann::json(*p); }, field.target);
}

uint64_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 15) throw UsageError("expected a size such as 5GB, 500MB or 1024, found '" + text.substr(0, 40) + "'");
  const uint64_t value = std::stoull(text.substr(0, i));
  std::string unit = text.substr(i);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::toupper(c); });
  static const std::map<std::string, uint64_t> kUnits = {
      {"", 1},             {"B", 1},
      {"KB", 1000},        {"MB", 1000 * 1000},   {"GB", 1000ull * 1000 * 1000}, {"TB", 1000ull * 1000 * 1000 * 1000},
      {"KIB", 1ull << 10}, {"MIB", 1ull << 20},   {"GIB", 1ull << 30},           {"TIB", 1ull << 40}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) {
    throw UsageError("unknown size unit in '" + text.substr(0, 40) + "' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  }
  if (value == 0) throw UsageError("size must be positive, found '" + text.substr(0, 40) + "'");
  return value * it->second;
}

std::string describe_json(const nlohmann::json& v) {
  if (v.is_string()) {
    std::string shown = quote_prefix(v.get_ref<const std::string&>(), 60);
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    }
    return "\"" + shown + "\"";
  }
  if (v.is_array()) return "an array of " + std::to_string(v.size()) + " items";
  if (v.is_object()) return "an object with " + std::to_string(v.size()) + " keys";
  return v.dump();  // number, boolean, null
}

std::string quote_prefix(const std::string& text, size_t max) {
  return text.size() <= max ? text : text.substr(0, max) + "...";
}

}  // namespace llmc
