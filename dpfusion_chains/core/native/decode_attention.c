/* One decode step's attention over a KV cache whose rows share an opening, as one fused pass.
 *
 * Built and loaded by dpfusion_chains/core/native_attention.py (its docstring says why and
 * what was measured). For each (row, key/value head), in parallel over torch's own OpenMP pool:
 * the scores of the head's query heads against the opening (read from row 0) and against the
 * row's own attended columns, a softmax over both, then the weighted values; float32 throughout,
 * half-precision caches converted as they are read. Nothing is allocated per column; a column's
 * keys and values are read once per four query heads.
 *
 * Needs AVX-512F (the file compiles to a stub that reports itself unusable without it) and a
 * head dim that is a multiple of 16, at most 256.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __AVX512F__
#include <immintrin.h>

enum { F32 = 0, BF16 = 1, F16 = 2 };
#define MAX_CHUNKS 16 /* head dim / 16 */
#define HEADS_AT_ONCE 4 /* query heads scored per pass over a key/value head's columns */
#define MAX_GROUP 64  /* query heads per key/value head */

static inline __m512 load16(const void *base, int64_t index, int dtype) {
    if (dtype == F32) return _mm512_loadu_ps((const float *)base + index);
    __m256i half = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + index));
    if (dtype == BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
    return _mm512_cvtph_ps(half);
}

/* e^x for x <= 0 (a softmax's scores less their max): Cephes' expf polynomial, ~1 ulp; 0 below
 * -87 (masked columns' -inf included), where e^x is under float32's smallest normal anyway */
static inline __m512 exp_nonpositive(__m512 x) {
    const __mmask16 kept = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.f)));
    return _mm512_maskz_mov_ps(kept, _mm512_scalef_ps(p, n));
}

typedef struct {
    const void *queries;                /* [rows, heads, 1, dim] with these strides (rows, heads) */
    int64_t query_strides[2];
    float scale;
    const void *keys, *values;         /* cache tensors, [rows, kv_heads, columns, dim] with these strides */
    int64_t key_strides[3], value_strides[3];
    int dtype, heads, kv_heads, dim;
    int64_t shared_start, shared_length; /* the opening: row 0's columns [start, start + length) */
    const int64_t *first;                /* per row: its first own column */
    int64_t width;                       /* columns in use */
    const uint8_t *mask;                 /* [rows, mask_stride]: nonzero = attend */
    int64_t mask_stride;
} Step;

#define PREFETCH_COLUMNS 16 /* keys asked for this many columns ahead (4 to 32 measured alike) */
static inline void prefetch_column(const void *base, int64_t index, int element, int64_t bytes) {
    const char *at = (const char *)base + index * element;
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(at + b, _MM_HINT_T0);
}

/* Column j of a (row, head)'s scores: the opening's j-th column, then the row's own columns. */
static inline int64_t offset_of(const Step *s, const int64_t *strides, int row, int head, int64_t j, int64_t first) {
    if (j < s->shared_length) return head * strides[1] + (s->shared_start + j) * strides[2];
    return row * strides[0] + head * strides[1] + (first + j - s->shared_length) * strides[2];
}

/* The first pass over a (row, head)'s columns asks for the keys PREFETCH_COLUMNS ahead and for
 * this column's values (read in the second pass). */
static inline void prefetch_ahead(const Step *s, int row, int head, int64_t j, int64_t first, int64_t n, int element,
                                  int64_t bytes) {
    if (j + PREFETCH_COLUMNS < n)
        prefetch_column(s->keys, offset_of(s, s->key_strides, row, head, j + PREFETCH_COLUMNS, first), element, bytes);
    prefetch_column(s->values, offset_of(s, s->value_strides, row, head, j, first), element, bytes);
}

/* 16 lanes whose sum is the dot product of a query head and a key (chunks × 16 elements). */
static inline __attribute__((always_inline)) __m512 dot_parts(const __m512 *q, const __m512 *k, const int chunks) {
    __m512 even = _mm512_mul_ps(q[0], k[0]), odd = _mm512_setzero_ps();
    for (int c = 1; c < chunks; ++c) {
        if (c & 1) odd = _mm512_fmadd_ps(q[c], k[c], odd);
        else even = _mm512_fmadd_ps(q[c], k[c], even);
    }
    return _mm512_add_ps(even, odd);
}

/* The sums of the lanes of a, b, c and d, in that order (cheaper than four reductions). */
static inline __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 quarters = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                          _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 halves = _mm256_add_ps(_mm512_castps512_ps256(quarters),
                                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(quarters), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
}

