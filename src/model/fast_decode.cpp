#include "fast_decode.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include "opt_modules.h"
#include "thread_team.h"

namespace llmc::model {

namespace {

enum class Act { none, relu, gelu, gelu_tanh, silu };

Act activation_of(const std::string& name) {
  if (name == "relu") return Act::relu;
  if (name == "gelu") return Act::gelu;
  if (name == "silu" || name == "swish") return Act::silu;
  return Act::gelu_tanh;  // gelu_new, gelu_pytorch_tanh (validated by OptConfig)
}

void activate(Act a, float* y, int64_t n) {
  switch (a) {
    case Act::none: return;
    case Act::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
      return;
    case Act::gelu:
      for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * y[i] * (1.0f + std::erf(y[i] * static_cast<float>(M_SQRT1_2)));
      return;
    case Act::gelu_tanh: {
      const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
      for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * y[i] * (1.0f + std::tanh(k * (y[i] + 0.044715f * y[i] * y[i] * y[i])));
      return;
    }
    case Act::silu:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] / (1.0f + std::exp(-y[i]));
      return;
  }
}

// A float32 CPU tensor's data, or null when it is something else.
const float* f32_data(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != c10::kFloat || !t.is_contiguous()) return nullptr;
  return t.data_ptr<float>();
}

bool make_vec(const Linear& l, VecLinear& v) {
  if (!l) return false;
  if (l->bias.defined()) {
    v.bias = l->bias;
    v.b = f32_data(v.bias);
    if (v.b == nullptr) return false;
  }
  if (l->packed) {
    v.packed = l->packed;
    v.out = v.packed->out_features();
    v.in = v.packed->in_features();
    v.units = v.packed->vec_units();
    if (v.units <= 0 || v.out % v.units != 0) return false;
    v.rows_per_unit = v.out / v.units;
    v.scratch.resize(static_cast<size_t>(v.packed->vec_scratch_floats()));
    return true;
  }
  const at::Tensor& w = l->weight;
  if (!w.defined() || !w.device().is_cpu() || !w.is_contiguous() || w.dim() != 2) return false;
  v.weight = w;
  v.out = w.size(0);
  v.in = w.size(1);
  v.units = v.out;
  if (w.scalar_type() == c10::kFloat) v.w32 = w.data_ptr<float>();
  else if (w.scalar_type() == c10::kHalf) v.w16 = reinterpret_cast<const uint16_t*>(w.data_ptr<c10::Half>());
  else return false;
  return true;
}

// One Linear's share of a job: y = W x (+ b, activation) for this member's units.
struct Seg {
  VecLinear* l;
  const float* x;
  float* y;
  Act act;
};

void compute_share(const Seg& s, int member, int n) {
  VecLinear& l = *s.l;
  const int64_t u0 = l.units * member / n, u1 = l.units * (member + 1) / n;
  if (u1 <= u0) return;
  const auto& k = kernels::best_kernels();
  if (l.packed) l.packed->vec_compute(s.x, l.scratch.data(), u0, u1, s.y);
  else if (l.w32 != nullptr) k.dot32(l.w32, u0, u1, l.in, s.x, s.y);
  else k.dot16(l.w16, u0, u1, l.in, s.x, s.y);
  const int64_t r0 = u0 * l.rows_per_unit, r1 = u1 * l.rows_per_unit;
  if (l.b != nullptr) {
    for (int64_t r = r0; r < r1; ++r) s.y[r] += l.b[r];
  }
  activate(s.act, s.y + r0, r1 - r0);
}

template <size_t N>
void run_linears(ThreadTeam& team, const Seg (&segs)[N]) {
  for (const Seg& s : segs) {
    if (s.l->packed) s.l->packed->vec_prepare(s.x, s.l->scratch.data());
  }
  team.run([&](int member, int n) {
    for (const Seg& s : segs) compute_share(s, member, n);
  });
}

// LayerNorm of one row (eps 1e-5, biased variance, statistics in double); w/b null when the
// norm has no affine parameters.
void layer_norm_row(const float* x, const float* w, const float* b, int64_t n, float* y) {
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  const float inv = static_cast<float>(1.0 / std::sqrt(var + 1e-5));
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - m) * inv;
    if (w != nullptr) v = v * w[i] + b[i];
    y[i] = v;
  }
}

