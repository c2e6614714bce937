# Use ccache when it is installed (scripts/setup.sh installs it); it only speeds rebuilds up.
find_program(LLMC_CCACHE ccache)
if(LLMC_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${LLMC_CCACHE}")
endif()
