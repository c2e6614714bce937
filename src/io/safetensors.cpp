#include "llmc/io/safetensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "llmc/core/error.h"
#include "llmc/core/options.h"
#include "llmc/io/json_file.h"
#include "mapped_file.h"

namespace llmc::io {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // reference MAX_HEADER_SIZE
constexpr uint64_t kMaxDim = uint64_t{1} << 48;     // schema limit on integers

struct DtypeInfo {
  const char* name;
  int bits;
  c10::ScalarType torch_type;  // Undefined when LibTorch 1.13 cannot hold it
};

// In the reference's enum order (increasing alignment); the writer sorts by it.
const DtypeInfo kDtypes[] = {
    {"BOOL", 8, c10::kBool},
    {"F4", 4, c10::ScalarType::Undefined},
    {"F6_E2M3", 6, c10::ScalarType::Undefined},
    {"F6_E3M2", 6, c10::ScalarType::Undefined},
    {"U8", 8, c10::kByte},
    {"I8", 8, c10::kChar},
    {"F8_E5M2", 8, c10::ScalarType::Undefined},
    {"F8_E4M3", 8, c10::ScalarType::Undefined},
    {"F8_E8M0", 8, c10::ScalarType::Undefined},
    {"F8_E4M3FNUZ", 8, c10::ScalarType::Undefined},
    {"F8_E5M2FNUZ", 8, c10::ScalarType::Undefined},
    {"I16", 16, c10::kShort},
    {"U16", 16, c10::ScalarType::Undefined},
    {"F16", 16, c10::kHalf},
    {"BF16", 16, c10::kBFloat16},
    {"I32", 32, c10::kInt},
    {"U32", 32, c10::ScalarType::Undefined},
    {"F32", 32, c10::kFloat},
    {"C64", 64, c10::kComplexFloat},
    {"F64", 64, c10::kDouble},
    {"I64", 64, c10::kLong},
    {"U64", 64, c10::ScalarType::Undefined},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

int dtype_rank(const std::string& name) {
  for (size_t i = 0; i < std::size(kDtypes); ++i) {
    if (name == kDtypes[i].name) return static_cast<int>(i);
  }
  return -1;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v) {
  auto bad = [&](const std::string& why) {
    return InputError(path + ": tensor '" + quote_prefix(name) + "': " + why);
  };
  if (!v.is_object()) throw bad("header entry is not an object");
  SafetensorsEntry e;
  e.name = name;
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) throw bad("missing string field 'dtype'");
  e.dtype = dt->get<std::string>();
  if (find_dtype(e.dtype) == nullptr) throw bad("unknown dtype '" + e.dtype + "'");
  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) throw bad("missing array field 'shape'");
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() >= kMaxDim) {
      throw bad("shape entries must be non-negative integers below 2^48, found " + llmc::describe_json(d));
    }
    e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    throw bad("'data_offsets' must be two non-negative integers");
  }
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  return e;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.map_ = std::make_shared<MappedFile>(path);
  const uint64_t size = f.map_->size();
  if (size < 8) {
    throw InputError(path + ": not a safetensors file: " + std::to_string(size) +
                     " bytes, expected at least 8 (header length)");
  }
  const uint64_t n = read_u64_le(f.map_->data());
  if (n > kMaxHeaderBytes) {
    throw InputError(path + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (8 + n > size) {
    throw InputError(path + ": safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(size) + " bytes; truncated?)");
  }
  const char* hp = reinterpret_cast<const char*>(f.map_->data() + 8);
  if (n == 0 || hp[0] != '{') throw InputError(path + ": safetensors header does not start with '{'");
  const nlohmann::json header = parse_json(std::string_view(hp, n), path + ": safetensors header");
  if (!header.is_object()) throw InputError(path + ": safetensors header is not a JSON object");
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw InputError(path + ": __metadata__ must be a string-to-string object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) {
          throw InputError(path + ": __metadata__ value of '" + m.key() + "' is not a string");
        }
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    f.entries_.push_back(parse_entry(path, it.key(), it.value()));
  }
  std::vector<SafetensorsEntry> sorted = f.entries_;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  const uint64_t buffer_bytes = size - 8 - n;  // 8 + n <= size was checked above
  for (const auto& e : sorted) {
    if (e.end > buffer_bytes) {
      throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': data_offsets end at " + std::to_string(e.end) +
                       ", beyond the " + std::to_string(buffer_bytes) + " bytes of data in the file (truncated?)");
    }
    if (e.begin != expected_begin || e.end < e.begin) {
      throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': data_offsets [" + std::to_string(e.begin) + ", " +
                       std::to_string(e.end) + "] expected to start at " + std::to_string(expected_begin) +
                       " (offsets must cover the buffer without gaps or overlaps)");
    }
    const DtypeInfo* dt = find_dtype(e.dtype);
    // Element count, and the product of the non-zero dims (an empty tensor of shape
    // [0, 2^47, 2^47] is still refused: LibTorch could not describe it).
    uint64_t numel = 1, span = 1;
    for (int64_t d : e.shape) {
      const uint64_t u = static_cast<uint64_t>(d);
      if (__builtin_mul_overflow(numel, u, &numel) || __builtin_mul_overflow(span, std::max<uint64_t>(u, 1), &span) ||
          span > (uint64_t{1} << 58)) {
        throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': shape " + shape_string(e.shape) + " overflows");
      }
    }
    if (numel > (uint64_t{1} << 58)) {
      throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': shape " + shape_string(e.shape) + " overflows");
    }
    const uint64_t nbits = numel * static_cast<uint64_t>(dt->bits);
    if (nbits % 8 != 0) {
      throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': " + std::to_string(nbits) + " bits is not a whole number of bytes");
    }
    if (e.end - e.begin != nbits / 8) {
      throw InputError(path + ": tensor '" + quote_prefix(e.name) + "': shape " + shape_string(e.shape) + " x " + e.dtype + " needs " +
                       std::to_string(nbits / 8) + " bytes, but data_offsets give " + std::to_string(e.end - e.begin));
    }
    expected_begin = e.end;
  }
  if (expected_begin != buffer_bytes) {
    throw InputError(path + ": tensors end at byte " + std::to_string(expected_begin + 8 + n) + " but the file has " +
                     std::to_string(size) + " bytes (trailing data)");
  }
  f.data_start_ = 8 + n;
  for (size_t i = 0; i < f.entries_.size(); ++i) f.index_[f.entries_[i].name] = i;
  return f;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw InputError(path_ + ": no tensor named '" + quote_prefix(name) + "'");
  const SafetensorsEntry& e = entries_[it->second];
  const DtypeInfo* dt = find_dtype(e.dtype);
  if (dt->torch_type == c10::ScalarType::Undefined) {
    throw InputError(path_ + ": tensor '" + name + "': dtype " + e.dtype + " is not supported by this LibTorch");
  }
  const auto options = at::TensorOptions().dtype(dt->torch_type).device(c10::kCPU);
  uint8_t* ptr = map_->data() + data_start_ + e.begin;
  const uint64_t nbytes = e.end - e.begin;
  const auto elem = static_cast<uintptr_t>(dt->bits / 8);
  if (nbytes == 0) return at::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % elem == 0) {
    auto keep = map_;
    return at::from_blob(ptr, e.shape, [keep](void*) {}, options);
  }
  at::Tensor out = at::empty(e.shape, options);
  std::memcpy(out.data_ptr(), ptr, nbytes);
  return out;
}

