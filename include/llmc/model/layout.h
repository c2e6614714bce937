// What a model family tells the tools about one decoder layer: its Linears with their roles
// and widths, the order in which calibrated methods should compress them (GPTQ's
// true-sequential groups), and where per-channel input scales can be folded into a
// preceding operation (AWQ). The tools ask this instead of naming a family's modules.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmc::model {

struct LinearInfo {
  std::string name;  // full module name, e.g. "model.decoder.layers.3.fc1"
  std::string role;  // the family's own short name, e.g. "fc1", "self_attn.q_proj"
  int64_t out_features{0};
  int64_t in_features{0};
};

// Linears that read the same input, whose input columns may be multiplied by s when the
// operation before them divides its output channels by s.
struct ScaleGroup {
  std::string prev;                  // the operation that receives 1/s (a norm or a Linear)
  bool prev_is_norm{false};          // scale weight and bias of a norm; else the rows and bias of a Linear
  std::vector<std::string> linears;  // whose input columns receive s
  bool whole_layer_loss{false};      // measure the effect on the layer's output (attention inside)
  bool exact{true};                  // folding leaves the function unchanged
  std::string not_exact_because;     // when !exact
};

struct LayerLayout {
  std::vector<LinearInfo> linears;                   // in checkpoint registration order
  std::vector<std::vector<std::string>> sequential;  // compression order, group by group
  std::vector<ScaleGroup> scale_groups;
};

}  // namespace llmc::model