// s[t] <- exp(s[t] - mx) for t < len; returns their sum (the softmax's denominator).
float exp_shifted(float* s, int64_t len, float mx) {
  float sum = 0.0f;
  for (int64_t t = 0; t < len; ++t) {
    s[t] = std::exp(s[t] - mx);
    sum += s[t];
  }
  return sum;
}

// Attention of one query (heads [h0, h1) of q [heads, hd]) over positions [0, len) of the
// cache [heads, cap, hd]: softmax(q k^T) v into out [heads, hd]; scores [heads, cap] scratch.
// The scalar reference; attend_one_avx512 below is the same for hd % 16 == 0.
void attend_one_scalar(const float* q, const float* keys, const float* values, int64_t h0, int64_t h1, int64_t len,
                       int64_t cap, int64_t hd, float* scores, float* out) {
  for (int64_t h = h0; h < h1; ++h) {
    const float* qh = q + h * hd;
    const float* kh = keys + h * cap * hd;
    const float* vh = values + h * cap * hd;
    float* s = scores + h * cap;
    float mx = -INFINITY;
    for (int64_t t = 0; t < len; ++t) {
      float d = 0.0f;
      for (int64_t j = 0; j < hd; ++j) d += qh[j] * kh[t * hd + j];
      s[t] = d;
      mx = std::max(mx, d);
    }
    const float sum = exp_shifted(s, len, mx);
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < hd; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < len; ++t) acc += s[t] * inv * vh[t * hd + j];
      out[h * hd + j] = acc;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) void attend_one_avx512(const float* q, const float* keys, const float* values,
                                                          int64_t h0, int64_t h1, int64_t len, int64_t cap, int64_t hd,
                                                          float* scores, float* out) {
  const int64_t nv = hd / 16;  // vectors per head (at most 16: hd <= 256)
  for (int64_t h = h0; h < h1; ++h) {
    const float* kh = keys + h * cap * hd;
    const float* vh = values + h * cap * hd;
    float* s = scores + h * cap;
    __m512 qv[16];
    for (int64_t i = 0; i < nv; ++i) qv[i] = _mm512_loadu_ps(q + h * hd + 16 * i);
    float mx = -INFINITY;
    for (int64_t t = 0; t < len; ++t) {
      const float* kt = kh + t * hd;
      __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kt));
      for (int64_t i = 1; i < nv; ++i) acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kt + 16 * i), acc);
      const float d = _mm512_reduce_add_ps(acc);
      s[t] = d;
      mx = std::max(mx, d);
    }
    const float sum = exp_shifted(s, len, mx);
    const __m512 inv = _mm512_set1_ps(1.0f / sum);
    __m512 ov[16];
    for (int64_t i = 0; i < nv; ++i) ov[i] = _mm512_setzero_ps();
    for (int64_t t = 0; t < len; ++t) {
      const __m512 p = _mm512_mul_ps(_mm512_set1_ps(s[t]), inv);
      const float* vt = vh + t * hd;
      for (int64_t i = 0; i < nv; ++i) ov[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vt + 16 * i), ov[i]);
    }
    for (int64_t i = 0; i < nv; ++i) _mm512_storeu_ps(out + h * hd + 16 * i, ov[i]);
  }
}
#endif

using AttendFn = void (*)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*,
                          float*);

AttendFn attend_for(int64_t hd) {
#if defined(__x86_64__) && defined(__GNUC__)
  const char* forced = std::getenv("LLMC_KERNELS");
  const bool scalar = forced != nullptr && std::string(forced) == "scalar";
  if (!scalar && hd % 16 == 0 && hd <= 256 && __builtin_cpu_supports("avx512f")) return attend_one_avx512;
#endif
  return attend_one_scalar;
}

// Row `r` of an embedding table (float32 or float16) as float32.
void embedding_row(const at::Tensor& table, int64_t r, float* dst) {
  const int64_t n = table.size(1);
  if (table.scalar_type() == c10::kFloat) {
    std::memcpy(dst, table.data_ptr<float>() + r * n, static_cast<size_t>(n) * sizeof(float));
  } else {
    const auto* src = reinterpret_cast<const uint16_t*>(table.data_ptr<c10::Half>()) + r * n;
    for (int64_t i = 0; i < n; ++i) dst[i] = c10::detail::fp16_ieee_to_fp32_value(src[i]);
  }
}

bool table_ok(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.is_contiguous() && t.dim() == 2 &&
         (t.scalar_type() == c10::kFloat || t.scalar_type() == c10::kHalf);
}

