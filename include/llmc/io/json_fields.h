// Typed fields of JSON read from files: a wrong type anywhere is an InputError (exit 3) that
// names the file and the key path, never an exception from the JSON library.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "llmc/core/error.h"
#include "llmc/core/options.h"
#include "llmc/io/json_file.h"

namespace llmc::io {

namespace detail {
template <class T>
bool has_type(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, bool>) return v.is_boolean();
  else if constexpr (std::is_same_v<T, std::string>) return v.is_string();
  else if constexpr (std::is_integral_v<T>) return v.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>) return v.is_number();
  else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    if (!v.is_array()) return false;
    for (const auto& x : v) {
      if (!x.is_number_integer()) return false;
    }
    return true;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!v.is_array()) return false;
    for (const auto& x : v) {
      if (!x.is_string()) return false;
    }
    return true;
  } else if constexpr (std::is_same_v<T, nlohmann::json>) return v.is_object();
  else static_assert(!sizeof(T), "unsupported field type");
}
template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "a list of integers";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
  else return "an object";
}
}  // namespace detail

// obj[key] as T. `source` names the file; `path` the object's key path inside it ("" at the
// top, "quantization_config" for a nested block). Absent or null: `fallback`.
template <class T>
T json_field(const nlohmann::json& obj, const std::string& key, const T& fallback, const std::string& source,
             const std::string& path = "") {
  const std::string where = source + ": field '" + (path.empty() ? key : path + "." + key) + "'";
  if (!obj.is_object()) throw InputError(source + ": " + (path.empty() ? "expected a JSON object" : "'" + path + "' must be an object"));
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!detail::has_type<T>(*it)) {
    throw InputError(where + " must be " + detail::type_name<T>() + ", found " + llmc::describe_json(*it));
  }
  if constexpr (std::is_same_v<T, nlohmann::json>) return *it;
  else return it->template get<T>();
}

// The same for a field that must be present.
template <class T>
T json_required(const nlohmann::json& obj, const std::string& key, const std::string& source, const std::string& path = "") {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) {
    throw InputError(source + ": missing required field '" + (path.empty() ? key : path + "." + key) + "'");
  }
  return json_field<T>(obj, key, T{}, source, path);
}

}  // namespace llmc::io
