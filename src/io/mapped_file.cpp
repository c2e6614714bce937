#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"

namespace llmc::io {

namespace {

// The address ranges of the live mappings, for release_pages' check.
std::mutex& ranges_mutex() {
  static std::mutex m;
  return m;
}
std::vector<std::pair<uintptr_t, uintptr_t>>& ranges() {
  static std::vector<std::pair<uintptr_t, uintptr_t>> r;
  return r;
}

}  // namespace

bool in_file_mapping(const void* begin, uint64_t nbytes) {
  const auto b = reinterpret_cast<uintptr_t>(begin);
  std::lock_guard<std::mutex> lock(ranges_mutex());
  return std::any_of(ranges().begin(), ranges().end(),
                     [&](const auto& r) { return b >= r.first && b < r.second && nbytes <= r.second - b; });
}

MappedFile::MappedFile(const std::string& path) {
  const int fd = open_regular_file(path);
  struct stat st {};
  ::fstat(fd, &st);
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw InputError(path + ": cannot map: " + std::strerror(err));
    }
    data_ = static_cast<uint8_t*>(p);
    std::lock_guard<std::mutex> lock(ranges_mutex());
    ranges().emplace_back(reinterpret_cast<uintptr_t>(data_), reinterpret_cast<uintptr_t>(data_) + size_);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(ranges_mutex());
    auto& r = ranges();
    const auto mine = std::make_pair(reinterpret_cast<uintptr_t>(data_), reinterpret_cast<uintptr_t>(data_) + size_);
    r.erase(std::remove(r.begin(), r.end(), mine), r.end());
  }
  ::munmap(data_, size_);
}

}  // namespace llmc::io
