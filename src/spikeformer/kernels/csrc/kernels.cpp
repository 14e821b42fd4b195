// CPU kernels of spikeformer.kernels.cpu (built on first use by torch.utils.cpp_extension).
//
// 1. Multi-step LIF/IF (forward and backward): one pass over [T, N] with the membrane kept in a register, instead of
//    several tensor operations per time step. Same recurrence and the same float32 operation order as
//    spikeformer.functional.fused (the reference), so spikes are identical:
//        h_t = a v_{t-1} + b x_t (+ c)      s_t = [h_t >= theta]
//        v_t = h_t - theta s_t (soft)      v_t = h_t (1 - s_t) + v_reset s_t (hard)
// 2. Event-driven products for inputs that are mostly zero (spikes, sums of spikes): only the non-zero inputs touch
//    the weights, so the work scales with the firing rate. out[m, :] = bias + sum_{k: x[m,k] != 0} x[m,k] W^T[k, :].
//    A 3x3 / stride 1 / padding 1 convolution is the same product over the 9 shifted neighbours (weights laid out as
//    [(dy, dx, c_in), c_out]).
// 3. int8 helpers (spikeformer.runtime.int8): exact float -> int8 conversion, im2col, dequantization epilogue.
// 4. Max-pooling of NCHW maps (PyTorch's NCHW CPU max-pool is several times slower here), and of channels-last rows
//    (an int8 product's int32 accumulators before they are scaled, an int8 convolution's float32 output).
// 5. Spikformer's spiking self-attention after one int8 Q/K/V product: neurons, both products and the attention
//    neuron in one pass per (sample, head).

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int64_t NB = 64;  // output columns kept in registers while the non-zero inputs stream by

// Non-zero entries of each row of x [M, K]: idx[m * K + j], val[m * K + j] for j < nnz[m].
void row_events(const float* x, int64_t M, int64_t K, int32_t* idx, float* val, int32_t* nnz) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * K;
    int32_t* ri = idx + m * K;
    float* rv = val + m * K;
    int32_t n = 0;
    for (int64_t k = 0; k < K; ++k) {
      const float v = row[k];
      if (v != 0.0f) {
        ri[n] = static_cast<int32_t>(k);
        rv[n] = v;
        ++n;
      }
    }
    nnz[m] = n;
  }
}

// out[m, n0:n0+NB] = bias + sum_j val[j] * wt[idx[j], n0:n0+NB] for one row's event list.
inline void accumulate_block(const int32_t* idx, const float* val, int32_t n, const float* wt, int64_t N, int64_t n0,
                             int64_t nb, const float* bias, float* out) {
#ifdef __AVX512F__
  // four 16-float accumulators stay in registers; a partial block masks its last vectors
  __mmask16 mk[4];
  for (int q = 0; q < 4; ++q) {
    const int64_t left = nb - 16 * q;
    mk[q] = left >= 16 ? static_cast<__mmask16>(0xFFFF) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1u);
  }
  __m512 a0 = bias ? _mm512_maskz_loadu_ps(mk[0], bias + n0) : _mm512_setzero_ps();
  __m512 a1 = bias ? _mm512_maskz_loadu_ps(mk[1], bias + n0 + 16) : _mm512_setzero_ps();
  __m512 a2 = bias ? _mm512_maskz_loadu_ps(mk[2], bias + n0 + 32) : _mm512_setzero_ps();
  __m512 a3 = bias ? _mm512_maskz_loadu_ps(mk[3], bias + n0 + 48) : _mm512_setzero_ps();
  if (nb == NB) {
    for (int32_t j = 0; j < n; ++j) {
      const float* w = wt + static_cast<int64_t>(idx[j]) * N + n0;
      const __m512 v = _mm512_set1_ps(val[j]);
      a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(w), a0);
      a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + 16), a1);
      a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + 32), a2);
      a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + 48), a3);
    }
  } else {
    for (int32_t j = 0; j < n; ++j) {
      const float* w = wt + static_cast<int64_t>(idx[j]) * N + n0;
      const __m512 v = _mm512_set1_ps(val[j]);
      a0 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk[0], w), a0);
      a1 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk[1], w + 16), a1);
      a2 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk[2], w + 32), a2);
      a3 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk[3], w + 48), a3);
    }
  }
  _mm512_mask_storeu_ps(out + n0, mk[0], a0);
  _mm512_mask_storeu_ps(out + n0 + 16, mk[1], a1);
  _mm512_mask_storeu_ps(out + n0 + 32, mk[2], a2);
  _mm512_mask_storeu_ps(out + n0 + 48, mk[3], a3);
  return;
#endif
  float acc[NB];
  for (int64_t i = 0; i < nb; ++i) acc[i] = bias != nullptr ? bias[n0 + i] : 0.0f;
  for (int32_t j = 0; j < n; ++j) {
    const float* w = wt + static_cast<int64_t>(idx[j]) * N + n0;
    const float v = val[j];
    for (int64_t i = 0; i < nb; ++i) acc[i] += v * w[i];
  }
  for (int64_t i = 0; i < nb; ++i) out[n0 + i] = acc[i];
}

}  // namespace

// x [M, K] float32 (mostly zeros), wt [K, N] float32 (the transposed weight), bias [N] or empty -> [M, N].
torch::Tensor event_linear(torch::Tensor x, torch::Tensor wt, torch::Tensor bias) {
  TORCH_CHECK(x.dim() == 2 && wt.dim() == 2 && x.size(1) == wt.size(0), "event_linear: shapes [M,K] x [K,N]");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && wt.scalar_type() == torch::kFloat32, "event_linear: float32");
  x = x.contiguous();
  wt = wt.contiguous();
  const int64_t M = x.size(0), K = x.size(1), N = wt.size(1);
  auto out = torch::empty({M, N}, x.options());
  auto idx = torch::empty({M, K}, x.options().dtype(torch::kInt32));
  auto val = torch::empty({M, K}, x.options());
  auto nnz = torch::empty({M}, x.options().dtype(torch::kInt32));
  row_events(x.data_ptr<float>(), M, K, idx.data_ptr<int32_t>(), val.data_ptr<float>(), nnz.data_ptr<int32_t>());
  const float* b = bias.numel() ? bias.contiguous().data_ptr<float>() : nullptr;
  const int32_t* pi = idx.data_ptr<int32_t>();
  const float* pv = val.data_ptr<float>();
  const int32_t* pn = nnz.data_ptr<int32_t>();
  const float* pw = wt.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int64_t blocks = (N + NB - 1) / NB;
  // column block outer: its slice of W^T (K x 64 floats) stays in cache while every row streams past it
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t nbk = 0; nbk < blocks; ++nbk) {
    for (int64_t m = 0; m < M; ++m) {
      const int64_t n0 = nbk * NB;
      accumulate_block(pi + m * K, pv + m * K, pn[m], pw, N, n0, std::min(NB, N - n0), b, po + m * N);
    }
  }
  return out;
}

