#include "pickle.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "llmc/core/error.h"
#include "llmc/core/options.h"

namespace llmc::io::pickle {

namespace {

constexpr size_t kMaxStackDepth = 1 << 20;

// Globals a checkpoint may name. Storage classes map to their dtype.
const std::map<std::string, c10::ScalarType>& storage_classes() {
  static const std::map<std::string, c10::ScalarType> m = {
      {"torch.DoubleStorage", c10::kDouble},   {"torch.FloatStorage", c10::kFloat},
      {"torch.HalfStorage", c10::kHalf},       {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},       {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},     {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},       {"torch.BoolStorage", c10::kBool},
      {"torch.ComplexFloatStorage", c10::kComplexFloat}, {"torch.ComplexDoubleStorage", c10::kComplexDouble},
      {"torch.UntypedStorage", c10::kByte},
  };
  return m;
}

const std::map<std::string, c10::ScalarType>& dtype_globals() {
  static const std::map<std::string, c10::ScalarType> m = {
      {"torch.float64", c10::kDouble}, {"torch.float32", c10::kFloat}, {"torch.float16", c10::kHalf},
      {"torch.bfloat16", c10::kBFloat16}, {"torch.int64", c10::kLong}, {"torch.int32", c10::kInt},
      {"torch.int16", c10::kShort}, {"torch.int8", c10::kChar}, {"torch.uint8", c10::kByte},
      {"torch.bool", c10::kBool}, {"torch.complex64", c10::kComplexFloat}, {"torch.complex128", c10::kComplexDouble},
  };
  return m;
}

const std::set<std::string>& callable_globals() {
  static const std::set<std::string> s = {
      "collections.OrderedDict",          "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",  "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter",  "torch._utils._rebuild_parameter_with_state",
      "torch.nn.parameter.Parameter",
  };
  return s;
}

bool allowed_global(const std::string& name) {
  return callable_globals().count(name) || storage_classes().count(name) || dtype_globals().count(name);
}

// Lists and dicts can be made to contain themselves (APPEND through the memo); shared
// pointers would never free such a cycle. Every list and dict is registered here and emptied
// when the last reference to the result goes.
struct Arena {
  std::vector<ValuePtr> containers;
  ValuePtr root;
  ~Arena() {
    for (auto& c : containers) {
      c->items.clear();
      c->entries.clear();
    }
  }
};

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const StorageLoader& loader, std::string where)
      : p_(data), end_(data + size), begin_(data), loader_(loader), where_(std::move(where)) {}