StateDict SafetensorsFile::load_all() const {
  StateDict out;
  for (const auto& e : entries_) out[e.name] = tensor(e.name);
  return out;
}

std::string safetensors_dtype(c10::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.torch_type == type) return d.name;
  }
  throw UsageError(std::string("no safetensors dtype for ") + c10::toString(type));
}

namespace {

// The writer's layout (the reference's prepare()): tensors ordered by dtype alignment, largest
// first, then by name. T has name and dtype.
template <class T>
void sort_for_writing(std::vector<T>& items) {
  std::stable_sort(items.begin(), items.end(), [](const T& a, const T& b) {
    const int ra = dtype_rank(a.dtype), rb = dtype_rank(b.dtype);
    return ra != rb ? ra > rb : a.name < b.name;
  });
}

// The 8-byte little-endian length and the JSON header padded with spaces to a multiple of 8,
// for tensors laid out consecutively in the given order. T has name, dtype, shape, nbytes.
template <class T>
std::string header_bytes(const std::vector<const T*>& items, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const T* it : items) {
    header[it->name] = {{"dtype", it->dtype}, {"shape", it->shape}, {"data_offsets", {offset, offset + it->nbytes}}};
    offset += it->nbytes;
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((static_cast<uint64_t>(h.size()) >> (8 * i)) & 0xff);
  return out + h;
}

void write_all(int fd, const char* p, uint64_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<uint64_t>(n, 1 << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw ResourceError(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

// An output file written with write_all and closed (a failed close is a failed write).
class OutputFile {
 public:
  explicit OutputFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw ResourceError(path_ + ": cannot create: " + std::strerror(errno));
  }
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  void write(const char* p, uint64_t n) { write_all(fd_, p, n, path_); }
  void close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw ResourceError(path_ + ": close failed: " + std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_{-1};
};

struct PlannedTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes;
  at::Tensor data;  // contiguous CPU
};

}  // namespace

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<PlannedTensor> planned;
  std::map<const void*, std::string> seen;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(c10::kCPU).contiguous();
    if (c.numel() > 0) {
      auto [pos, inserted] = seen.emplace(t.data_ptr(), name);
      if (!inserted) {
        throw Error("safetensors cannot store aliased tensors: '" + name + "' shares memory with '" + pos->second + "'");
      }
    }
    planned.push_back({name, safetensors_dtype(c.scalar_type()), c.sizes().vec(), tensor_nbytes(c), c});
  }
  sort_for_writing(planned);
  std::vector<const PlannedTensor*> order;
  for (const auto& p : planned) order.push_back(&p);
  OutputFile out(path);
  const std::string header = header_bytes(order, metadata);
  out.write(header.data(), header.size());
  for (const auto& p : planned) out.write(static_cast<const char*>(p.data.data_ptr()), p.nbytes);
  out.close();
}

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string spill_path) : spill_path_(std::move(spill_path)) {
  fd_ = ::open(spill_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) throw ResourceError(spill_path_ + ": cannot create spill file: " + std::strerror(errno));
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(spill_path_.c_str());
  }
}