// x [B, C, H, W] float32 (mostly zeros), wt [9 * C, O] ((dy, dx, c) major), bias [O] or empty -> [B, O, H, W];
// 3x3 kernel, stride 1, zero padding 1.
torch::Tensor event_conv3x3(torch::Tensor x, torch::Tensor wt, torch::Tensor bias) {
  TORCH_CHECK(x.dim() == 4 && wt.dim() == 2 && wt.size(0) == 9 * x.size(1), "event_conv3x3: shapes [B,C,H,W], [9C,O]");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && wt.scalar_type() == torch::kFloat32, "event_conv3x3: float32");
  x = x.contiguous();
  wt = wt.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = wt.size(1);
  const int64_t HW = H * W, P = B * HW;
  // events of every input pixel (channel index and value), channels in increasing order
  auto idx = torch::empty({P, C}, x.options().dtype(torch::kInt32));
  auto val = torch::empty({P, C}, x.options());
  auto nnz = torch::zeros({P}, x.options().dtype(torch::kInt32));
  int32_t* pi = idx.data_ptr<int32_t>();
  float* pv = val.data_ptr<float>();
  int32_t* pn = nnz.data_ptr<int32_t>();
  const float* px = x.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t bb = 0; bb < B; ++bb) {
    for (int64_t c = 0; c < C; ++c) {
      const float* plane = px + (bb * C + c) * HW;
      for (int64_t q = 0; q < HW; ++q) {
        const float v = plane[q];
        if (v != 0.0f) {
          const int64_t pix = bb * HW + q;
          const int32_t j = pn[pix]++;
          pi[pix * C + j] = static_cast<int32_t>(c);
          pv[pix * C + j] = v;
        }
      }
    }
  }
  auto out = torch::empty({B, O, H, W}, x.options());
  const float* b = bias.numel() ? bias.contiguous().data_ptr<float>() : nullptr;
  const float* pw = wt.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int64_t blocks = (O + NB - 1) / NB;
  constexpr int64_t TILE = 32;  // output pixels of one image row-run whose event lists are gathered together
  const int64_t tiles_per_image = (HW + TILE - 1) / TILE;
#pragma omp parallel
  {
    std::vector<int32_t> gi(TILE * 9 * C);
    std::vector<float> gv(TILE * 9 * C);
    std::vector<float> buf(TILE * O);  // [pixel, O] results of the tile, written out as [O, pixel]
    int32_t gn[TILE];
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < B * tiles_per_image; ++tile) {
      const int64_t bb = tile / tiles_per_image;
      const int64_t q0 = (tile % tiles_per_image) * TILE, q1 = std::min(HW, q0 + TILE);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t y = q / W, xx = q % W;
        int32_t* li = gi.data() + (q - q0) * 9 * C;
        float* lv = gv.data() + (q - q0) * 9 * C;
        int32_t n = 0;
        for (int64_t dy = 0; dy < 3; ++dy) {
          const int64_t sy = y + dy - 1;
          if (sy < 0 || sy >= H) continue;
          for (int64_t dx = 0; dx < 3; ++dx) {
            const int64_t sx = xx + dx - 1;
            if (sx < 0 || sx >= W) continue;
            const int64_t src = bb * HW + sy * W + sx;
            const int32_t base = static_cast<int32_t>((dy * 3 + dx) * C);
            const int32_t* qi = pi + src * C;
            const float* qv = pv + src * C;
            for (int32_t j = 0; j < pn[src]; ++j) {
              li[n] = base + qi[j];
              lv[n] = qv[j];
              ++n;
            }
          }
        }
        gn[q - q0] = n;
      }
      for (int64_t nbk = 0; nbk < blocks; ++nbk) {
        const int64_t n0 = nbk * NB;
        for (int64_t q = q0; q < q1; ++q)
          accumulate_block(gi.data() + (q - q0) * 9 * C, gv.data() + (q - q0) * 9 * C, gn[q - q0], pw, O, n0,
                           std::min(NB, O - n0), b, buf.data() + (q - q0) * O);
      }
      for (int64_t o = 0; o < O; ++o) {
        float* dst = po + (bb * O + o) * HW;
        for (int64_t q = q0; q < q1; ++q) dst[q] = buf[(q - q0) * O + o];
      }
    }
  }
  return out;
}

// float -> T for the kernels' outputs. bfloat16: round to nearest even with integer operations only (vectorises, unlike
// c10's conversion with its NaN branch); a NaN input may come out as another NaN or infinity, never as a finite number.
template <typename T>
inline T to_out(float f) {
  return static_cast<T>(f);
}
template <>
inline at::BFloat16 to_out<at::BFloat16>(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7FFFu + ((u >> 16) & 1u);
  return at::BFloat16(static_cast<uint16_t>(u >> 16), at::BFloat16::from_bits());
}

// Multi-step LIF/IF forward. x [T, N] (float32 or bfloat16) -> (s [T, N] in x's dtype, v_T [N], h [T, N] float32
// when keep_h else empty). The membrane is float32 whatever x's dtype (bf16 spikes are exact).
// DEQ: x holds the int32 accumulators of an int8 product, the input being x * sc[c] + bi[c] per channel (the innermost
// axis, C channels), rounded as the dequantize kernel rounds it.
template <typename T, typename O = T, bool DEQ = false>
static void lif_forward_impl(const T* px, const float* pv0, O* ps, float* pv, float* ph, int64_t Tn, int64_t N,
                             bool scalar_v0, float fa, float fb, float fc, float ft, bool soft, float fr,
                             const float* sc = nullptr, const float* bi = nullptr, int64_t C = 1) {
  const bool add_c = fc != 0.0f;
  // neurons in chunks (membrane of a chunk stays in L1), time outer, neurons inner (vectorised)
  constexpr int64_t CH = 512;
  const int64_t chunks = (N + CH - 1) / CH;
#pragma omp parallel for schedule(static)
  for (int64_t ck = 0; ck < chunks; ++ck) {
    const int64_t n0 = ck * CH, len = std::min(N - n0, CH);
    alignas(64) float vm[CH];
    alignas(64) float s_ch[DEQ ? CH : 1];
    alignas(64) float b_ch[DEQ ? CH : 1];
    int64_t c = DEQ ? n0 % C : 0;  // the channel of neuron n0 + i, stepped without a division per neuron
    for (int64_t i = 0; i < len; ++i) {
      vm[i] = scalar_v0 ? pv0[0] : pv0[n0 + i];
      if constexpr (DEQ) {
        s_ch[i] = sc[c];
        b_ch[i] = bi ? bi[c] : 0.0f;
        if (++c == C) c = 0;
      }
    }
    for (int64_t t = 0; t < Tn; ++t) {
      const T* xt = px + t * N + n0;
      O* st = ps + t * N + n0;
      float* ht = ph ? ph + t * N + n0 : nullptr;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        float xv = static_cast<float>(xt[i]);
        if constexpr (DEQ) {
          xv = xv * s_ch[i];
          if (bi) xv = xv + b_ch[i];
        }
        float hm = vm[i] * fa + xv * fb;
        if (add_c) hm = hm + fc;
        const float sp = (hm - ft) >= 0.0f ? 1.0f : 0.0f;
        vm[i] = soft ? hm - ft * sp : hm * (1.0f - sp) + fr * sp;
        st[i] = to_out<O>(sp);
        if (ht) ht[i] = hm;
      }
    }
    for (int64_t i = 0; i < len; ++i) pv[n0 + i] = vm[i];
  }
}

