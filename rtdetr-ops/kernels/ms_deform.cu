// Multi-scale deformable sampling of `rtdetr-ops/src/ms_deform.rs` (`Sampler`): for each
// query and head, the attention-weighted sum over levels and points of bilinear samples, as
// `F.grid_sample(bilinear, padding_mode='zeros', align_corners=False)` at pixel
// (loc_x·w − 0.5, loc_y·h − 0.5). The index math follows the CPU loops line by line.
//
// value: [B, S, dim] (levels stacked along S), loc: [B, Q, heads, L·P, 2] (x, y),
// weights: [B, Q, heads, L·P], out: [B, Q, dim]; dh = dim / heads; sample i =
// ((bq·heads + head)·L + level)·P + p.
#include "common.cuh"

#define MAX_LEVELS 8

// The level shapes, passed by value.
struct Levels {
    size_t h[MAX_LEVELS];
    size_t w[MAX_LEVELS];
    size_t start[MAX_LEVELS];
};

// One thread per output element (bq, c), head = c / dh.
template <typename T>
__device__ void forward(const T *value, const T *loc, const T *weights, T *out, Levels lv,
                        size_t b, size_t q, size_t s, size_t dim, size_t heads, size_t levels,
                        size_t points) {
    typedef typename Acc<T>::type acc_t;
    size_t dh = dim / heads;
    GRID_STRIDE(o, b * q * dim) {
        size_t bq = o / dim, c = o % dim, head = c / dh, batch = bq / q;
        const T *v = value + batch * s * dim + c;
        acc_t acc = 0;
        for (size_t level = 0; level < levels; ++level) {
            size_t h = lv.h[level], w = lv.w[level], start = lv.start[level];
            for (size_t p = 0; p < points; ++p) {
                size_t i = ((bq * heads + head) * levels + level) * points + p;
                acc_t aw = load(weights + i);
                acc_t px = load(loc + 2 * i) * (acc_t)w - (acc_t)0.5;
                acc_t py = load(loc + 2 * i + 1) * (acc_t)h - (acc_t)0.5;
                acc_t x0 = floor(px), y0 = floor(py);
                acc_t fx = px - x0, fy = py - y0;
                for (int dy = 0; dy < 2; ++dy) {
                    long long y = (long long)y0 + dy;
                    if (y < 0 || y >= (long long)h) continue;
                    acc_t wy = dy == 0 ? (acc_t)1 - fy : fy;
                    for (int dx = 0; dx < 2; ++dx) {
                        long long x = (long long)x0 + dx;
                        if (x < 0 || x >= (long long)w) continue;
                        acc_t wx = dx == 0 ? (acc_t)1 - fx : fx;
                        size_t token = start + (size_t)y * w + (size_t)x;
                        acc_t k = aw * wx * wy;
                        acc += k * load(v + token * dim);
                    }
                }
            }
        }
        out[o] = store<T>(acc);
    }
}

// d/d value: one thread per (bq, c) scatters grad_out[bq, c]·aw·wx·wy into the four corners.
template <typename T>
__device__ void scatter_grad_value(const T *grad_out, const T *loc, const T *weights, T *grad_value,
                           Levels lv, size_t b, size_t q, size_t s, size_t dim, size_t heads,
                           size_t levels, size_t points) {
    size_t dh = dim / heads;
    GRID_STRIDE(o, b * q * dim) {
        size_t bq = o / dim, c = o % dim, head = c / dh, batch = bq / q;
        T g = grad_out[o];
        T *gv = grad_value + batch * s * dim + c;
        for (size_t level = 0; level < levels; ++level) {
            size_t h = lv.h[level], w = lv.w[level], start = lv.start[level];
            for (size_t p = 0; p < points; ++p) {
                size_t i = ((bq * heads + head) * levels + level) * points + p;
                T aw = weights[i];
                T px = loc[2 * i] * (T)w - (T)0.5;
                T py = loc[2 * i + 1] * (T)h - (T)0.5;
                T x0 = floor(px), y0 = floor(py);
                T fx = px - x0, fy = py - y0;
                for (int dy = 0; dy < 2; ++dy) {
                    long long y = (long long)y0 + dy;
                    if (y < 0 || y >= (long long)h) continue;
                    T wy = dy == 0 ? (T)1 - fy : fy;
                    for (int dx = 0; dx < 2; ++dx) {
                        long long x = (long long)x0 + dx;
                        if (x < 0 || x >= (long long)w) continue;
                        T wx = dx == 0 ? (T)1 - fx : fx;
                        size_t token = start + (size_t)y * w + (size_t)x;
                        atomicAdd(gv + token * dim, g * (aw * wx * wy));
                    }
                }
            }
        }
    }
}

