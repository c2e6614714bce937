#include "llmc/io/json_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"

namespace llmc::io {

int open_regular_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw InputError(path + ": file not found");
    throw InputError(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const mode_t m = st.st_mode;
    ::close(fd);
    const char* kind = S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
                       : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
    throw InputError(path + ": is " + std::string(kind) + ", expected a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

namespace {

// Reads up to n bytes (fewer at the end of the file) and closes fd.
std::string read_and_close(int fd, size_t n, const std::string& path) {
  std::string out(n, '\0');
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, out.data() + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(path + ": read failed: " + std::strerror(err));
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

}  // namespace

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  const int fd = open_regular_file(path);
  struct stat st {};
  ::fstat(fd, &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    throw InputError(path + ": " + std::to_string(size) + " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::string out = read_and_close(fd, static_cast<size_t>(size), path);
  if (out.size() != size) throw InputError(path + ": read failed (the file shrank while it was read)");
  return out;
}

std::string read_file_head(const std::string& path, size_t n) { return read_and_close(open_regular_file(path), n, path); }

namespace {

uint64_t env_limit(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end != '\0' || n == 0) throw UsageError(std::string(name) + ": expected a positive integer, found '" + std::string(v).substr(0, 40) + "'");
  return n;
}

}  // namespace

JsonLimits json_limits() {
  return {env_limit("LLMC_MAX_JSON_BYTES", uint64_t{256} << 20),
          static_cast<int>(std::min<uint64_t>(env_limit("LLMC_MAX_JSON_DEPTH", 64), 100000))};
}

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  const JsonLimits limits = json_limits();
  if (text.size() > limits.max_bytes) {
    throw InputError(source + ": a JSON document of " + std::to_string(text.size()) + " bytes, more than the limit of " +
                     std::to_string(limits.max_bytes) + " (LLMC_MAX_JSON_BYTES)");
  }
  auto depth_guard = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= limits.max_depth) {
      throw InputError(source + ": JSON nested deeper than " + std::to_string(limits.max_depth) +
                       " levels (LLMC_MAX_JSON_DEPTH)");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), depth_guard);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    if (what.size() > 200) what = what.substr(0, 200) + "...";
    throw InputError(source + ": not valid JSON: " + what);
  }
}

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path, json_limits().max_bytes), path); }

void write_file_atomic(const std::string& path, const std::string& content) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path tmp = target.parent_path() / (".tmp." + target.filename().string() + "." + std::to_string(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw ResourceError(path + ": cannot write: " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw ResourceError(path + ": " + what + ": " + std::strerror(err));
  };
  for (size_t done = 0; done < content.size();) {
    const ssize_t w = ::write(fd, content.data() + done, content.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write failed");
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    throw ResourceError(path + ": write failed: " + std::strerror(err));
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw ResourceError(path + ": cannot move into place: " + ec.message());
  }
}

}  // namespace llmc::io
