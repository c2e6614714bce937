#pragma once

namespace llmc {
// From metadata.json, injected by the build.
const char* version();
}  // namespace llmc