/* Scores of query heads [g0, g0 + gn) of a (row, head) against its n columns (masked ones -inf).
 * gn and chunks are constants where it is inlined, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void score(const Step *s, int row, int head, int g0, int64_t n,
                                                        float *scores, const int gn, const int chunks) {
    const int group = s->heads / s->kv_heads;
    const int element = s->dtype == F32 ? 4 : 2;
    const int64_t bytes = (int64_t)s->dim * element, first = s->first[row];
    const uint8_t *mask = s->mask + row * s->mask_stride;
    __m512 q[HEADS_AT_ONCE][MAX_CHUNKS];
    const __m512 scale = _mm512_set1_ps(s->scale);
    for (int g = 0; g < gn; ++g) {
        const int64_t at = row * s->query_strides[0] + (int64_t)(head * group + g0 + g) * s->query_strides[1];
        for (int c = 0; c < chunks; ++c) q[g][c] = _mm512_mul_ps(load16(s->queries, at + c * 16, s->dtype), scale);
    }
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) { /* four columns at a time: their sums reduced together */
        __m512 part[HEADS_AT_ONCE][4];
        for (int col = 0; col < 4; ++col) {
            if (g0 == 0) prefetch_ahead(s, row, head, j + col, first, n, element, bytes);
            const int64_t at = offset_of(s, s->key_strides, row, head, j + col, first);
            __m512 k[MAX_CHUNKS];
            for (int c = 0; c < chunks; ++c) k[c] = load16(s->keys, at + c * 16, s->dtype);
            for (int g = 0; g < gn; ++g) part[g][col] = dot_parts(q[g], k, chunks);
        }
        for (int g = 0; g < gn; ++g)
            _mm_storeu_ps(scores + (g0 + g) * n + j, sum4(part[g][0], part[g][1], part[g][2], part[g][3]));
        for (int col = 0; col < 4; ++col) /* masked own columns were read (in bounds) but weigh nothing */
            if (j + col >= s->shared_length && !mask[first + j + col - s->shared_length])
                for (int g = 0; g < gn; ++g) scores[(g0 + g) * n + j + col] = -INFINITY;
    }
    for (; j < n; ++j) {
        if (g0 == 0) prefetch_ahead(s, row, head, j, first, n, element, bytes);
        if (j >= s->shared_length && !mask[first + j - s->shared_length]) {
            for (int g = 0; g < gn; ++g) scores[(g0 + g) * n + j] = -INFINITY;
            continue;
        }
        const int64_t at = offset_of(s, s->key_strides, row, head, j, first);
        __m512 k[MAX_CHUNKS];
        for (int c = 0; c < chunks; ++c) k[c] = load16(s->keys, at + c * 16, s->dtype);
        for (int g = 0; g < gn; ++g) scores[(g0 + g) * n + j] = _mm512_reduce_add_ps(dot_parts(q[g], k, chunks));
    }
}

/* Each score row of n columns into its softmax's numerators (e^(score - max)); 1 / their sum. */
static inline float softmax_numerators(float *row_scores, int64_t n) {
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 lanes = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        top = _mm512_mask_max_ps(top, lanes, top, _mm512_maskz_loadu_ps(lanes, row_scores + j));
    }
    const __m512 most = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    __m512 total = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 lanes = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(lanes, exp_nonpositive(_mm512_sub_ps(
            _mm512_maskz_loadu_ps(lanes, row_scores + j), most)));
        _mm512_mask_storeu_ps(row_scores + j, lanes, e);
        total = _mm512_add_ps(total, e);
    }
    const float sum = _mm512_reduce_add_ps(total);
    return sum > 0.f ? 1.f / sum : 0.f;
}

/* Query heads [g0, g0 + gn) of a (row, head): their weights times the values, into out. */
static inline __attribute__((always_inline)) void mix(const Step *s, int row, int head, int g0, int64_t n,
                                                      const float *scores, const float *inverse, float *out_head,
                                                      const int gn, const int chunks) {
    const int64_t first = s->first[row];
    const uint8_t *mask = s->mask + row * s->mask_stride;
    __m512 acc[HEADS_AT_ONCE][MAX_CHUNKS];
    for (int g = 0; g < gn; ++g)
        for (int c = 0; c < chunks; ++c) acc[g][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
        if (j >= s->shared_length && !mask[first + j - s->shared_length]) continue;
        const int64_t at = offset_of(s, s->value_strides, row, head, j, first);
        __m512 v[MAX_CHUNKS];
        for (int c = 0; c < chunks; ++c) v[c] = load16(s->values, at + c * 16, s->dtype);
        for (int g = 0; g < gn; ++g) {
            const __m512 weight = _mm512_set1_ps(scores[(g0 + g) * n + j]);
            for (int c = 0; c < chunks; ++c) acc[g][c] = _mm512_fmadd_ps(weight, v[c], acc[g][c]);
        }
    }
    for (int g = 0; g < gn; ++g) {
        const __m512 scale = _mm512_set1_ps(inverse[g0 + g]);
        for (int c = 0; c < chunks; ++c)
            _mm512_storeu_ps(out_head + (g0 + g) * s->dim + c * 16, _mm512_mul_ps(acc[g][c], scale));
    }
}