// LayerNorm parameters as raw pointers (both null when not affine); false for other dtypes.
bool norm_ptrs(const LayerNorm& ln, const float** w, const float** b, std::vector<at::Tensor>& held) {
  if (!ln->weight.defined()) return !ln->bias.defined();
  *w = f32_data(ln->weight);
  *b = f32_data(ln->bias);
  held.push_back(ln->weight);
  held.push_back(ln->bias);
  return *w != nullptr && *b != nullptr;
}

}  // namespace

bool fast_decode_enabled() {
  const char* e = std::getenv("LLMC_FAST_DECODE");
  return e == nullptr || std::string(e) != "0";
}

std::unique_ptr<OptFastDecoder> OptFastDecoder::build(OptForCausalLMImpl& m, const OptConfig& c) {
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) return nullptr;
  auto d = std::unique_ptr<OptFastDecoder>(new OptFastDecoder());
  d->c_ = c;
  auto& dec = *m.model->decoder;
  d->embed_ = dec.embed_tokens->weight;
  d->positions_ = dec.embed_positions->weight;
  if (!table_ok(d->embed_) || !table_ok(d->positions_)) return nullptr;
  d->has_projections_ = static_cast<bool>(dec.project_in);
  if (d->has_projections_ && (!make_vec(dec.project_in, d->project_in_) || !make_vec(dec.project_out, d->project_out_))) {
    return nullptr;
  }
  d->has_final_ln_ = static_cast<bool>(dec.final_layer_norm);
  if (d->has_final_ln_ && !norm_ptrs(dec.final_layer_norm, &d->final_w_, &d->final_b_, d->held_)) return nullptr;
  if (!make_vec(m.lm_head, d->lm_head_)) return nullptr;
  for (auto& layer : dec.layer_list) {
    Layer l;
    auto& at = *layer->self_attn;
    if (!make_vec(at.q_proj, l.q) || !make_vec(at.k_proj, l.k) || !make_vec(at.v_proj, l.v) ||
        !make_vec(at.out_proj, l.o) || !make_vec(layer->fc1, l.fc1) || !make_vec(layer->fc2, l.fc2) ||
        !norm_ptrs(layer->self_attn_layer_norm, &l.ln1_w, &l.ln1_b, d->held_) ||
        !norm_ptrs(layer->final_layer_norm, &l.ln2_w, &l.ln2_b, d->held_)) {
      return nullptr;
    }
    d->layers_.push_back(std::move(l));
  }
  const auto H = static_cast<size_t>(c.hidden_size), F = static_cast<size_t>(c.ffn_dim);
  for (auto* b : {&d->x_, &d->h_, &d->q_, &d->k_, &d->v_, &d->a_, &d->o_}) b->resize(H);
  d->f_.resize(F);
  d->attend_ = attend_for(c.head_dim());
  d->e_.resize(static_cast<size_t>(std::max(c.word_embed_proj_dim, c.hidden_size)));
  return d;
}

bool OptFastDecoder::accepts(const KVCache& cache, int64_t past) const {
  if (past == 0) return true;
  const int64_t heads = c_.num_attention_heads, hd = c_.head_dim();
  if (cache.keys.size() != layers_.size() || cache.values.size() != layers_.size()) return false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const at::Tensor* t : {&cache.keys[i], &cache.values[i]}) {
      if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != c10::kFloat || t->dim() != 4 || t->size(0) != 1 ||
          t->size(1) != heads || t->size(2) != past || t->size(3) != hd) {
        return false;
      }
    }
  }
  return true;
}

