// Depthwise 2-D convolution (`groups = C`, weight [C, 1, KH, KW], symmetric zero padding), forward
// and both gradients. Plain kernels that mirror `rtdetr-ops/src/conv/depthwise.rs`: one thread per
// output element, gathers instead of atomics (so results are deterministic), accumulation in
// `acc_t` (float for f32/bf16, double for f64) in the CPU loops' tap order.
#include "common.cuh"

// ys[b, c, oy, ox] = Σ_{ky, kx} w[c, ky, kx] · xs[b, c, oy·s + ky − p, ox·s + kx − p].
template <typename T>
__device__ void forward(const T *xs, const T *w, T *ys, size_t b, size_t c, size_t h, size_t wd,
                        size_t kh, size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {
    size_t n = b * c * oh * ow;
    GRID_STRIDE(i, n) {
        size_t ox = i % ow, oy = (i / ow) % oh, plane = i / (ow * oh), ch = plane % c;
        const T *x = xs + plane * h * wd;
        const T *taps = w + ch * kh * kw;
        typename Acc<T>::type acc = 0;
        for (size_t ky = 0; ky < kh; ++ky) {
            long long iy = (long long)(oy * stride + ky) - (long long)pad;
            if (iy < 0 || iy >= (long long)h) continue;
            for (size_t kx = 0; kx < kw; ++kx) {
                long long ix = (long long)(ox * stride + kx) - (long long)pad;
                if (ix < 0 || ix >= (long long)wd) continue;
                acc += load(taps + ky * kw + kx) * load(x + iy * wd + ix);
            }
        }
        ys[i] = store<T>(acc);
    }
}

// gx[b, c, iy, ix] = Σ over the taps (ky, kx) whose output oy = (iy + p − ky)/s, ox likewise,
// is a whole number inside the output: w[c, ky, kx] · gy[b, c, oy, ox].
template <typename T>
__device__ void grad_input(const T *gy, const T *w, T *gx, size_t b, size_t c, size_t h, size_t wd,
                           size_t kh, size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {
    size_t n = b * c * h * wd;
    GRID_STRIDE(i, n) {
        size_t ix = i % wd, iy = (i / wd) % h, plane = i / (wd * h), ch = plane % c;
        const T *g = gy + plane * oh * ow;
        const T *taps = w + ch * kh * kw;
        typename Acc<T>::type acc = 0;
        for (size_t ky = 0; ky < kh; ++ky) {
            long long ny = (long long)(iy + pad) - (long long)ky;
            if (ny < 0 || ny % (long long)stride != 0) continue;
            long long oy = ny / (long long)stride;
            if (oy >= (long long)oh) continue;
            for (size_t kx = 0; kx < kw; ++kx) {
                long long nx = (long long)(ix + pad) - (long long)kx;
                if (nx < 0 || nx % (long long)stride != 0) continue;
                long long ox = nx / (long long)stride;
                if (ox >= (long long)ow) continue;
                acc += load(taps + ky * kw + kx) * load(g + oy * ow + ox);
            }
        }
        gx[i] = store<T>(acc);
    }
}

// gw[c, ky, kx] = Σ_{b, oy, ox} gy[b, c, oy, ox] · xs[b, c, oy·s + ky − p, ox·s + kx − p]: one
// block per weight element, a strided partial sum per thread, then a tree reduction.
template <typename T>
__device__ void grad_weight(const T *xs, const T *gy, T *gw, size_t b, size_t c, size_t h, size_t wd,
                            size_t kh, size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {
    typedef typename Acc<T>::type acc_t;
    __shared__ acc_t partial[256];
    size_t tap = blockIdx.x % (kh * kw), ch = blockIdx.x / (kh * kw);
    size_t ky = tap / kw, kx = tap % kw;
    size_t per_plane = oh * ow, n = b * per_plane;
    acc_t acc = 0;
    for (size_t j = threadIdx.x; j < n; j += blockDim.x) {
        size_t batch = j / per_plane, o = j % per_plane, oy = o / ow, ox = o % ow;
        long long iy = (long long)(oy * stride + ky) - (long long)pad;
        long long ix = (long long)(ox * stride + kx) - (long long)pad;
        if (iy < 0 || iy >= (long long)h || ix < 0 || ix >= (long long)wd) continue;
        size_t plane = batch * c + ch;
        acc += load(gy + plane * per_plane + o) * load(xs + plane * h * wd + iy * wd + ix);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) gw[blockIdx.x] = store<T>(partial[0]);
}

#define DEPTHWISE_OPS(T, SUFFIX)                                                                   \
    extern "C" __global__ void depthwise_fwd_##SUFFIX(                                             \
        const T *xs, const T *w, T *ys, size_t b, size_t c, size_t h, size_t wd, size_t kh,        \
        size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {                              \
        forward<T>(xs, w, ys, b, c, h, wd, kh, kw, oh, ow, stride, pad);                           \
    }                                                                                              \
    extern "C" __global__ void depthwise_grad_input_##SUFFIX(                                      \
        const T *gy, const T *w, T *gx, size_t b, size_t c, size_t h, size_t wd, size_t kh,        \
        size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {                              \
        grad_input<T>(gy, w, gx, b, c, h, wd, kh, kw, oh, ow, stride, pad);                        \
    }                                                                                              \
    extern "C" __global__ void depthwise_grad_weight_##SUFFIX(                                     \
        const T *xs, const T *gy, T *gw, size_t b, size_t c, size_t h, size_t wd, size_t kh,       \
        size_t kw, size_t oh, size_t ow, size_t stride, size_t pad) {                              \
        grad_weight<T>(xs, gy, gw, b, c, h, wd, kh, kw, oh, ow, stride, pad);                      \
    }

DEPTHWISE_OPS(float, f32)
DEPTHWISE_OPS(double, f64)
DEPTHWISE_OPS(__nv_bfloat16, bf16)
