add_library(llmc_warnings INTERFACE)
target_compile_options(llmc_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter)