std::vector<torch::Tensor> lif_forward(torch::Tensor x, torch::Tensor v0, double a, double b, double c, double theta,
                                       bool soft, double v_reset, bool keep_h) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16,
              "lif_forward: x float32 or bfloat16");
  TORCH_CHECK(v0.scalar_type() == torch::kFloat32, "lif_forward: v0 float32");
  x = x.contiguous();
  v0 = v0.contiguous();
  const int64_t T = x.size(0), N = x.numel() / std::max<int64_t>(T, 1);
  TORCH_CHECK(v0.numel() == N || v0.numel() == 1, "lif_forward: v0 must have one value per neuron, or one for all");
  const bool scalar_v0 = v0.numel() == 1 && N != 1;
  auto f32 = x.options().dtype(torch::kFloat32);
  auto s = torch::empty_like(x);
  auto v = torch::empty({N}, f32);
  auto h = keep_h ? torch::empty(x.sizes(), f32) : torch::empty({0}, f32);
  float* ph = keep_h ? h.data_ptr<float>() : nullptr;
  if (x.scalar_type() == torch::kFloat32)
    lif_forward_impl<float>(x.data_ptr<float>(), v0.data_ptr<float>(), s.data_ptr<float>(), v.data_ptr<float>(), ph,
                            T, N, scalar_v0, a, b, c, theta, soft, v_reset);
  else
    lif_forward_impl<at::BFloat16>(x.data_ptr<at::BFloat16>(), v0.data_ptr<float>(), s.data_ptr<at::BFloat16>(),
                                   v.data_ptr<float>(), ph, T, N, scalar_v0, a, b, c, theta, soft, v_reset);
  return {s, v.view(x.sizes().slice(1)), h};
}

// Inference for a neuron whose spikes go only to an int8 product (spikeformer.runtime.int8): float32 x -> (int8
// spikes [T, N], v_T [N]); the product then reads them without a float -> int8 conversion pass.
std::vector<torch::Tensor> lif_forward_int8(torch::Tensor x, torch::Tensor v0, double a, double b, double c,
                                            double theta, bool soft, double v_reset) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && v0.scalar_type() == torch::kFloat32, "lif_forward_int8: float32");
  x = x.contiguous();
  v0 = v0.contiguous();
  const int64_t T = x.size(0), N = x.numel() / std::max<int64_t>(T, 1);
  TORCH_CHECK(v0.numel() == N || v0.numel() == 1, "lif_forward_int8: v0 must have one value per neuron, or one for all");
  auto s = torch::empty(x.sizes(), x.options().dtype(torch::kInt8));
  auto v = torch::empty({N}, x.options());
  lif_forward_impl<float, int8_t>(x.data_ptr<float>(), v0.data_ptr<float>(), s.data_ptr<int8_t>(), v.data_ptr<float>(),
                                  nullptr, T, N, v0.numel() == 1 && N != 1, a, b, c, theta, soft, v_reset);
  return {s, v.view(x.sizes().slice(1))};
}

// Inference of a neuron fed by an int8 product (spikeformer.runtime.int8): acc int32 [T, N] with the channel the
// innermost axis (N = rows * C) -> spikes (float32 or int8) of x = acc * scale[c] + bias[c]. One pass instead of
// dequantize (writing float32) and lif_forward (reading it back).
std::vector<torch::Tensor> lif_forward_dequant(torch::Tensor acc, torch::Tensor scale, torch::Tensor bias,
                                               torch::Tensor v0, double a, double b, double c, double theta, bool soft,
                                               double v_reset, bool int8_spikes) {
  TORCH_CHECK(acc.scalar_type() == torch::kInt32 && scale.scalar_type() == torch::kFloat32 &&
                  v0.scalar_type() == torch::kFloat32,
              "lif_forward_dequant: int32 accumulators, float32 scales and v0");
  acc = acc.contiguous();
  scale = scale.contiguous();
  v0 = v0.contiguous();
  const int64_t T = acc.size(0), N = acc.numel() / std::max<int64_t>(T, 1), C = scale.numel();
  TORCH_CHECK(acc.size(-1) == C && (bias.numel() == 0 || bias.numel() == C), "lif_forward_dequant: one scale per channel");
  TORCH_CHECK(v0.numel() == N || v0.numel() == 1, "lif_forward_dequant: v0 must have one value per neuron, or one");
  const float* pb = bias.numel() ? bias.contiguous().data_ptr<float>() : nullptr;
  auto f32 = acc.options().dtype(torch::kFloat32);
  auto s = torch::empty(acc.sizes(), acc.options().dtype(int8_spikes ? torch::kInt8 : torch::kFloat32));
  auto v = torch::empty({N}, f32);
  const bool scalar_v0 = v0.numel() == 1 && N != 1;
  if (int8_spikes)
    lif_forward_impl<int32_t, int8_t, true>(acc.data_ptr<int32_t>(), v0.data_ptr<float>(), s.data_ptr<int8_t>(),
                                            v.data_ptr<float>(), nullptr, T, N, scalar_v0, a, b, c, theta, soft,
                                            v_reset, scale.data_ptr<float>(), pb, C);
  else
    lif_forward_impl<int32_t, float, true>(acc.data_ptr<int32_t>(), v0.data_ptr<float>(), s.data_ptr<float>(),
                                           v.data_ptr<float>(), nullptr, T, N, scalar_v0, a, b, c, theta, soft,
                                           v_reset, scale.data_ptr<float>(), pb, C);
  return {s, v.view(acc.sizes().slice(1))};
}

namespace {
constexpr float kPi = 3.14159265358979323846f;

// exp(x) for float32 that the compiler can vectorise (std::exp is a scalar libm call here): x = n ln2 + r with
// |r| <= ln2 / 2 (Cody-Waite split of ln2), a degree-6 Taylor polynomial for e^r, 2^n built in the exponent bits.
// Relative error below 2e-7 (about 1 ulp) on [-87, 88]; outside it clamps to 0 / 2^127, which only ever feeds
// 1 / (1 + e) in the sigmoid surrogate below.
inline float fast_exp(float x) {
  x = std::min(88.0f, std::max(-87.0f, x));
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float surrogate_grad(int kind, float u, float alpha) {
  if (kind == 0) {  // sigmoid
    const float sg = 1.0f / (1.0f + fast_exp(-alpha * u));
    return alpha * sg * (1.0f - sg);
  }
  if (kind == 1) {  // atan
    const float z = kPi / 2.0f * alpha * u;
    return alpha / 2.0f / (1.0f + z * z);
  }
  const float d = 1.0f + alpha * std::fabs(u);  // fast sigmoid (SuperSpike)
  return 1.0f / (d * d);
}
}  // namespace

// Backward of lif_forward from the saved charged potentials h [T, N] (float32) and dL/ds (float32 or bfloat16)
// -> (grad_x [T, N] in dL/ds's dtype, grad_v0 [N] float32).
template <typename G>
static void lif_backward_impl(const float* ph, const G* pgs, const float* pgv, G* pgx, float* pg0, int64_t Tn, int64_t N,
                              float fa, float fb, float ft, bool soft, float fr, bool detach_reset, int kind,
                              float fal) {
  constexpr int64_t CH = 512;
  const int64_t chunks = (N + CH - 1) / CH;
#pragma omp parallel for schedule(static)
  for (int64_t ck = 0; ck < chunks; ++ck) {
    const int64_t n0 = ck * CH, len = std::min(N - n0, CH);
    alignas(64) float g[CH];
    alignas(64) float dd[CH];
    for (int64_t i = 0; i < len; ++i) g[i] = pgv[n0 + i];
    for (int64_t t = Tn - 1; t >= 0; --t) {
      const float* ht = ph + t * N + n0;
      const G* gst = pgs + t * N + n0;
      G* gxt = pgx + t * N + n0;
      // surrogate derivatives first, one branch-free loop per kind (so each vectorises)
      if (kind == 0) {
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) dd[i] = surrogate_grad(0, ht[i] - ft, fal);
      } else if (kind == 1) {
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) dd[i] = surrogate_grad(1, ht[i] - ft, fal);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) dd[i] = surrogate_grad(2, ht[i] - ft, fal);
      }
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const float hm = ht[i];
        const float u = hm - ft;
        const float sp = u >= 0.0f ? 1.0f : 0.0f;
        const float d = dd[i];
        float dv_dh;
        if (soft)
          dv_dh = detach_reset ? 1.0f : 1.0f - ft * d;
        else
          dv_dh = detach_reset ? (1.0f - sp) : (1.0f - sp) + (fr - hm) * d;
        const float gh = static_cast<float>(gst[i]) * d + g[i] * dv_dh;
        gxt[i] = to_out<G>(gh * fb);
        g[i] = gh * fa;
      }
    }
    for (int64_t i = 0; i < len; ++i) pg0[n0 + i] = g[i];
  }
}

