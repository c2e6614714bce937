#include "opt_modules.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros.h>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <limits>

#include "kernels/kernels.h"
#include "packed_common.h"

namespace llmc::model {

namespace {

at::Scalar lowest(c10::ScalarType t) {
  switch (t) {
    case c10::kBFloat16: return at::Scalar(static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest()));
    case c10::kHalf: return at::Scalar(static_cast<double>(std::numeric_limits<c10::Half>::lowest()));
    case c10::kDouble: return at::Scalar(std::numeric_limits<double>::lowest());
    default: return at::Scalar(static_cast<double>(std::numeric_limits<float>::lowest()));
  }
}

at::Tensor activate(const at::Tensor& x, const std::string& name) {
  if (name == "relu") return at::relu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "silu" || name == "swish") return at::silu(x);
  return at::gelu(x, "tanh");  // gelu_new, gelu_pytorch_tanh (validated by OptConfig)
}

// y = x W^T for float32 or float16 W [out, in] and a few rows of x (float32).
at::Tensor dense_matvec(const at::Tensor& weight, const at::Tensor& x) {
  const int64_t out = weight.size(0), in = weight.size(1);
  FlatInput f = flatten_input(x, in, out);
  at::Tensor w = weight.contiguous();
  at::Tensor y = at::empty({f.x2.size(0), out}, f.x2.options());
  const auto& k = kernels::best_kernels();
  const bool half = w.scalar_type() == c10::kHalf;
  for (int64_t r = 0; r < f.x2.size(0); ++r) {
    const float* xr = f.x2.data_ptr<float>() + r * in;
    float* yr = y.data_ptr<float>() + r * out;
    parallel_rows(out, [&](int64_t a, int64_t b) {
      if (half) k.dot16(reinterpret_cast<const uint16_t*>(w.data_ptr<c10::Half>()), a, b, in, xr, yr);
      else k.dot32(w.data_ptr<float>(), a, b, in, xr, yr);
    });
  }
  return y.reshape(f.out_shape);
}

// y = x W^T for longer inputs: float32 W goes to BLAS directly; float16 W is converted tile by
// tile (never a whole float32 copy).
at::Tensor tiled_linear(const at::Tensor& weight, const at::Tensor& x) {
  if (weight.scalar_type() == c10::kFloat) return at::linear(x, weight);
  const int64_t out = weight.size(0), in = weight.size(1);
  FlatInput f = flatten_input(x, in, out);
  at::Tensor w = weight.contiguous();
  const auto* wp = reinterpret_cast<const uint16_t*>(w.data_ptr<c10::Half>());
  const auto half = at::TensorOptions().dtype(c10::kHalf);
  const auto f32 = at::TensorOptions().dtype(c10::kFloat);
  at::Tensor y = tiled_matmul(f.x2, out, in, [&](int64_t r0, int64_t r1, float* dst) {
    // ATen's vectorised half -> float copy (an element-by-element loop made a float16 base
    // model's perplexity windows slower than an NF4 model's).
    const int64_t n = (r1 - r0) * in;
    at::from_blob(dst, {n}, f32).copy_(at::from_blob(const_cast<uint16_t*>(wp) + r0 * in, {n}, half));
  });
  return y.reshape(f.out_shape);
}

}  // namespace

LinearImpl::LinearImpl(at::Tensor w, at::Tensor b) {
  weight = register_parameter("weight", std::move(w), /*requires_grad=*/false);
  if (b.defined()) bias = register_parameter("bias", std::move(b), /*requires_grad=*/false);
}

LinearImpl::LinearImpl(std::shared_ptr<PackedWeight> p, at::Tensor b) : packed(std::move(p)) {
  if (b.defined()) bias = register_parameter("bias", std::move(b), /*requires_grad=*/false);
}