/* One (row, key/value head): its query heads scored, softmaxed and mixed, HEADS_AT_ONCE at a time. */
static inline __attribute__((always_inline)) void attend(const Step *s, int row, int head, float *scores, float *out,
                                                         const int chunks) {
    const int group = s->heads / s->kv_heads;
    const int64_t n = s->shared_length + (s->width - s->first[row]);
    float *out_head = out + ((int64_t)row * s->heads + (int64_t)head * group) * s->dim;
    float inverse[MAX_GROUP];
    for (int g0 = 0; g0 < group; g0 += HEADS_AT_ONCE)
        switch (group - g0) {
            case 1: score(s, row, head, g0, n, scores, 1, chunks); break;
            case 2: score(s, row, head, g0, n, scores, 2, chunks); break;
            case 3: score(s, row, head, g0, n, scores, 3, chunks); break;
            default: score(s, row, head, g0, n, scores, HEADS_AT_ONCE, chunks);
        }
    for (int g = 0; g < group; ++g) inverse[g] = softmax_numerators(scores + g * n, n);
    for (int g0 = 0; g0 < group; g0 += HEADS_AT_ONCE)
        switch (group - g0) {
            case 1: mix(s, row, head, g0, n, scores, inverse, out_head, 1, chunks); break;
            case 2: mix(s, row, head, g0, n, scores, inverse, out_head, 2, chunks); break;
            case 3: mix(s, row, head, g0, n, scores, inverse, out_head, 3, chunks); break;
            default: mix(s, row, head, g0, n, scores, inverse, out_head, HEADS_AT_ONCE, chunks);
        }
}

static void attend_any(const Step *s, int row, int head, float *scores, float *out) {
    attend(s, row, head, scores, out, s->dim / 16);
}
static void attend_64(const Step *s, int row, int head, float *scores, float *out) { attend(s, row, head, scores, out, 4); }
static void attend_128(const Step *s, int row, int head, float *scores, float *out) { attend(s, row, head, scores, out, 8); }

int dpf_decode_attention_usable(void) { return __builtin_cpu_supports("avx512f"); }

/* Queries, keys and values of one dtype, strides in elements (the last dim's is 1); out: [rows,
 * heads, dim] float32. Returns 0, or 1 when the arguments are outside what this kernel computes
 * (nothing written), 2 when out of memory. */
int dpf_decode_attention(const void *queries, const void *keys, const void *values, int dtype, float scale,
                         int64_t query_row_stride, int64_t query_head_stride,
                         int64_t key_row_stride, int64_t key_head_stride, int64_t key_column_stride,
                         int64_t value_row_stride, int64_t value_head_stride, int64_t value_column_stride,
                         int rows, int heads, int kv_heads, int dim,
                         int64_t shared_start, int64_t shared_length, const int64_t *first, int64_t width,
                         const uint8_t *mask, int64_t mask_stride, float *out) {
    if (dtype < F32 || dtype > F16 || dim % 16 || dim / 16 > MAX_CHUNKS || kv_heads < 1 || heads % kv_heads
        || heads / kv_heads > MAX_GROUP || shared_length < 0)
        return 1;
    Step s = {queries, {query_row_stride, query_head_stride}, scale, keys, values,
              {key_row_stride, key_head_stride, key_column_stride},
              {value_row_stride, value_head_stride, value_column_stride}, dtype, heads, kv_heads, dim,
              shared_start, shared_length, first, width, mask, mask_stride};
    void (*kernel)(const Step *, int, int, float *, float *) =
        dim == 64 ? attend_64 : dim == 128 ? attend_128 : attend_any;
    int64_t longest = 0;
    for (int r = 0; r < rows; ++r)
        if (first[r] < 0 || first[r] > width) return 1;
        else if (width - first[r] > longest) longest = width - first[r];
    const int64_t buffer = (int64_t)(heads / kv_heads) * (shared_length + longest);
    int failed = 0;
#pragma omp parallel
    {
        float *scores = malloc(sizeof(float) * (buffer > 0 ? buffer : 1));
        if (!scores) {
#pragma omp atomic write
            failed = 2;
        }
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < rows * kv_heads; ++task)
            if (scores) kernel(&s, task / kv_heads, task % kv_heads, scores, out);
        free(scores);
    }
    return failed;
}

#else /* no AVX-512 at build time: the loader sees an unusable kernel and keeps torch's ops */
int dpf_decode_attention_usable(void) { return 0; }
int dpf_decode_attention(void) { return 1; }
#endif