std::vector<torch::Tensor> lif_backward(torch::Tensor h, torch::Tensor grad_s, torch::Tensor grad_v, double a, double b,
                                        double theta, bool soft, double v_reset, bool detach_reset, int64_t surrogate,
                                        double alpha) {
  TORCH_CHECK(h.scalar_type() == torch::kFloat32 && grad_v.scalar_type() == torch::kFloat32,
              "lif_backward: h and grad_v float32");
  TORCH_CHECK(grad_s.scalar_type() == torch::kFloat32 || grad_s.scalar_type() == torch::kBFloat16,
              "lif_backward: grad_s float32 or bfloat16");
  h = h.contiguous();
  grad_s = grad_s.contiguous();
  grad_v = grad_v.contiguous();
  const int64_t T = h.size(0), N = h.numel() / std::max<int64_t>(T, 1);
  auto gx = torch::empty_like(grad_s);
  auto gv0 = torch::empty_like(grad_v);
  const int kind = static_cast<int>(surrogate);
  if (grad_s.scalar_type() == torch::kFloat32)
    lif_backward_impl<float>(h.data_ptr<float>(), grad_s.data_ptr<float>(), grad_v.data_ptr<float>(),
                             gx.data_ptr<float>(), gv0.data_ptr<float>(), T, N, a, b, theta, soft, v_reset,
                             detach_reset, kind, alpha);
  else
    lif_backward_impl<at::BFloat16>(h.data_ptr<float>(), grad_s.data_ptr<at::BFloat16>(), grad_v.data_ptr<float>(),
                                    gx.data_ptr<at::BFloat16>(), gv0.data_ptr<float>(), T, N, a, b, theta, soft,
                                    v_reset, detach_reset, kind, alpha);
  return {gx, gv0};
}

// ---- int8 products (spikeformer.runtime.int8) ------------------------------------------------------------------

namespace {
inline bool exact_int8(float v) {
  const bool in_range = v >= -128.0f && v <= 127.0f;
  const float c = in_range ? v : 0.0f;  // keeps the integer conversion defined (and vectorisable)
  return in_range && static_cast<float>(static_cast<int32_t>(c)) == c;
}
}  // namespace

// x float32 (any shape) -> (int8 copy, true) when every value is an integer in [-128, 127], else (empty, false).
std::tuple<torch::Tensor, bool> to_int8_exact(torch::Tensor x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "to_int8_exact: float32");
  x = x.contiguous();
  auto q = torch::empty(x.sizes(), x.options().dtype(torch::kInt8));
  const float* px = x.data_ptr<float>();
  int8_t* pq = q.data_ptr<int8_t>();
  const int64_t n = x.numel();
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    const float v = px[i];
    bad |= !exact_int8(v);
    pq[i] = static_cast<int8_t>(v);
  }
  if (bad) return {torch::empty({0}, q.options()), false};
  return {q, true};
}

// im2col of x float32 [N, C, H, W] into int8 rows [N*Ho*Wo, kh*kw*C] ((dy, dx, c) order, zero padding), with the
// same exactness check as to_int8_exact.
std::tuple<torch::Tensor, bool> im2col_int8(torch::Tensor x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                            int64_t ph, int64_t pw) {
  TORCH_CHECK(x.dim() == 4 && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kInt8),
              "im2col_int8: float32 or int8 [N, C, H, W]");
  // int8 in channels-last memory (spikes of a neuron that read channels-last accumulators) is NHWC already
  const bool nhwc_in = x.scalar_type() == torch::kInt8 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!nhwc_in) x = x.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  // 1) NCHW -> NHWC int8 (float32: with the exactness check; int8 spikes: a transposed copy)
  auto nhwc = nhwc_in ? x : torch::empty({N, H, W, C}, x.options().dtype(torch::kInt8));
  int8_t* pn = nhwc.data_ptr<int8_t>();
  int bad = 0;
  if (nhwc_in) {
    // nothing to do
  } else if (x.scalar_type() == torch::kInt8) {
    const int8_t* px = x.data_ptr<int8_t>();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t y = 0; y < H; ++y) {
        for (int64_t c = 0; c < C; ++c) {
          const int8_t* src = px + ((n * C + c) * H + y) * W;
          int8_t* dst = pn + ((n * H + y) * W) * C + c;
          for (int64_t xx = 0; xx < W; ++xx) dst[xx * C] = src[xx];
        }
      }
    }
  } else {
    const float* px = x.data_ptr<float>();
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t y = 0; y < H; ++y) {
        for (int64_t c = 0; c < C; ++c) {
          const float* src = px + ((n * C + c) * H + y) * W;
          int8_t* dst = pn + ((n * H + y) * W) * C + c;
          for (int64_t xx = 0; xx < W; ++xx) {
            const float v = src[xx];
            bad |= !exact_int8(v);
            dst[xx * C] = static_cast<int8_t>(v);
          }
        }
      }
    }
  }
  if (bad) return {torch::empty({0}, nhwc.options()), false};
  // 2) gather the kh*kw neighbours of every output pixel (contiguous C-byte runs)
  auto cols = torch::empty({N * Ho * Wo, kh * kw * C}, nhwc.options());
  int8_t* pc = cols.data_ptr<int8_t>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t y = 0; y < Ho; ++y) {
      for (int64_t xx = 0; xx < Wo; ++xx) {
        int8_t* row = pc + ((n * Ho + y) * Wo + xx) * kh * kw * C;
        for (int64_t dy = 0; dy < kh; ++dy) {
          const int64_t sy = y * sh + dy - ph;
          for (int64_t dx = 0; dx < kw; ++dx) {
            const int64_t sx = xx * sw + dx - pw;
            int8_t* dst = row + (dy * kw + dx) * C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W)
              std::memset(dst, 0, C);
            else
              std::memcpy(dst, pn + ((n * H + sy) * W + sx) * C, C);
          }
        }
      }
    }
  }
  return {cols, true};
}

