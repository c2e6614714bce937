# Every dependency comes from Debian packages (see scripts/setup.sh).
find_package(Torch REQUIRED)            # libtorch-dev (1.13 on Debian 12; 2.x also works)
find_package(nlohmann_json 3 REQUIRED)  # nlohmann-json3-dev
find_package(CLI11 REQUIRED)            # libcli11-dev
find_package(spdlog REQUIRED)           # libspdlog-dev
find_package(Threads REQUIRED)
find_package(CURL REQUIRED)            # libcurl4-openssl-dev (hub downloads)
find_package(OpenSSL REQUIRED)         # libssl-dev (sha256 of downloaded LFS files)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)   # libpcre2-dev (Unicode classes for GPT-2)

find_path(SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h REQUIRED)
find_library(SENTENCEPIECE_LIBRARY sentencepiece REQUIRED)
find_library(SENTENCEPIECE_TRAIN_LIBRARY sentencepiece_train REQUIRED)
add_library(llmc_sentencepiece INTERFACE)
target_include_directories(llmc_sentencepiece SYSTEM INTERFACE ${SENTENCEPIECE_INCLUDE_DIR})
target_link_libraries(llmc_sentencepiece INTERFACE ${SENTENCEPIECE_LIBRARY})

# LibTorch's imported targets carry flags we do not want everywhere; wrap them.
add_library(llmc_torch INTERFACE)
target_link_libraries(llmc_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(llmc_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
