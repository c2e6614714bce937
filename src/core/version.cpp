#include "llmc/core/version.h"

namespace llmc {
const char* version() { return LLMC_VERSION_STRING; }
}  // namespace llmc