// sum_i acc[i] [M, O] int32 * scales[i] [O] + bias [O] (or empty) -> float32 [M, O]; with images > 0 the result is
// written channels-first, [images, O, M / images] (a convolution's NCHW output).
torch::Tensor dequantize(std::vector<torch::Tensor> acc, torch::Tensor scales, torch::Tensor bias, int64_t images) {
  TORCH_CHECK(!acc.empty() && scales.dim() == 2 && scales.size(0) == static_cast<int64_t>(acc.size()),
              "dequantize: one scale row per accumulator");
  const int64_t M = acc[0].size(0), O = acc[0].size(1);
  scales = scales.contiguous();
  const float* ps = scales.data_ptr<float>();
  const float* pb = bias.numel() ? bias.contiguous().data_ptr<float>() : nullptr;
  std::vector<const int32_t*> pa;
  for (auto& a : acc) {
    a = a.contiguous();
    pa.push_back(a.data_ptr<int32_t>());
  }
  const int64_t terms = static_cast<int64_t>(pa.size());
  if (images <= 0) {
    auto out = torch::empty({M, O}, acc[0].options().dtype(torch::kFloat32));
    float* po = out.data_ptr<float>();
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t o = 0; o < O; ++o) {
        float v = static_cast<float>(pa[0][m * O + o]) * ps[o];
        for (int64_t t = 1; t < terms; ++t) v += static_cast<float>(pa[t][m * O + o]) * ps[t * O + o];
        po[m * O + o] = pb ? v + pb[o] : v;
      }
    }
    return out;
  }
  const int64_t P = M / images;
  auto out = torch::empty({images, O, P}, acc[0].options().dtype(torch::kFloat32));
  float* po = out.data_ptr<float>();
  constexpr int64_t PB = 64;  // pixel block: read [PB, O] rows, write O runs of PB floats
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t p0 = 0; p0 < P; p0 += PB) {
      const int64_t p1 = std::min(P, p0 + PB);
      for (int64_t o = 0; o < O; ++o) {
        float* dst = po + (n * O + o) * P;
        const float bo = pb ? pb[o] : 0.0f;
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t m = n * P + p;
          float v = static_cast<float>(pa[0][m * O + o]) * ps[o];
          for (int64_t t = 1; t < terms; ++t) v += static_cast<float>(pa[t][m * O + o]) * ps[t * O + o];
          dst[p] = v + bo;
        }
      }
    }
  }
  return out;
}

// Max-pooling of rows [N*H*W, C] (channels last): an int8 product's int32 accumulators, for a layer whose output is
// acc * scale_c + bias_c with scale_c > 0 (pooling the accumulators and then scaling equals scaling and then pooling
// exactly: a rounded increasing map stays non-decreasing; 4x fewer values to scale), or float32 outputs (oneDNN's
// int8 convolution; std::max, so a NaN does not propagate as in nn.MaxPool2d). k x k / stride / padding (padding never
// wins), floor mode. Returns [N*Ho*Wo, C] in the input's dtype.
template <typename V>
static void maxpool_rows_impl(const V* pa, V* po, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                              int64_t k, int64_t st, int64_t pad) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t oy = 0; oy < Ho; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * st - pad), y1 = std::min<int64_t>(H, oy * st - pad + k);
      for (int64_t ox = 0; ox < Wo; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * st - pad), x1 = std::min<int64_t>(W, ox * st - pad + k);
        V* dst = po + ((n * Ho + oy) * Wo + ox) * C;
        std::memcpy(dst, pa + ((n * H + y0) * W + x0) * C, C * sizeof(V));
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t x = x0; x < x1; ++x) {
            const V* src = pa + ((n * H + y) * W + x) * C;
            for (int64_t c = 0; c < C; ++c) dst[c] = std::max(dst[c], src[c]);
          }
        }
      }
    }
  }
}

torch::Tensor maxpool_rows(torch::Tensor x, int64_t N, int64_t H, int64_t W, int64_t k, int64_t st, int64_t pad) {
  TORCH_CHECK((x.scalar_type() == torch::kInt32 || x.scalar_type() == torch::kFloat32) && x.dim() == 2 &&
                  x.size(0) == N * H * W,
              "maxpool_rows: int32 or float32 [N*H*W, C]");
  x = x.contiguous();
  const int64_t C = x.size(1);
  const int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
  auto out = torch::empty({N * Ho * Wo, C}, x.options());
  if (x.scalar_type() == torch::kInt32)
    maxpool_rows_impl<int32_t>(x.data_ptr<int32_t>(), out.data_ptr<int32_t>(), N, H, W, C, Ho, Wo, k, st, pad);
  else
    maxpool_rows_impl<float>(x.data_ptr<float>(), out.data_ptr<float>(), N, H, W, C, Ho, Wo, k, st, pad);
  return out;
}

// Max-pooling k x k / stride s / padding p (floor mode, padding never wins) of float32 [N, C, H, W], one plane per
// task: identical to nn.MaxPool2d.
torch::Tensor maxpool2d(torch::Tensor x, int64_t k, int64_t st, int64_t pad);  // below, with maxpool2d_argmax

// Max-pooling for training: the output and, per output, the winning tap (0 .. k*k-1, one byte) of its window; the
// first maximum in scan order wins (a strict comparison), as in PyTorch. float32 or bfloat16 NCHW; pa may be null.
// Separable and vectorisable: each input row once, the maximum of every k-wide run (and its first position) at stride 1
// over the -inf-padded row, kept at the output stride; then each output row takes its k rows' runs, the first strictly
// larger row winning. The row-major first maximum of a window is the first row holding the window's maximum, at that
// row's first position holding it: the same tap as a scan.
template <typename T>
static void maxpool_argmax_impl(const T* px, T* po, uint8_t* pa, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                                int64_t Wo, int64_t k, int64_t st, int64_t pad) {
  const int64_t Wp = W + 2 * pad, runs = Wp - k + 1;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
#pragma omp parallel
  {
    std::vector<float> rb(Wp, kNegInf), m(runs), hs(H * Wo), best(Wo);
    std::vector<int32_t> mj(runs), hjs(H * Wo), arg(Wo);
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < NC; ++pl) {
      const T* src = px + pl * H * W;
      for (int64_t yy = 0; yy < H; ++yy) {
        const T* row = src + yy * W;
        float* r = rb.data() + pad;
#pragma omp simd
        for (int64_t q = 0; q < W; ++q) r[q] = static_cast<float>(row[q]);
        const float* b = rb.data();
        float* mm = m.data();
        int32_t* jj = mj.data();
#pragma omp simd
        for (int64_t q = 0; q < runs; ++q) {
          mm[q] = b[q];
          jj[q] = 0;
        }
        for (int64_t j = 1; j < k; ++j) {
#pragma omp simd
          for (int64_t q = 0; q < runs; ++q) {
            const float v = b[q + j];
            const bool gt = v > mm[q];
            mm[q] = gt ? v : mm[q];
            jj[q] = gt ? static_cast<int32_t>(j) : jj[q];
          }
        }
        float* hrow = hs.data() + yy * Wo;
        int32_t* jrow = hjs.data() + yy * Wo;
        for (int64_t xx = 0; xx < Wo; ++xx) {
          hrow[xx] = mm[xx * st];
          jrow[xx] = jj[xx * st];
        }
      }
      for (int64_t y = 0; y < Ho; ++y) {
        float* bb = best.data();
        int32_t* aa = arg.data();
#pragma omp simd
        for (int64_t xx = 0; xx < Wo; ++xx) {
          bb[xx] = kNegInf;
          aa[xx] = 0;
        }
        for (int64_t i = 0; i < k; ++i) {
          const int64_t yy = y * st - pad + i;
          if (yy < 0 || yy >= H) continue;
          const float* hrow = hs.data() + yy * Wo;
          const int32_t* jrow = hjs.data() + yy * Wo;
          const int32_t base = static_cast<int32_t>(i * k);
#pragma omp simd
          for (int64_t xx = 0; xx < Wo; ++xx) {
            const bool gt = hrow[xx] > bb[xx];
            bb[xx] = gt ? hrow[xx] : bb[xx];
            aa[xx] = gt ? base + jrow[xx] : aa[xx];
          }
        }
        T* dst = po + pl * Ho * Wo + y * Wo;
        for (int64_t xx = 0; xx < Wo; ++xx) dst[xx] = static_cast<T>(bb[xx]);
        if (pa) {
          uint8_t* ap = pa + pl * Ho * Wo + y * Wo;
          for (int64_t xx = 0; xx < Wo; ++xx) ap[xx] = static_cast<uint8_t>(aa[xx]);
        }
      }
    }
  }
}

