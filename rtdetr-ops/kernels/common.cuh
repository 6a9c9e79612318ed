// Shared by every kernel of `rtdetr-ops/kernels`: the accumulation type of each element type
// (float for f32 and bf16, double for f64), loads and stores through it, and the grid-stride loop.
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

template <typename T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

template <typename T> __device__ __forceinline__ typename Acc<T>::type load(const T *p) {
    return static_cast<typename Acc<T>::type>(*p);
}
template <> __device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
}
template <typename T> __device__ __forceinline__ T store(typename Acc<T>::type v) {
    return static_cast<T>(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) {
    return __float2bfloat16(v);
}

// `for (size_t i = global thread index; i < n; i += total threads)`: any grid covers any n.
#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                         \
         i += (size_t)blockDim.x * gridDim.x)