  ValuePtr run() {
    while (true) {
      const size_t at = static_cast<size_t>(p_ - begin_);
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                                       // PROTO
        case 0x95: take(8); break;                                    // FRAME
        case '.': {                                                   // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail("STOP with an unbalanced stack", at);
          return stack_.back();
        }
        case 'c': {                                                   // GLOBAL
          std::string module = line(), name = line();
          push(global(module + "." + name, at));
          break;
        }
        case 0x93: {                                                  // STACK_GLOBAL
          ValuePtr name = pop(at), module = pop(at);
          if (module->kind != Kind::kString || name->kind != Kind::kString) fail("STACK_GLOBAL needs two strings", at);
          push(global(module->s + "." + name->s, at));
          break;
        }
        case 'q': memo_put(u8()); break;                              // BINPUT
        case 'r': memo_put(u32()); break;                             // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;                     // MEMOIZE
        case 'h': push(memo_get(u8(), at)); break;                    // BINGET
        case 'j': push(memo_get(u32(), at)); break;                   // LONG_BINGET
        case '(':                                                     // MARK
          marks_.push_back(stack_.size());
          break;
        case 't': push(make_seq(Kind::kTuple, pop_mark(at), at)); break;  // TUPLE
        case ')': push(make_seq(Kind::kTuple, {}, at)); break;            // EMPTY_TUPLE
        case 0x85: push(make_seq(Kind::kTuple, pop_n(1, at), at)); break; // TUPLE1
        case 0x86: push(make_seq(Kind::kTuple, pop_n(2, at), at)); break; // TUPLE2
        case 0x87: push(make_seq(Kind::kTuple, pop_n(3, at), at)); break; // TUPLE3
        case ']': push(make_seq(Kind::kList, {}, at)); break;             // EMPTY_LIST
        case 0x8f: push(make_seq(Kind::kList, {}, at)); break;            // EMPTY_SET (held as a list)
        case '}': push(make_seq(Kind::kDict, {}, at)); break;             // EMPTY_DICT
        case 'a': {                                                       // APPEND
          ValuePtr v = pop(at);
          add_items(seq_target(at), {v}, at);
          break;
        }
        case 'e':                                                         // APPENDS
        case 0x90: {                                                      // ADDITEMS
          auto vals = pop_mark(at);
          add_items(seq_target(at), vals, at);
          break;
        }
        case 's': {                                                       // SETITEM
          ValuePtr v = pop(at), k = pop(at);
          add_entries(dict_target(at), {k, v}, at);
          break;
        }
        case 'u': {                                                       // SETITEMS
          auto vals = pop_mark(at);
          if (vals.size() % 2 != 0) fail("SETITEMS with an odd number of items", at);
          add_entries(dict_target(at), vals, at);
          break;
        }
        case 'X': push(make_string(Kind::kString, take(u32()))); break;   // BINUNICODE
        case 0x8c: push(make_string(Kind::kString, take(u8()))); break;   // SHORT_BINUNICODE
        case 'U': push(make_string(Kind::kString, take(u8()))); break;    // SHORT_BINSTRING
        case 'C': push(make_string(Kind::kBytes, take(u8()))); break;     // SHORT_BINBYTES
        case 'B': push(make_string(Kind::kBytes, take(u32()))); break;    // BINBYTES
        case 'J': push(make_int(static_cast<int32_t>(u32()))); break;     // BININT
        case 'K': push(make_int(u8())); break;                            // BININT1
        case 'M': push(make_int(u16())); break;                           // BININT2
        case 0x8a: push(make_int(long1(u8(), at))); break;                // LONG1
        case 'G': push(make_float(f64_be())); break;                      // BINFLOAT
        case 'N': push(std::make_shared<Value>()); break;                 // NONE
        case 0x88: push(make_bool(true)); break;                          // NEWTRUE
        case 0x89: push(make_bool(false)); break;                         // NEWFALSE
        case 'R': {                                                       // REDUCE
          ValuePtr args = pop(at), fn = pop(at);
          push(call(fn, args, at));
          break;
        }
        case 0x81: {                                                      // NEWOBJ
          ValuePtr args = pop(at), cls = pop(at);
          push(call(cls, args, at));
          break;
        }
        case 'b': {                                                       // BUILD
          ValuePtr state = pop(at);
          ValuePtr obj = top(at);
          (void)state;
          if (obj->kind != Kind::kDict && obj->kind != Kind::kTensor) fail("BUILD on an object that is not a dict or tensor", at);
          break;  // _metadata of an OrderedDict, tensor subclass state: ignored
        }
        case 'Q': {                                                       // BINPERSID
          ValuePtr pid = pop(at);
          push(persistent(pid, at));
          break;
        }
        default: {
          char buf[64];
          std::snprintf(buf, sizeof(buf), "unsupported pickle opcode 0x%02x", op);
          fail(buf, at);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw InputError(where_ + ": " + what + " at byte " + std::to_string(at));
  }

  const uint8_t* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) fail("unexpected end of pickle data (truncated)", static_cast<size_t>(p_ - begin_));
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint8_t u8() { return *take(1); }
  uint16_t u16() { const uint8_t* b = take(2); return static_cast<uint16_t>(b[0] | (b[1] << 8)); }
  uint32_t u32() {
    const uint8_t* b = take(4);
    return static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) | (static_cast<uint32_t>(b[2]) << 16) |
           (static_cast<uint32_t>(b[3]) << 24);
  }
  double f64_be() {
    const uint8_t* b = take(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
    double d;
    std::memcpy(&d, &v, 8);
    return d;
  }
  int64_t long1(size_t n, size_t at) {
    if (n > 8) fail("integer wider than 64 bits", at);
    const uint8_t* b = take(n);
    if (n == 0) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    if (n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  std::string line() {
    const uint8_t* start = p_;
    while (p_ < end_ && *p_ != '\n') ++p_;
    if (p_ == end_) fail("unterminated GLOBAL name", static_cast<size_t>(start - begin_));
    std::string s(reinterpret_cast<const char*>(start), static_cast<size_t>(p_ - start));
    ++p_;
    return s;
  }

  void push(ValuePtr v) {
    if (stack_.size() >= kMaxStackDepth) fail("pickle stack too deep", static_cast<size_t>(p_ - begin_));
    stack_.push_back(std::move(v));
  }
  ValuePtr pop(size_t at) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow", at);
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr top(size_t at) {
    if (stack_.empty()) fail("pickle stack underflow", at);
    return stack_.back();
  }
  std::vector<ValuePtr> pop_n(size_t n, size_t at) {
    std::vector<ValuePtr> out(n);
    for (size_t i = n; i-- > 0;) out[i] = pop(at);
    return out;
  }
  std::vector<ValuePtr> pop_mark(size_t at) {
    if (marks_.empty()) fail("missing MARK", at);
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("corrupt MARK", at);
    std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  ValuePtr seq_target(size_t at) {
    ValuePtr t = top(at);
    if (t->kind != Kind::kList) fail("APPEND to an object that is not a list", at);
    return t;
  }
  ValuePtr dict_target(size_t at) {
    ValuePtr t = top(at);
    if (t->kind != Kind::kDict) fail("SETITEM on an object that is not a dict", at);
    return t;
  }
  // The memo is a map: its size is bounded by the number of opcodes, not by an index
  // read from the file.
  void memo_put(size_t index) {
    if (stack_.empty()) fail("memo store from an empty stack", static_cast<size_t>(p_ - begin_));
    if (memo_.size() >= kMaxMemoEntries && !memo_.count(index)) {
      fail("more than " + std::to_string(kMaxMemoEntries) + " memo entries", static_cast<size_t>(p_ - begin_));
    }
    memo_[index] = stack_.back();
  }
  ValuePtr memo_get(size_t index, size_t at) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo index " + std::to_string(index) + " was never stored", at);
    return it->second;
  }

  // Nesting is bounded where containers are made and filled. A container filled after it was
  // put inside another one (through the memo) is caught when its own depth passes the limit;
  // releasing values never recurses (Value::~Value), so no depth can overflow the stack.
  size_t nested_depth(const std::vector<ValuePtr>& items, size_t at) const {
    size_t d = 0;
    for (const auto& item : items) d = std::max(d, item->depth);
    if (d + 1 > kMaxNesting) fail("values nested deeper than " + std::to_string(kMaxNesting) + " levels", at);
    return d + 1;
  }
  ValuePtr make_seq(Kind k, std::vector<ValuePtr> items, size_t at) const {
    auto v = std::make_shared<Value>();
    v->kind = k;
    v->depth = nested_depth(items, at);
    v->items = std::move(items);
    if (k != Kind::kTuple) arena_->containers.push_back(v);
    return v;
  }

 public:
  // The result: shares ownership of the arena, which keeps the root.
  ValuePtr result(ValuePtr root) {
    arena_->root = root;
    return ValuePtr(arena_, root.get());
  }

 private:
  void add_items(const ValuePtr& target, const std::vector<ValuePtr>& vals, size_t at) const {
    target->depth = std::max(target->depth, nested_depth(vals, at));
    target->items.insert(target->items.end(), vals.begin(), vals.end());
  }
  void add_entries(const ValuePtr& target, const std::vector<ValuePtr>& flat, size_t at) const {
    target->depth = std::max(target->depth, nested_depth(flat, at));
    for (size_t i = 0; i + 1 < flat.size(); i += 2) target->entries.emplace_back(flat[i], flat[i + 1]);
  }
  ValuePtr make_string(Kind k, const uint8_t* data) {
    // take() already advanced; recover the length from the pointer difference.
    ValuePtr v = make(k);
    v->s.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(p_ - data));
    return v;
  }
  static ValuePtr make(Kind k) {
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
  }
  template <class T>
  static ValuePtr make_scalar(Kind k, T Value::*field, T x) {
    ValuePtr v = make(k);
    (*v).*field = x;
    return v;
  }
  static ValuePtr make_int(int64_t i) { return make_scalar(Kind::kInt, &Value::i, i); }
  static ValuePtr make_float(double f) { return make_scalar(Kind::kFloat, &Value::f, f); }
  static ValuePtr make_bool(bool b) { return make_scalar(Kind::kBool, &Value::b, b); }

  ValuePtr global(const std::string& name, size_t at) {
    if (!allowed_global(name)) {
      fail("forbidden global '" + quote_prefix(name) + "' (only tensor-rebuilding globals are allowed; nothing was executed)", at);
    }
    auto v = std::make_shared<Value>();
    v->kind = Kind::kGlobal;
    v->s = name;
    return v;
  }

  int64_t as_int(const ValuePtr& v, const char* what, size_t at) {
    if (v->kind != Kind::kInt) fail(std::string("expected an integer for ") + what, at);
    return v->i;
  }
  std::vector<int64_t> as_int_tuple(const ValuePtr& v, const char* what, size_t at) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) fail(std::string("expected a tuple for ") + what, at);
    std::vector<int64_t> out;
    for (const auto& item : v->items) out.push_back(as_int(item, what, at));
    return out;
  }