// d/d loc and d/d weights without the attention weight: one thread per sample i writes
// out[3i..3i+3] = (w·Σ ±wy·g·v, h·Σ wx·±g·v, Σ wx·wy·g·v), summed over the in-map corners and the
// head's dh channels (g = grad_out, v = value); the caller multiplies the first two by aw.
template <typename T>
__device__ void sampling_grads(const T *value, const T *loc, const T *grad_out, T *out, Levels lv,
                              size_t b, size_t q, size_t s, size_t dim, size_t heads,
                              size_t levels, size_t points) {
    size_t dh = dim / heads;
    GRID_STRIDE(i, b * q * heads * levels * points) {
        size_t level = (i / points) % levels;
        size_t head = (i / (points * levels)) % heads, bq = i / (points * levels * heads);
        size_t batch = bq / q;
        size_t h = lv.h[level], w = lv.w[level], start = lv.start[level];
        const T *g = grad_out + bq * dim + head * dh;
        const T *v = value + batch * s * dim + head * dh;
        T px = loc[2 * i] * (T)w - (T)0.5;
        T py = loc[2 * i + 1] * (T)h - (T)0.5;
        T x0 = floor(px), y0 = floor(py);
        T fx = px - x0, fy = py - y0;
        T gx = 0, gy = 0, gw = 0;
        for (int dy = 0; dy < 2; ++dy) {
            long long y = (long long)y0 + dy;
            if (y < 0 || y >= (long long)h) continue;
            T wy = dy == 0 ? (T)1 - fy : fy;
            T sy = dy == 0 ? (T)-1 : (T)1;
            for (int dx = 0; dx < 2; ++dx) {
                long long x = (long long)x0 + dx;
                if (x < 0 || x >= (long long)w) continue;
                T wx = dx == 0 ? (T)1 - fx : fx;
                T sx = dx == 0 ? (T)-1 : (T)1;
                size_t token = start + (size_t)y * w + (size_t)x;
                T dot = 0;
                for (size_t d = 0; d < dh; ++d) dot += g[d] * v[token * dim + d];
                gw += wx * wy * dot;
                gx += sx * wy * dot;
                gy += wx * sy * dot;
            }
        }
        out[3 * i] = gx * (T)w;
        out[3 * i + 1] = gy * (T)h;
        out[3 * i + 2] = gw;
    }
}

#define SIZES size_t b, size_t q, size_t s, size_t dim, size_t heads, size_t levels, size_t points
#define SIZE_ARGS b, q, s, dim, heads, levels, points

#define FORWARD(T, SUFFIX)                                                                         \
    extern "C" __global__ void ms_deform_fwd_##SUFFIX(const T *value, const T *loc,                \
                                                      const T *weights, T *out, Levels lv,         \
                                                      SIZES) {                                     \
        forward<T>(value, loc, weights, out, lv, SIZE_ARGS);                                       \
    }

#define BACKWARD(T, SUFFIX)                                                                        \
    extern "C" __global__ void ms_deform_grad_value_##SUFFIX(const T *grad_out, const T *loc,      \
                                                             const T *weights, T *grad_value,      \
                                                             Levels lv, SIZES) {                   \
        scatter_grad_value<T>(grad_out, loc, weights, grad_value, lv, SIZE_ARGS);                          \
    }                                                                                              \
    extern "C" __global__ void ms_deform_grad_sampling_##SUFFIX(const T *value, const T *loc,      \
                                                                const T *grad_out, T *out,         \
                                                                Levels lv, SIZES) {                \
        sampling_grads<T>(value, loc, grad_out, out, lv, SIZE_ARGS);                                \
    }

FORWARD(float, f32)
FORWARD(double, f64)
FORWARD(__nv_bfloat16, bf16)
BACKWARD(float, f32)
BACKWARD(double, f64)
