/* A linear layer's product for a few rows of input, streaming the weight once.
 *
 * Built and loaded by dpfusion_chains/core/native_linear.py (its docstring says why and what was
 * measured). out[m, n] = x[m, :] · weight[n, :] (+ bias[n]) for float32 x [rows, k] (rows apart
 * by a stride) and a contiguous float32 weight [n, k]: in parallel over torch's OpenMP pool, each
 * thread takes a contiguous run of the weight's rows, four at a time; the four rows (4·k floats,
 * in L1) are multiplied with the input rows three at a time, twelve dot products accumulated in
 * registers, so the weight is read from memory once and the input from cache. Written over
 * simd.h's primitives; k must be a multiple of LANES. Without them, a stub answering 1.
 */
#include <stdint.h>

#include "simd.h"

#ifdef DPF_SIMD
#define WEIGHT_ROWS 4 /* a block's weight rows: sum4 reduces four accumulators at once */
#define INPUT_ROWS 3  /* 4 × 3 accumulators and 4 weight vectors fill AVX2's 16 registers */
#define PREFETCH_BLOCKS 2 /* the weight rows asked for ahead, in blocks (1, 2 and 4 measured alike) */

/* The four dot products of one input row with the block's weight rows, for INPUT_ROWS rows
 * (rows past the input's last repeat it; their sums are not stored). Meanwhile `ahead_count`
 * weight rows of a later block, from `ahead` on, are asked for a cache line at a time (inlined
 * for each call's count: a loop over a variable one cost the 16-row products their registers). */
static inline __attribute__((always_inline)) void block_products(
        const float *const x[INPUT_ROWS], const float *w, int64_t k, const float *ahead, int ahead_count,
        __m128 sums[INPUT_ROWS]) {
    vec a[INPUT_ROWS][WEIGHT_ROWS];
    for (int r = 0; r < INPUT_ROWS; ++r)
        for (int c = 0; c < WEIGHT_ROWS; ++c) a[r][c] = v_zero();
    for (int64_t i = 0; i < k; i += LANES) {
        vec wv[WEIGHT_ROWS];
        for (int c = 0; c < WEIGHT_ROWS; ++c) wv[c] = v_loadf(w + c * k + i);
        if ((i & 15) == 0)
            for (int c = 0; c < ahead_count; ++c) _mm_prefetch((const char *)(ahead + c * k + i), _MM_HINT_T0);
        for (int r = 0; r < INPUT_ROWS; ++r) {
            const vec xv = v_loadf(x[r] + i);
            for (int c = 0; c < WEIGHT_ROWS; ++c) a[r][c] = v_fmadd(wv[c], xv, a[r][c]);
        }
    }
    for (int r = 0; r < INPUT_ROWS; ++r) sums[r] = sum4(a[r][0], a[r][1], a[r][2], a[r][3]);
}

/* Returns 0, or 1 when k is not a multiple of LANES or a size is not positive (nothing written). */
int dpf_few_row_linear(const float *x, int64_t rows, int64_t x_stride, int64_t k, const float *weight, int64_t n,
                       const float *bias, float *out) {
    if (rows < 1 || k < LANES || k % LANES || n < 1 || x_stride < k) return 1;
    const int64_t blocks = n / WEIGHT_ROWS;
    /* The hardware's prefetcher alone left the weight's reads and the products apart: asking for
     * the block PREFETCH_BLOCKS ahead, spread over this block's passes over the input (pass j of
     * a few passes asks for its share of the rows, of many passes for row j % 4), took SmolLM2's
     * 30 layers and output layer, cold, on the Zen 3 from 83-86 to 65-70 ms for 16 rows and from
     * 47-50 to 40-41 ms for 4 (two runs alternating in one process). */
    const int64_t passes = (rows + INPUT_ROWS - 1) / INPUT_ROWS;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t first = b * WEIGHT_ROWS;
        const float *w = weight + first * k, *ahead = w + PREFETCH_BLOCKS * WEIGHT_ROWS * k;
        const int later = b + PREFETCH_BLOCKS < blocks;
        for (int64_t r = 0; r < rows; r += INPUT_ROWS) {
            const float *in[INPUT_ROWS];
            for (int j = 0; j < INPUT_ROWS; ++j) in[j] = x + (r + j < rows ? r + j : r) * x_stride;
            const int64_t pass = r / INPUT_ROWS;
            __m128 sums[INPUT_ROWS];
            if (!later)
                block_products(in, w, k, ahead, 0, sums);
            else if (passes >= WEIGHT_ROWS)
                block_products(in, w, k, ahead + pass % WEIGHT_ROWS * k, 1, sums);
            else {
                const int64_t from = pass * WEIGHT_ROWS / passes, to = (pass + 1) * WEIGHT_ROWS / passes;
                block_products(in, w, k, ahead + from * k, (int)(to - from), sums);
            }
            for (int j = 0; j < INPUT_ROWS && r + j < rows; ++j) {
                __m128 s = sums[j];
                if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias + first));
                _mm_storeu_ps(out + (r + j) * n + first, s);
            }
        }
    }
    for (int64_t c = blocks * WEIGHT_ROWS; c < n; ++c) /* the last 1-3 weight rows, one by one */
        for (int64_t r = 0; r < rows; ++r) {
            vec acc = v_zero();
            for (int64_t i = 0; i < k; i += LANES)
                acc = v_fmadd(v_loadf(weight + c * k + i), v_loadf(x + r * x_stride + i), acc);
            out[r * n + c] = v_sum(acc) + (bias ? bias[c] : 0.f);
        }
    return 0;
}

#else
int dpf_few_row_linear(void) { return 1; }
#endif
