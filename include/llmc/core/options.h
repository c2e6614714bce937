// A tool's options described once: name (the flag name without "--"), help, and where the
// value goes. The executables declare their command-line flags from these tables, and the
// pipeline applies a recipe's JSON `options` through the same tables, so a stage accepts
// exactly its tool's flags.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <variant>
#include <vector>

namespace llmc {

struct OptionField {
  enum class Role {
    kPlain,
    kInputModel,  // the model the tool reads (set by the pipeline from the previous stage)
    kOutputDir,   // where the tool writes (set by the pipeline)
    kCommon,      // also a common flag of every executable (--seed): not declared twice
  };
  using Target = std::variant<std::string*, double*, int64_t*, bool*, std::vector<std::string>*>;

  std::string name;
  std::string help;
  Target target;
  Role role{Role::kPlain};
  bool required{false};  // required on the command line
  bool is_switch{false}; // a flag without a value (--benchmark); a bool that is not a switch takes true|false
};

// Sets the fields named by the keys of a JSON object. UsageError naming `where`.key for an
// unknown key, a value of the wrong type, or a key whose role is not kPlain/kCommon.
void apply_json_options(const std::vector<OptionField>& fields, const nlohmann::json& values, const std::string& where);

// The field's current value as JSON (for plans and reports).
nlohmann::json option_value(const OptionField& field);

// A JSON value for an error message: strings quoted and cut to a prefix, numbers and booleans
// as written, arrays and objects by their size (never dumped whole).
std::string describe_json(const nlohmann::json& value);

// A name or value from a file for an error message: at most `max` bytes, "..." when cut.
std::string quote_prefix(const std::string& text, size_t max = 80);

// A size flag: "5GB" -> 5e9, "500MB", "10KiB", "123" (bytes). Throws UsageError.
uint64_t parse_byte_size(const std::string& text);

}  // namespace llmc