  ValuePtr rebuild_tensor(const ValuePtr& storage, const ValuePtr& offset_v, const ValuePtr& size_v,
                          const ValuePtr& stride_v, c10::ScalarType dtype, size_t at) {
    if (storage->kind != Kind::kStorage) fail("tensor rebuild without a storage", at);
    const int64_t offset = as_int(offset_v, "storage_offset", at);
    const auto size = as_int_tuple(size_v, "size", at);
    const auto stride = as_int_tuple(stride_v, "stride", at);
    if (size.size() != stride.size()) fail("size and stride have different lengths", at);
    at::Tensor base = storage->tensor;
    if (dtype != base.scalar_type()) {
      // Untyped storage (bytes) viewed as the tensor's dtype.
      const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
      if (base.numel() % elem != 0) fail("untyped storage size is not a multiple of the element size", at);
      base = base.view(dtype);
    }
    // Every bound in checked arithmetic: the highest element the view touches
    // (offset + sum (size - 1) * stride) and its element count must fit the storage. A view
    // with more elements than its storage (zero or overlapping strides) is refused: it would
    // be materialised at its logical size, far beyond the file.
    if (size.size() > 64) fail("tensor with more than 64 dimensions", at);
    if (offset < 0) fail("negative storage offset", at);
    const int64_t storage_numel = base.numel();
    int64_t last = offset, numel = 1;
    bool empty = false;
    for (size_t d = 0; d < size.size(); ++d) {
      if (size[d] < 0 || stride[d] < 0) fail("negative size or stride", at);
      if (size[d] == 0) empty = true;
      int64_t extent = 0;
      if (__builtin_mul_overflow(size[d] == 0 ? 0 : size[d] - 1, stride[d], &extent) ||
          __builtin_add_overflow(last, extent, &last) || __builtin_mul_overflow(numel, size[d], &numel)) {
        fail("tensor size x stride overflows 64 bits", at);
      }
    }
    auto v = std::make_shared<Value>();
    v->kind = Kind::kTensor;
    if (empty) {
      v->tensor = at::empty(size, base.options());
      return v;
    }
    if (last >= storage_numel) {
      fail("tensor of " + std::to_string(size.size()) + " dims reaches element " + std::to_string(last) +
               " of a storage with " + std::to_string(storage_numel) + " elements",
           at);
    }
    if (numel > storage_numel) {
      fail("tensor of " + std::to_string(numel) + " elements views a storage of " + std::to_string(storage_numel) +
               " (zero or overlapping strides are not supported)",
           at);
    }
    v->tensor = base.as_strided(size, stride, offset);
    return v;
  }