void SafetensorsStreamWriter::add(const std::string& name, const at::Tensor& tensor) {
  if (fd_ < 0) throw Error("SafetensorsStreamWriter::add after finish");
  at::Tensor c = tensor.device().is_cpu() ? tensor.contiguous() : tensor.to(c10::kCPU).contiguous();
  Item item{name, safetensors_dtype(c.scalar_type()), c.sizes().vec(), offset_, tensor_nbytes(c)};
  write_all(fd_, static_cast<const char*>(c.data_ptr()), item.nbytes, spill_path_);
  offset_ += item.nbytes;
  items_.push_back(std::move(item));
}

std::vector<std::string> SafetensorsStreamWriter::finish(const std::string& dir, uint64_t max_shard_bytes) {
  std::vector<Item> order = items_;
  sort_for_writing(order);
  std::vector<std::vector<const Item*>> shards(1);
  uint64_t current = 0;
  for (const auto& it : order) {
    if (current > 0 && current + it.nbytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(&it);
    current += it.nbytes;
  }
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<char> buf(8 << 20);
  for (size_t s = 0; s < shards.size(); ++s) {
    char fname[64];
    if (shards.size() == 1) std::snprintf(fname, sizeof(fname), "model.safetensors");
    else std::snprintf(fname, sizeof(fname), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    for (const Item* it : shards[s]) weight_map[it->name] = fname;
    OutputFile out((fs::path(dir) / fname).string());
    const std::string header = header_bytes(shards[s], {{"format", "pt"}});
    out.write(header.data(), header.size());
    for (const Item* it : shards[s]) {
      for (uint64_t done = 0; done < it->nbytes;) {
        const uint64_t chunk = std::min<uint64_t>(buf.size(), it->nbytes - done);
        const ssize_t r = ::pread(fd_, buf.data(), chunk, static_cast<off_t>(it->spill_offset + done));
        if (r <= 0) throw ResourceError(spill_path_ + ": read failed");
        out.write(buf.data(), static_cast<uint64_t>(r));
        done += static_cast<uint64_t>(r);
      }
    }
    out.close();
    names.emplace_back(fname);
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", offset_}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    OutputFile out((fs::path(dir) / "model.safetensors.index.json").string());
    out.write(text.data(), text.size());
    out.close();
    names.emplace_back("model.safetensors.index.json");
  }
  ::close(fd_);
  fd_ = -1;
  ::unlink(spill_path_.c_str());  // the output directory holds only the model files
  return names;
}

void release_pages(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || t.numel() == 0) return;
  // Only a view of a file mapping: on other memory MADV_DONTNEED would zero the values.
  if (!in_file_mapping(t.data_ptr(), tensor_nbytes(t))) return;
  const long page = ::sysconf(_SC_PAGESIZE);
  auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  auto end = begin + tensor_nbytes(t);
  begin = (begin + static_cast<uintptr_t>(page) - 1) / static_cast<uintptr_t>(page) * static_cast<uintptr_t>(page);
  end = end / static_cast<uintptr_t>(page) * static_cast<uintptr_t>(page);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace llmc::io