void LinearImpl::replace(std::shared_ptr<PackedWeight> p, at::Tensor w) {
  if (p) {
    if (weight.defined()) {
      parameters_.erase("weight");
      weight = at::Tensor();
    }
    packed = std::move(p);
  } else if (weight.defined()) {
    weight.set_data(w);
  } else {
    weight = register_parameter("weight", std::move(w), /*requires_grad=*/false);
    packed.reset();
  }
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  if (observer) observer(x);
  if (!packed) {
    // Batch-1 decode on the CPU: streaming matrix-vector kernels read the weights at memory
    // speed, where BLAS's small-m path does not. float16 weights (kept 16-bit in quantized
    // models) are converted on the fly, also in tiles for longer inputs.
    const bool cpu_f32 = weight.device().is_cpu() && x.scalar_type() == c10::kFloat && !at::GradMode::is_enabled();
    const bool half = cpu_f32 && weight.scalar_type() == c10::kHalf;
    if (cpu_f32 && (weight.scalar_type() == c10::kFloat || half)) {
      at::Tensor y = x.numel() / x.size(-1) <= 4 ? dense_matvec(weight, x) : tiled_linear(weight, x);
      return bias.defined() ? y + bias.to(y.scalar_type()) : y;
    }
    return at::linear(x, weight, bias);
  }
  at::Tensor y = packed->matmul(x);
  return bias.defined() ? y + bias : y;
}

EmbeddingImpl::EmbeddingImpl(at::Tensor w, c10::ScalarType compute) : compute_dtype(compute) {
  weight = register_parameter("weight", std::move(w), false);
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids).to(compute_dtype); }

LayerNormImpl::LayerNormImpl(at::Tensor w, at::Tensor b, int64_t d) : dim(d) {
  if (w.defined()) weight = register_parameter("weight", std::move(w), false);
  if (b.defined()) bias = register_parameter("bias", std::move(b), false);
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) { return at::layer_norm(x, {dim}, weight, bias, 1e-5); }

OptAttentionImpl::OptAttentionImpl(Linear k, Linear v, Linear q, Linear out, int64_t heads, double attn_dropout)
    : num_heads(heads), attention_dropout(attn_dropout) {
  // Registration order as in transformers: k, v, q, out.
  k_proj = register_module("k_proj", std::move(k));
  v_proj = register_module("v_proj", std::move(v));
  q_proj = register_module("q_proj", std::move(q));
  out_proj = register_module("out_proj", std::move(out));
}

at::Tensor OptAttentionImpl::forward(const at::Tensor& h, const at::Tensor& mask, at::Tensor* k_cache,
                                     at::Tensor* v_cache) {
  const int64_t B = h.size(0), T = h.size(1), H = h.size(2);
  const int64_t hd = H / num_heads;
  const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
  // q is scaled after its bias, before QK^T (docs/formats.md §1.2).
  auto split = [&](const at::Tensor& x) { return x.view({B, T, num_heads, hd}).transpose(1, 2); };
  at::Tensor q = split(q_proj->forward(h) * scaling);
  at::Tensor k = split(k_proj->forward(h));
  at::Tensor v = split(v_proj->forward(h));
  if (k_cache != nullptr) {
    if (k_cache->defined()) {
      k = at::cat({*k_cache, k}, 2);
      v = at::cat({*v_cache, v}, 2);
    }
    *k_cache = k;
    *v_cache = v;
  }
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) + mask;
  // float16/bfloat16 scores are normalised in float32 (as transformers); float32/float64 as they are.
  const auto st = scores.scalar_type();
  at::Tensor probs = at::softmax(scores, -1, st == c10::kDouble ? c10::kDouble : c10::kFloat).to(q.scalar_type());
  if (is_training() && attention_dropout > 0.0) probs = at::dropout(probs, attention_dropout, true);
  at::Tensor o = at::matmul(probs, v).transpose(1, 2).reshape({B, T, H});
  return out_proj->forward(o);
}

OptDecoderLayerImpl::OptDecoderLayerImpl(OptAttention attn, LayerNorm attn_ln, Linear f1, Linear f2,
                                         LayerNorm final_ln, const OptConfig& config)
    : pre_ln(config.do_layer_norm_before), activation(config.activation_function), dropout(config.dropout) {
  self_attn = register_module("self_attn", std::move(attn));
  self_attn_layer_norm = register_module("self_attn_layer_norm", std::move(attn_ln));
  fc1 = register_module("fc1", std::move(f1));
  fc2 = register_module("fc2", std::move(f2));
  final_layer_norm = register_module("final_layer_norm", std::move(final_ln));
}