  ValuePtr call(const ValuePtr& fn, const ValuePtr& args, size_t at) {
    if (fn->kind != Kind::kGlobal) fail("REDUCE on something that is not an allowed global", at);
    if (args->kind != Kind::kTuple) fail("REDUCE arguments are not a tuple", at);
    const auto& a = args->items;
    const std::string& name = fn->s;
    if (name == "collections.OrderedDict") {
      if (!a.empty()) fail("OrderedDict with constructor arguments", at);
      return make_seq(Kind::kDict, {}, at);
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4) fail(name + " needs at least 4 arguments", at);
      if (a[0]->kind != Kind::kStorage) fail(name + " without a storage", at);
      return rebuild_tensor(a[0], a[1], a[2], a[3], a[0]->storage_dtype, at);
    }
    if (name == "torch._utils._rebuild_tensor_v3") {
      if (a.size() < 7) fail(name + " needs at least 7 arguments", at);
      if (a[6]->kind != Kind::kGlobal || !dtype_globals().count(a[6]->s)) fail(name + ": unknown dtype", at);
      return rebuild_tensor(a[0], a[1], a[2], a[3], dtype_globals().at(a[6]->s), at);
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state" ||
        name == "torch.nn.parameter.Parameter") {
      if (a.empty() || a[0]->kind != Kind::kTensor) fail(name + " without a tensor", at);
      return a[0];
    }
    fail("global '" + quote_prefix(name) + "' is not callable here", at);
  }

  ValuePtr persistent(const ValuePtr& pid, size_t at) {
    if (pid->kind != Kind::kTuple || pid->items.size() < 5) fail("persistent id is not a 5-tuple", at);
    const auto& t = pid->items;
    if (t[0]->kind != Kind::kString || t[0]->s != "storage") fail("persistent id is not a storage", at);
    if (t[1]->kind != Kind::kGlobal || !storage_classes().count(t[1]->s)) fail("persistent id with an unknown storage type", at);
    if (t[2]->kind != Kind::kString) fail("persistent id without a storage key", at);
    const int64_t numel = as_int(t[4], "storage size", at);
    if (numel < 0) fail("negative storage size", at);
    const c10::ScalarType dtype = storage_classes().at(t[1]->s);
    auto it = storages_.find(t[2]->s);
    if (it != storages_.end()) return it->second;
    auto v = std::make_shared<Value>();
    v->kind = Kind::kStorage;
    v->storage_dtype = dtype;
    v->tensor = loader_(t[2]->s, dtype, numel);
    storages_[t[2]->s] = v;
    return v;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* begin_;
  const StorageLoader& loader_;
  std::string where_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<size_t, ValuePtr> memo_;
  std::map<std::string, ValuePtr> storages_;
  std::shared_ptr<Arena> arena_ = std::make_shared<Arena>();
};

}  // namespace

Value::~Value() {
  std::vector<ValuePtr> pending;
  auto adopt = [&pending](Value& v) {
    for (auto& item : v.items) pending.push_back(std::move(item));
    for (auto& [k, val] : v.entries) {
      pending.push_back(std::move(k));
      pending.push_back(std::move(val));
    }
    v.items.clear();
    v.entries.clear();
  };
  adopt(*this);
  while (!pending.empty()) {
    ValuePtr v = std::move(pending.back());
    pending.pop_back();
    if (v && v.use_count() == 1) adopt(*v);  // the last owner: empty it before it is destroyed
  }
}

ValuePtr unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::string& where) {
  Unpickler u(data, size, load_storage, where);
  return u.result(u.run());
}

}  // namespace llmc::io::pickle