std::vector<torch::Tensor> maxpool2d_argmax(torch::Tensor x, int64_t k, int64_t st, int64_t pad) {
  TORCH_CHECK(x.dim() == 4, "maxpool2d_argmax: [N, C, H, W]");
  TORCH_CHECK(k * k <= 256, "maxpool2d_argmax: windows of at most 256 taps");
  x = x.contiguous();
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
  auto out = torch::empty({x.size(0), x.size(1), Ho, Wo}, x.options());
  auto arg = torch::empty({x.size(0), x.size(1), Ho, Wo}, x.options().dtype(torch::kUInt8));
  if (x.scalar_type() == torch::kFloat32) {
    maxpool_argmax_impl<float>(x.data_ptr<float>(), out.data_ptr<float>(), arg.data_ptr<uint8_t>(), NC, H, W, Ho, Wo,
                               k, st, pad);
  } else {
    TORCH_CHECK(x.scalar_type() == torch::kBFloat16, "maxpool2d_argmax: float32 or bfloat16");
    maxpool_argmax_impl<at::BFloat16>(x.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), arg.data_ptr<uint8_t>(),
                                      NC, H, W, Ho, Wo, k, st, pad);
  }
  return {out, arg};
}

torch::Tensor maxpool2d(torch::Tensor x, int64_t k, int64_t st, int64_t pad) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32, "maxpool2d: float32 [N, C, H, W]");
  x = x.contiguous();
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
  auto out = torch::empty({x.size(0), x.size(1), Ho, Wo}, x.options());
  maxpool_argmax_impl<float>(x.data_ptr<float>(), out.data_ptr<float>(), nullptr, NC, H, W, Ho, Wo, k, st, pad);
  return out;
}

// Backward of maxpool2d_argmax: each output's gradient goes to the input its window picked, accumulated in float32 in
// output scan order (as PyTorch's CPU kernel does), one plane per task; returned in the gradient's dtype.
template <typename G>
static void maxpool_backward_impl(const G* pg, const uint8_t* pa, G* px, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                                  int64_t Wo, int64_t k, int64_t st, int64_t pad) {
#pragma omp parallel
  {
    std::vector<float> acc(H * W);
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < NC; ++pl) {
      const G* gp = pg + pl * Ho * Wo;
      const uint8_t* ap = pa + pl * Ho * Wo;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t y = 0; y < Ho; ++y)
        for (int64_t xx = 0; xx < Wo; ++xx) {
          const int64_t tap = ap[y * Wo + xx];
          const int64_t yy = y * st - pad + tap / k, q = xx * st - pad + tap % k;
          acc[yy * W + q] += static_cast<float>(gp[y * Wo + xx]);
        }
      G* dst = px + pl * H * W;
      const float* a = acc.data();
#pragma omp simd
      for (int64_t i = 0; i < H * W; ++i) dst[i] = to_out<G>(a[i]);
    }
  }
}

torch::Tensor maxpool2d_backward(torch::Tensor grad, torch::Tensor arg, int64_t H, int64_t W, int64_t k, int64_t st,
                                 int64_t pad) {
  TORCH_CHECK(grad.dim() == 4 && arg.sizes() == grad.sizes(), "maxpool2d_backward: grad and arg [N, C, Ho, Wo]");
  grad = grad.contiguous();
  arg = arg.contiguous();
  const int64_t NC = grad.size(0) * grad.size(1), Ho = grad.size(2), Wo = grad.size(3);
  auto gx = torch::empty({grad.size(0), grad.size(1), H, W}, grad.options());
  if (grad.scalar_type() == torch::kFloat32)
    maxpool_backward_impl<float>(grad.data_ptr<float>(), arg.data_ptr<uint8_t>(), gx.data_ptr<float>(), NC, H, W, Ho, Wo,
                                 k, st, pad);
  else {
    TORCH_CHECK(grad.scalar_type() == torch::kBFloat16, "maxpool2d_backward: float32 or bfloat16");
    maxpool_backward_impl<at::BFloat16>(grad.data_ptr<at::BFloat16>(), arg.data_ptr<uint8_t>(),
                                        gx.data_ptr<at::BFloat16>(), NC, H, W, Ho, Wo, k, st, pad);
  }
  return gx;
}

// ---- Spikformer's spiking self-attention, int8 inference (spikeformer.runtime.int8) ----------------------------
// One LIF/IF neuron's inference step, the float32 operations of lif_forward_impl in the same order. lif_forward_impl
// spells the step out itself: it also stores h, and with h passed out through a reference GCC no longer vectorises
// its loop (several times slower), so the two copies stay, kept equal by the tests against the unfused path.
struct NeuronStep {
  float a, b, c, theta, v_reset, v0;
  bool soft, add_c;
  inline float operator()(float& vm, float x) const {
    float hm = vm * a + x * b;
    if (add_c) hm = hm + c;
    const float sp = (hm - theta) >= 0.0f ? 1.0f : 0.0f;
    vm = soft ? hm - theta * sp : hm * (1.0f - sp) + v_reset * sp;
    return sp;
  }
};

// One token's d inputs of the Q, K or V neuron (DEQ: int32 accumulators scaled and offset as dequantize rounds them)
// through the neuron: membranes vr[0..d), spikes (0/1) into sp[0..d).
template <typename X, bool DEQ>
inline void neuron_row(const X* xr, const float* sc, const float* bi, const NeuronStep nr, float* vr, float* sp,
                       int64_t d) {
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    float xv = static_cast<float>(xr[j]);
    if constexpr (DEQ) {
      xv = xv * sc[j];
      if (bi) xv = xv + bi[j];
    }
    sp[j] = nr(vr[j], xv);
  }
}

