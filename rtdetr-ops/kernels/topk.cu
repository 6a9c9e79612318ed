// Per-row top-k of f32 scores, largest first, equal values in index order: exactly the order of
// `rtdetr-ops/src/topk.rs` (`f32::total_cmp` descending, then index ascending). Every element
// gets a distinct 64-bit key (total-order bits of the value, then the complemented index), its
// rank is the number of larger keys in its row, and the elements ranked below k write their
// index at that rank. O(n²) comparisons per row, through shared-memory tiles; no length limit.
#include <stdint.h>

#define TILE 256

// The IEEE total order of f32 (what `f32::total_cmp` compares) as an unsigned key.
__device__ __forceinline__ uint32_t total_order_key(float v) {
    uint32_t bits = __float_as_uint(v);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ uint64_t rank_key(float v, uint32_t index) {
    return ((uint64_t)total_order_key(v) << 32) | (uint64_t)(0xFFFFFFFFu - index);
}

// Grid (⌈n/TILE⌉, rows), TILE threads a block; xs: [rows, n], indices: [rows, k].
extern "C" __global__ void topk_f32(const float *xs, uint32_t *indices, size_t n, size_t k) {
    __shared__ uint64_t tile[TILE];
    const float *row = xs + blockIdx.y * n;
    size_t j = blockIdx.x * (size_t)TILE + threadIdx.x;
    uint64_t mine = j < n ? rank_key(row[j], (uint32_t)j) : 0;
    size_t rank = 0;
    for (size_t base = 0; base < n; base += TILE) {
        size_t t = base + threadIdx.x;
        tile[threadIdx.x] = t < n ? rank_key(row[t], (uint32_t)t) : 0;
        __syncthreads();
        size_t m = n - base < TILE ? n - base : TILE;
        for (size_t u = 0; u < m; ++u) rank += tile[u] > mine;
        __syncthreads();
    }
    if (j < n && rank < k) indices[blockIdx.y * k + rank] = (uint32_t)j;
}