at::Tensor OptFastDecoder::step(int64_t token, int64_t past, KVCache& cache) {
  const std::shared_ptr<ThreadTeam> held = ThreadTeam::get(at::get_num_threads());
  ThreadTeam& team = *held;
  const int64_t H = c_.hidden_size, heads = c_.num_attention_heads, hd = c_.head_dim();
  const int64_t len = past + 1;
  const size_t L = layers_.size();

  // The cache's storage: continue in place, or (first step, or full) copy into a larger one.
  cache.keys.resize(L);
  cache.values.resize(L);
  cache.key_store.resize(L);
  cache.value_store.resize(L);
  for (size_t i = 0; i < L; ++i) {
    auto in_place = [&](const at::Tensor& store, const at::Tensor& view) {
      return store.defined() && store.size(2) >= len &&
             (past == 0 || (view.defined() && view.data_ptr() == store.data_ptr() && view.size(2) == past));
    };
    for (int kv = 0; kv < 2; ++kv) {
      at::Tensor& store = kv == 0 ? cache.key_store[i] : cache.value_store[i];
      at::Tensor& view = kv == 0 ? cache.keys[i] : cache.values[i];
      if (in_place(store, view)) continue;
      const int64_t cap = std::min<int64_t>(c_.max_position_embeddings, std::max<int64_t>(2 * len, 64));
      at::Tensor fresh = at::empty({1, heads, std::max(cap, len), hd}, at::TensorOptions().dtype(c10::kFloat));
      if (past > 0) fresh.narrow(2, 0, past).copy_(view);
      store = fresh;
    }
  }
  const int64_t cap = cache.key_store[0].size(2);
  if (scores_.size() < static_cast<size_t>(heads * cap)) scores_.resize(static_cast<size_t>(heads * cap));

  // Embedding (+ project_in) and the position (offset 2).
  float* x = x_.data();
  if (has_projections_) {
    embedding_row(embed_, token, e_.data());
    run_linears(team, {Seg{&project_in_, e_.data(), x, Act::none}});
  } else {
    embedding_row(embed_, token, x);
  }
  embedding_row(positions_, past + 2, h_.data());
  for (int64_t i = 0; i < H; ++i) x[i] += h_[static_cast<size_t>(i)];

  const bool pre_ln = c_.do_layer_norm_before;
  const Act act = activation_of(c_.activation_function);
  const float scaling = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  float *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data(), *a = a_.data(), *o = o_.data(), *f = f_.data();
  for (size_t li = 0; li < L; ++li) {
    Layer& l = layers_[li];
    const float* in = x;
    if (pre_ln) {
      layer_norm_row(x, l.ln1_w, l.ln1_b, H, h);
      in = h;
    }
    run_linears(team, {Seg{&l.q, in, q, Act::none}, Seg{&l.k, in, k, Act::none}, Seg{&l.v, in, v, Act::none}});
    for (int64_t i = 0; i < H; ++i) q[i] *= scaling;
    float* ks = cache.key_store[li].data_ptr<float>();
    float* vs = cache.value_store[li].data_ptr<float>();
    for (int64_t hh = 0; hh < heads; ++hh) {
      std::memcpy(ks + (hh * cap + past) * hd, k + hh * hd, static_cast<size_t>(hd) * sizeof(float));
      std::memcpy(vs + (hh * cap + past) * hd, v + hh * hd, static_cast<size_t>(hd) * sizeof(float));
    }
    float* sc = scores_.data();
    team.run([&](int member, int n) {
      attend_(q, ks, vs, heads * member / n, heads * (member + 1) / n, len, cap, hd, sc, a);
    });
    run_linears(team, {Seg{&l.o, a, o, Act::none}});
    for (int64_t i = 0; i < H; ++i) x[i] += o[i];
    if (!pre_ln) layer_norm_row(x, l.ln1_w, l.ln1_b, H, x);
    in = x;
    if (pre_ln) {
      layer_norm_row(x, l.ln2_w, l.ln2_b, H, h);
      in = h;
    }
    run_linears(team, {Seg{&l.fc1, in, f, act}});
    run_linears(team, {Seg{&l.fc2, f, o, Act::none}});
    for (int64_t i = 0; i < H; ++i) x[i] += o[i];
    if (!pre_ln) layer_norm_row(x, l.ln2_w, l.ln2_b, H, x);
  }
  for (size_t li = 0; li < L; ++li) {
    cache.keys[li] = cache.key_store[li].narrow(2, 0, len);
    cache.values[li] = cache.value_store[li].narrow(2, 0, len);
  }
  const float* last = x;
  if (has_final_ln_) {
    layer_norm_row(x, final_w_, final_b_, H, h);
    last = h;
  }
  if (has_projections_) {
    run_linears(team, {Seg{&project_out_, last, e_.data(), Act::none}});
    last = e_.data();
  }
  at::Tensor logits = at::empty({1, 1, lm_head_.out}, at::TensorOptions().dtype(c10::kFloat));
  run_linears(team, {Seg{&lm_head_, last, logits.data_ptr<float>(), Act::none}});
  team.park();
  return logits;
}

}  // namespace llmc::model