// acc [T, B, N, 3D]: the Q, K and V products of one int8 product, int32 (DEQ: x = acc * scale[c] + bias[c], rounded
// as dequantize rounds it) or float32 (already x). Per (sample, head), over time: the Q, K and V neurons; K^T V from
// token bitmasks (popcounts); (Q K^T V) as integers; times attn_scale; the attention neuron, whose int8 spikes go
// to out [T, B, N, D] (heads merged: what the projection reads). The unfused path computes the products in float32
// on 0/1 spikes: exact integers there too, so every spike is identical.
template <typename X, bool DEQ>
static void spiking_attention_impl(const X* acc, const float* sc, const float* bi, const NeuronStep* nrn, int64_t T,
                                   int64_t B, int64_t N, int64_t H, int64_t d, float attn_scale, int8_t* out,
                                   int64_t* counts) {
  const int64_t D = H * d, W = (N + 63) / 64;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < B * H; ++task) {
    const int64_t b = task / H, h = task % H;
    std::vector<float> vm(4 * N * d);  // membranes of the Q, K, V and attention neurons
    for (int p = 0; p < 4; ++p) std::fill(vm.begin() + p * N * d, vm.begin() + (p + 1) * N * d, nrn[p].v0);
    std::vector<int32_t> qmask(N * d), kv(d * d), y(d);
    std::vector<uint64_t> kbits(d * W), vbits(d * W);
    std::vector<float> sp(d);
    int64_t fired = 0;
    for (int64_t t = 0; t < T; ++t) {
      const X* rows = acc + (t * B + b) * N * 3 * D;
      std::fill(kbits.begin(), kbits.end(), 0);
      std::fill(vbits.begin(), vbits.end(), 0);
      for (int64_t n = 0; n < N; ++n) {
        for (int p = 0; p < 3; ++p) {
          const int64_t c0 = p * D + h * d;
          neuron_row<X, DEQ>(rows + n * 3 * D + c0, DEQ ? sc + c0 : nullptr, bi ? bi + c0 : nullptr, nrn[p],
                             vm.data() + (p * N + n) * d, sp.data(), d);
          for (int64_t j = 0; j < d; ++j) fired += sp[j] != 0.0f;
          if (p == 0) {
            for (int64_t j = 0; j < d; ++j) qmask[n * d + j] = sp[j] != 0.0f ? -1 : 0;
          } else {
            uint64_t* bits = (p == 1 ? kbits.data() : vbits.data()) + n / 64;
            const int sh = static_cast<int>(n % 64);
            for (int64_t j = 0; j < d; ++j) bits[j * W] |= static_cast<uint64_t>(sp[j] != 0.0f) << sh;
          }
        }
      }
      for (int64_t i = 0; i < d; ++i)  // kv[i, j] = sum_n k[n, i] v[n, j]: tokens where both fired
        for (int64_t j = 0; j < d; ++j) {
          int32_t s = 0;
          for (int64_t w = 0; w < W; ++w) s += __builtin_popcountll(kbits[i * W + w] & vbits[j * W + w]);
          kv[i * d + j] = s;
        }
      int8_t* o = out + (t * B + b) * N * D + h * d;
      float* va = vm.data() + 3 * N * d;
      const NeuronStep na = nrn[3];
      for (int64_t n = 0; n < N; ++n) {
        std::fill(y.begin(), y.end(), 0);
        for (int64_t i = 0; i < d; ++i) {
          const int32_t m = qmask[n * d + i];
          const int32_t* kr = kv.data() + i * d;
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) y[j] += kr[j] & m;
        }
        float* vr = va + n * d;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) sp[j] = na(vr[j], static_cast<float>(y[j]) * attn_scale);
        for (int64_t j = 0; j < d; ++j) {
          o[n * D + j] = static_cast<int8_t>(sp[j]);
          fired += sp[j] != 0.0f;
        }
      }
    }
    if (counts) {
#pragma omp atomic
      counts[b] += fired;
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VPOPCNTDQ__)
#define SPIKEFORMER_ATTENTION_AVX512 1
// The same computation for head widths d = 16 DC (DC <= 4) with AVX-512, in the other order of the exact integer
// products: A[n, m] = |q_n AND k_m| (spike rows as bitmasks, popcounts: no transposes), then Q K^T V = A V with VNNI
// (A as unsigned bytes, at most d; V's spikes packed four tokens to an int32 lane). Integers either way: the same
// result as K^T V first.
template <typename X, bool DEQ, int DC>
static void spiking_attention_avx512(const X* acc, const float* sc, const float* bi, const NeuronStep* nrn, int64_t T,
                                     int64_t B, int64_t N, int64_t H, float attn_scale, int8_t* out,
                                     int64_t* counts) {
  constexpr int64_t d = 16 * DC;
  const int64_t D = H * d, N8 = (N + 7) / 8 * 8;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < B * H; ++task) {
    const int64_t b = task / H, h = task % H;
    std::vector<float> vm(4 * N * d);  // membranes of the Q, K, V and attention neurons
    for (int p = 0; p < 4; ++p) std::fill(vm.begin() + p * N * d, vm.begin() + (p + 1) * N * d, nrn[p].v0);
    std::vector<uint64_t> qbits(N), kbits(N8);  // spike rows as bitmasks (bit j: channel j); kbits zero-padded
    std::vector<int32_t> vpack(N8 / 4 * d);     // lane (g, j): bytes v[4g + r, j], r = 0..3
    alignas(64) float sp[d];
    std::vector<uint8_t> a(N8);  // A[n, :], zero beyond N
    int64_t fired = 0;
    const __m512 zero = _mm512_setzero_ps();
    auto row_bits = [&]() {
      uint64_t bits = 0;
      for (int c = 0; c < DC; ++c)
        bits |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_load_ps(sp + 16 * c), zero, _CMP_NEQ_OQ)) << (16 * c);
      return bits;
    };
    for (int64_t t = 0; t < T; ++t) {
      const X* rows = acc + (t * B + b) * N * 3 * D;
      std::fill(vpack.begin(), vpack.end(), 0);
      for (int64_t n = 0; n < N; ++n) {
        for (int p = 0; p < 3; ++p) {
          const int64_t c0 = p * D + h * d;
          neuron_row<X, DEQ>(rows + n * 3 * D + c0, DEQ ? sc + c0 : nullptr, bi ? bi + c0 : nullptr, nrn[p],
                             vm.data() + (p * N + n) * d, sp, d);
          const uint64_t bits = row_bits();
          fired += __builtin_popcountll(bits);
          if (p == 0) {
            qbits[n] = bits;
          } else if (p == 1) {
            kbits[n] = bits;
          } else {
            int32_t* lane = vpack.data() + (n / 4) * d;
            const int sh = 8 * static_cast<int>(n % 4);
#pragma omp simd
            for (int64_t j = 0; j < d; ++j) lane[j] |= static_cast<int32_t>(sp[j] != 0.0f) << sh;
          }
        }
      }
      int8_t* o = out + (t * B + b) * N * D + h * d;
      float* va = vm.data() + 3 * N * d;
      const NeuronStep na = nrn[3];
      for (int64_t n = 0; n < N; ++n) {
        const __m512i qn = _mm512_set1_epi64(static_cast<long long>(qbits[n]));
        for (int64_t m0 = 0; m0 < N8; m0 += 8) {
          const __m512i c = _mm512_popcnt_epi64(_mm512_and_si512(qn, _mm512_loadu_si512(kbits.data() + m0)));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(a.data() + m0), _mm512_cvtepi64_epi8(c));
        }
        __m512i y[DC];
        for (int c = 0; c < DC; ++c) y[c] = _mm512_setzero_si512();
        for (int64_t g = 0; g < N8 / 4; ++g) {
          int32_t four;
          std::memcpy(&four, a.data() + 4 * g, 4);
          const __m512i ab = _mm512_set1_epi32(four);
          for (int c = 0; c < DC; ++c)
            y[c] = _mm512_dpbusd_epi32(y[c], ab, _mm512_loadu_si512(vpack.data() + g * d + 16 * c));
        }
        alignas(64) int32_t yi[d];
        for (int c = 0; c < DC; ++c) _mm512_store_si512(yi + 16 * c, y[c]);
        float* vr = va + n * d;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) sp[j] = na(vr[j], static_cast<float>(yi[j]) * attn_scale);
        const uint64_t bits = row_bits();
        fired += __builtin_popcountll(bits);
        for (int c = 0; c < DC; ++c)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + n * D + 16 * c),
                           _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_load_ps(sp + 16 * c))));
      }
    }
    if (counts) {
#pragma omp atomic
      counts[b] += fired;
    }
  }
}
#endif

