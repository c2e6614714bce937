// PyTorch zip checkpoints (torch.save, e.g. pytorch_model.bin) read with a restricted
// unpickler: only the allowlisted globals of docs/formats.md §3 are accepted, nothing is
// ever executed, every size is checked against the archive. docs/formats.md §3.
#pragma once

#include <string>

#include "llmc/io/state_dict.h"

namespace llmc::io {

// Loads a state_dict (OrderedDict or dict of tensors). Throws InputError naming the file
// and the offending global / record / tensor.
StateDict load_torch_checkpoint(const std::string& path);

}  // namespace llmc::io