at::Tensor OptDecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask, at::Tensor* k_cache,
                                        at::Tensor* v_cache) {
  at::Tensor residual = x;
  at::Tensor h = pre_ln ? self_attn_layer_norm->forward(x) : x;
  // Dropout as transformers places it: on the attention output and on fc2's output, before
  // each residual sum; only in training mode (the default generator of the device draws it).
  const bool drop = is_training() && dropout > 0.0;
  at::Tensor attn = self_attn->forward(h, mask, k_cache, v_cache);
  h = residual + (drop ? at::dropout(attn, dropout, true) : attn);
  if (!pre_ln) h = self_attn_layer_norm->forward(h);
  residual = h;
  if (pre_ln) h = final_layer_norm->forward(h);
  at::Tensor ffn = fc2->forward(activate(fc1->forward(h), activation));
  h = residual + (drop ? at::dropout(ffn, dropout, true) : ffn);
  if (!pre_ln) h = final_layer_norm->forward(h);
  return h;
}

OptDecoderImpl::OptDecoderImpl(OptDecoderParts parts, const OptConfig& config) {
  embed_tokens = register_module("embed_tokens", parts.embed_tokens);
  embed_positions = register_module("embed_positions", parts.embed_positions);
  if (parts.project_out) project_out = register_module("project_out", parts.project_out);
  if (parts.project_in) project_in = register_module("project_in", parts.project_in);
  if (parts.final_layer_norm) final_layer_norm = register_module("final_layer_norm", parts.final_layer_norm);
  layers = register_module("layers", torch::nn::ModuleList());
  for (auto& layer : parts.layers) {
    layers->push_back(layer);
    layer_list.push_back(layer);
  }
}

std::pair<at::Tensor, at::Tensor> OptDecoderImpl::embed(const at::Tensor& ids, const at::Tensor& attention_mask,
                                                         int64_t past) {
  const int64_t T = ids.size(1);
  const int64_t S = past + T;
  const c10::ScalarType dtype = embed_tokens->compute_dtype;
  const auto long_opts = at::TensorOptions().dtype(c10::kLong).device(ids.device());
  at::Tensor mask_l = attention_mask.to(c10::kLong);
  // Positions from the mask (left padding keeps the first real token at 0), offset 2.
  at::Tensor positions = (at::cumsum(mask_l, 1) * mask_l - 1).slice(1, past, S) + 2;

  at::Tensor h = embed_tokens->forward(ids);
  if (project_in) h = project_in->forward(h);
  h = h + embed_positions->forward(positions);

  // Additive mask [B, 1, T, S]: lowest value where key j is in the future or padding.
  at::Tensor q_pos = at::arange(past, S, long_opts).unsqueeze(1);
  at::Tensor k_pos = at::arange(0, S, long_opts).unsqueeze(0);
  at::Tensor allowed = k_pos.le(q_pos).unsqueeze(0).unsqueeze(0).logical_and(mask_l.ne(0).unsqueeze(1).unsqueeze(2));
  at::Tensor mask = at::zeros(allowed.sizes(), h.options().dtype(dtype)).masked_fill(allowed.logical_not(), lowest(dtype));
  return {h, mask};
}

at::Tensor OptDecoderImpl::forward(const at::Tensor& ids, const at::Tensor& attention_mask,
                                   std::vector<at::Tensor>* k_cache, std::vector<at::Tensor>* v_cache, int64_t past) {
  auto [h, mask] = embed(ids, attention_mask, past);
  for (size_t i = 0; i < layer_list.size(); ++i) {
    at::Tensor* kc = k_cache != nullptr ? &(*k_cache)[i] : nullptr;
    at::Tensor* vc = v_cache != nullptr ? &(*v_cache)[i] : nullptr;
    h = layer_list[i]->forward(h, mask, kc, vc);
  }
  if (final_layer_norm) h = final_layer_norm->forward(h);
  if (project_out) h = project_out->forward(h);
  return h;
}

OptModelImpl::OptModelImpl(OptDecoder d) { decoder = register_module("decoder", std::move(d)); }

OptForCausalLMImpl::OptForCausalLMImpl(OptModel m, Linear head) {
  model = register_module("model", std::move(m));
  lm_head = register_module("lm_head", std::move(head));
}

}  // namespace llmc::model