// Python: spiking_attention(acc [T, B, N, 3D] int32 or float32, scale [3D] (int32 only), bias [3D] or empty, neurons
// [4 x 7] float64 rows (a, b, c, theta, soft, v_reset, v0) for Q, K, V and the attention neuron, heads, attn_scale,
// count) -> (int8 spikes [T, B, N, D], spikes per sample [B] int64 of the four neurons, or empty).
std::vector<torch::Tensor> spiking_attention(torch::Tensor acc, torch::Tensor scale, torch::Tensor bias,
                                             torch::Tensor neurons, int64_t heads, double attn_scale, bool count) {
  TORCH_CHECK(acc.dim() == 4 && acc.size(3) % (3 * heads) == 0, "spiking_attention: acc [T, B, N, 3D], D % heads == 0");
  TORCH_CHECK(neurons.scalar_type() == torch::kFloat64 && neurons.numel() == 28, "spiking_attention: neurons [4, 7]");
  const bool deq = acc.scalar_type() == torch::kInt32;
  TORCH_CHECK(deq || acc.scalar_type() == torch::kFloat32, "spiking_attention: int32 or float32 acc");
  const int64_t T = acc.size(0), B = acc.size(1), N = acc.size(2), D = acc.size(3) / 3;
  TORCH_CHECK(!deq || scale.numel() == 3 * D, "spiking_attention: one scale per channel");
  TORCH_CHECK(bias.numel() == 0 || bias.numel() == 3 * D, "spiking_attention: one bias per channel, or none");
  acc = acc.contiguous();
  auto nd = neurons.contiguous();
  const double* pn = nd.data_ptr<double>();
  NeuronStep nrn[4];
  for (int p = 0; p < 4; ++p) {
    const double* r = pn + 7 * p;
    nrn[p] = NeuronStep{static_cast<float>(r[0]), static_cast<float>(r[1]), static_cast<float>(r[2]),
                        static_cast<float>(r[3]), static_cast<float>(r[5]), static_cast<float>(r[6]),
                        r[4] != 0.0, static_cast<float>(r[2]) != 0.0f};
  }
  auto out = torch::empty({T, B, N, D}, acc.options().dtype(torch::kInt8));
  auto counts = count ? torch::zeros({B}, acc.options().dtype(torch::kInt64)) : torch::empty({0}, torch::kInt64);
  int64_t* pc = count ? counts.data_ptr<int64_t>() : nullptr;
  auto sc = deq ? scale.contiguous() : scale;
  auto bc = bias.contiguous();
  const float* pb = bias.numel() ? bc.data_ptr<float>() : nullptr;
  const int64_t d = D / heads;
#ifdef SPIKEFORMER_ATTENTION_AVX512
  if (d % 16 == 0 && d <= 64) {
    const float* ps = deq ? sc.data_ptr<float>() : nullptr;
    int8_t* po = out.data_ptr<int8_t>();
    const float as = static_cast<float>(attn_scale);
#define SPIKEFORMER_ATTN_CASE(DC)                                                                                   \
  case DC:                                                                                                          \
    if (deq)                                                                                                        \
      spiking_attention_avx512<int32_t, true, DC>(acc.data_ptr<int32_t>(), ps, pb, nrn, T, B, N, heads, as, po, pc); \
    else                                                                                                            \
      spiking_attention_avx512<float, false, DC>(acc.data_ptr<float>(), nullptr, nullptr, nrn, T, B, N, heads, as,   \
                                                 po, pc);                                                           \
    return {out, counts};
    switch (d / 16) {
      SPIKEFORMER_ATTN_CASE(1)
      SPIKEFORMER_ATTN_CASE(2)
      SPIKEFORMER_ATTN_CASE(3)
      SPIKEFORMER_ATTN_CASE(4)
    }
#undef SPIKEFORMER_ATTN_CASE
  }
#endif
  if (deq)
    spiking_attention_impl<int32_t, true>(acc.data_ptr<int32_t>(), sc.data_ptr<float>(), pb, nrn, T, B, N, heads,
                                          D / heads, static_cast<float>(attn_scale), out.data_ptr<int8_t>(), pc);
  else
    spiking_attention_impl<float, false>(acc.data_ptr<float>(), nullptr, nullptr, nrn, T, B, N, heads, D / heads,
                                         static_cast<float>(attn_scale), out.data_ptr<int8_t>(), pc);
  return {out, counts};
}

// Every kernel runs without the GIL (as PyTorch's own operators do): the service's event loop keeps answering requests
// while a batch runs in its inference thread.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("event_linear", &event_linear, "x [M,K] (mostly zero) @ wt [K,N] + bias, skipping zeros", nogil);
  m.def("event_conv3x3", &event_conv3x3, "3x3/s1/p1 convolution of channels-last mostly-zero input", nogil);
  m.def("lif_forward", &lif_forward, "multi-step LIF/IF forward", nogil);
  m.def("lif_backward", &lif_backward, "multi-step LIF/IF backward", nogil);
  m.def("lif_forward_int8", &lif_forward_int8, "multi-step LIF/IF inference writing int8 spikes", nogil);
  m.def("lif_forward_dequant", &lif_forward_dequant, "multi-step LIF/IF inference reading int32 accumulators", nogil);
  m.def("maxpool2d", &maxpool2d, "k x k max-pooling of NCHW float32", nogil);
  m.def("maxpool2d_argmax", &maxpool2d_argmax, "k x k max-pooling of NCHW float32/bf16 with the winning tap", nogil);
  m.def("maxpool2d_backward", &maxpool2d_backward, "gradient of maxpool2d_argmax (float32/bf16)", nogil);
  m.def("to_int8_exact", &to_int8_exact, "float32 -> int8 when exact", nogil);
  m.def("im2col_int8", &im2col_int8, "NCHW float32 (when exact) or int8 -> int8 im2col rows", nogil);
  m.def("dequantize", &dequantize, "int32 accumulators -> float32 with per-channel scales and bias", nogil);
  m.def("maxpool_rows", &maxpool_rows, "max-pooling of int32/float32 rows [N*H*W, C] (channels last)", nogil);
  m.def("spiking_attention", &spiking_attention, "Spikformer's Q/K/V neurons, Q K^T V and attention neuron", nogil);
}
