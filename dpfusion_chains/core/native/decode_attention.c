/* One decode step's attention over a KV cache whose rows share an opening, as one fused pass.
 *
 * Built and loaded by dpfusion_chains/core/native_attention.py (its docstring says why and
 * what was measured). For each (row, key/value head), in parallel over torch's own OpenMP pool:
 * the scores of the head's query heads against the opening (read from row 0) and against the
 * row's own attended columns, a softmax over both, then the weighted values; float32 throughout,
 * half-precision caches converted as they are read. Nothing is allocated per column; a column's
 * keys and values are read once per four query heads.
 *
 * Written over the vector primitives of simd.h (AVX-512F or AVX2); without them this file
 * compiles to a stub answering 1 (not computed). Takes a head dim that is a multiple of the lane
 * count, at most 256.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "simd.h"

#ifdef DPF_SIMD
#define MAX_CHUNKS (256 / LANES) /* head dim / LANES */
#define HEADS_AT_ONCE 4 /* query heads scored per pass over a key/value head's columns (attend's switches take 1-4) */
#define MAX_GROUP 64  /* query heads per key/value head */

/* e^x for x <= 0 (a softmax's scores less their max): Cephes' expf polynomial, ~1 ulp; 0 below
 * -87 (masked columns' -inf included), where e^x is under float32's smallest normal anyway */
static inline vec exp_nonpositive(vec x) {
    const vec kept_x = x;
    x = v_max(x, v_set1(-87.f));
    vec n = round_nearest(v_mul(x, v_set1(1.44269504088896341f)));
    vec f = v_fmadd(n, v_set1(-0.693359375f), x);
    f = v_fmadd(n, v_set1(2.12194440e-4f), f);
    vec p = v_set1(1.9875691500e-4f);
    p = v_fmadd(p, f, v_set1(1.3981999507e-3f));
    p = v_fmadd(p, f, v_set1(8.3334519073e-3f));
    p = v_fmadd(p, f, v_set1(4.1665795894e-2f));
    p = v_fmadd(p, f, v_set1(1.6666665459e-1f));
    p = v_fmadd(p, f, v_set1(5.0000001201e-1f));
    p = v_fmadd(p, v_mul(f, f), v_add(f, v_set1(1.f)));
    return scale_kept(p, n, kept_x);
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

/* LANES lanes whose sum is the dot product of a query head and a key (chunks × LANES elements). */
static inline __attribute__((always_inline)) vec dot_parts(const vec *q, const vec *k, const int chunks) {
    vec even = v_mul(q[0], k[0]), odd = v_zero();
    for (int c = 1; c < chunks; ++c) {
        if (c & 1) odd = v_fmadd(q[c], k[c], odd);
        else even = v_fmadd(q[c], k[c], even);
    }
    return v_add(even, odd);
}

/* Scores of query heads [g0, g0 + gn) of a (row, head) against its n columns (masked ones -inf),
 * each head's in `stride` floats, the columns from n to stride -inf too. gn and chunks are
 * constants where it is inlined, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void score(const Step *s, int row, int head, int g0, int64_t n,
                                                        int64_t stride, float *scores, const int gn, const int chunks) {
    const int group = s->heads / s->kv_heads;
    const int element = s->dtype == F32 ? 4 : 2;
    const int64_t bytes = (int64_t)s->dim * element, first = s->first[row];
    const uint8_t *mask = s->mask + row * s->mask_stride;
    vec q[HEADS_AT_ONCE][MAX_CHUNKS];
    const vec scale = v_set1(s->scale);
    for (int g = 0; g < gn; ++g) {
        const int64_t at = row * s->query_strides[0] + (int64_t)(head * group + g0 + g) * s->query_strides[1];
        for (int c = 0; c < chunks; ++c) q[g][c] = v_mul(load_lanes(s->queries, at + c * LANES, s->dtype), scale);
    }
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) { /* four columns at a time: their sums reduced together */
        vec part[HEADS_AT_ONCE][4];
        for (int col = 0; col < 4; ++col) {
            if (g0 == 0) prefetch_ahead(s, row, head, j + col, first, n, element, bytes);
            const int64_t at = offset_of(s, s->key_strides, row, head, j + col, first);
            vec k[MAX_CHUNKS];
            for (int c = 0; c < chunks; ++c) k[c] = load_lanes(s->keys, at + c * LANES, s->dtype);
            for (int g = 0; g < gn; ++g) part[g][col] = dot_parts(q[g], k, chunks);
        }
        for (int g = 0; g < gn; ++g)
            _mm_storeu_ps(scores + (g0 + g) * stride + j, sum4(part[g][0], part[g][1], part[g][2], part[g][3]));
        for (int col = 0; col < 4; ++col) /* masked own columns were read (in bounds) but weigh nothing */
            if (j + col >= s->shared_length && !mask[first + j + col - s->shared_length])
                for (int g = 0; g < gn; ++g) scores[(g0 + g) * stride + j + col] = -INFINITY;
    }
    for (; j < n; ++j) {
        if (g0 == 0) prefetch_ahead(s, row, head, j, first, n, element, bytes);
        if (j >= s->shared_length && !mask[first + j - s->shared_length]) {
            for (int g = 0; g < gn; ++g) scores[(g0 + g) * stride + j] = -INFINITY;
            continue;
        }
        const int64_t at = offset_of(s, s->key_strides, row, head, j, first);
        vec k[MAX_CHUNKS];
        for (int c = 0; c < chunks; ++c) k[c] = load_lanes(s->keys, at + c * LANES, s->dtype);
        for (int g = 0; g < gn; ++g) scores[(g0 + g) * stride + j] = v_sum(dot_parts(q[g], k, chunks));
    }
    for (int g = 0; g < gn; ++g)
        for (int64_t pad = n; pad < stride; ++pad) scores[(g0 + g) * stride + pad] = -INFINITY;
}

/* A score row (a multiple of LANES columns, its padding -inf) into its softmax's numerators
 * (e^(score - max)); returns 1 / their sum. */
static inline float softmax_numerators(float *row_scores, int64_t stride) {
    vec top = v_set1(-INFINITY);
    for (int64_t j = 0; j < stride; j += LANES) top = v_max(top, v_loadf(row_scores + j));
    const vec most = v_set1(v_largest(top));
    vec total = v_zero();
    for (int64_t j = 0; j < stride; j += LANES) {
        const vec e = exp_nonpositive(v_sub(v_loadf(row_scores + j), most));
        v_storef(row_scores + j, e);
        total = v_add(total, e);
    }
    const float sum = v_sum(total);
    return sum > 0.f ? 1.f / sum : 0.f;
}

/* Query heads [g0, g0 + gn) of a (row, head): their weights times the values, into out. */
static inline __attribute__((always_inline)) void mix(const Step *s, int row, int head, int g0, int64_t n,
                                                      int64_t stride, const float *scores, const float *inverse,
                                                      float *out_head, const int gn, const int chunks) {
    const int64_t first = s->first[row];
    const uint8_t *mask = s->mask + row * s->mask_stride;
    vec acc[HEADS_AT_ONCE][MAX_CHUNKS];
    for (int g = 0; g < gn; ++g)
        for (int c = 0; c < chunks; ++c) acc[g][c] = v_zero();
    for (int64_t j = 0; j < n; ++j) {
        if (j >= s->shared_length && !mask[first + j - s->shared_length]) continue;
        const int64_t at = offset_of(s, s->value_strides, row, head, j, first);
        vec v[MAX_CHUNKS];
        for (int c = 0; c < chunks; ++c) v[c] = load_lanes(s->values, at + c * LANES, s->dtype);
        for (int g = 0; g < gn; ++g) {
            const vec weight = v_set1(scores[(g0 + g) * stride + j]);
            for (int c = 0; c < chunks; ++c) acc[g][c] = v_fmadd(weight, v[c], acc[g][c]);
        }
    }
    for (int g = 0; g < gn; ++g) {
        const vec scale = v_set1(inverse[g0 + g]);
        for (int c = 0; c < chunks; ++c) v_storef(out_head + (g0 + g) * s->dim + c * LANES, v_mul(acc[g][c], scale));
    }
}

/* Columns of one score row: n rounded up to whole vectors. */
static inline int64_t padded(int64_t n) { return (n + LANES - 1) / LANES * LANES; }

/* One (row, key/value head): its query heads scored, softmaxed and mixed, HEADS_AT_ONCE at a time. */
static inline __attribute__((always_inline)) void attend(const Step *s, int row, int head, float *scores, float *out,
                                                         const int chunks) {
    const int group = s->heads / s->kv_heads;
    const int64_t n = s->shared_length + (s->width - s->first[row]), stride = padded(n);
    float *out_head = out + ((int64_t)row * s->heads + (int64_t)head * group) * s->dim;
    float inverse[MAX_GROUP];
    for (int g0 = 0; g0 < group; g0 += HEADS_AT_ONCE)
        switch (group - g0) {
            case 1: score(s, row, head, g0, n, stride, scores, 1, chunks); break;
            case 2: score(s, row, head, g0, n, stride, scores, 2, chunks); break;
            case 3: score(s, row, head, g0, n, stride, scores, 3, chunks); break;
            default: score(s, row, head, g0, n, stride, scores, HEADS_AT_ONCE, chunks);
        }
    for (int g = 0; g < group; ++g) inverse[g] = softmax_numerators(scores + g * stride, stride);
    for (int g0 = 0; g0 < group; g0 += HEADS_AT_ONCE)
        switch (group - g0) {
            case 1: mix(s, row, head, g0, n, stride, scores, inverse, out_head, 1, chunks); break;
            case 2: mix(s, row, head, g0, n, stride, scores, inverse, out_head, 2, chunks); break;
            case 3: mix(s, row, head, g0, n, stride, scores, inverse, out_head, 3, chunks); break;
            default: mix(s, row, head, g0, n, stride, scores, inverse, out_head, HEADS_AT_ONCE, chunks);
        }
}

static void attend_any(const Step *s, int row, int head, float *scores, float *out) {
    if (s->dim < LANES) __builtin_unreachable(); /* checked on entry; tells the compiler k[0] is loaded */
    attend(s, row, head, scores, out, s->dim / LANES);
}
static void attend_64(const Step *s, int row, int head, float *scores, float *out) {
    attend(s, row, head, scores, out, 64 / LANES);
}
static void attend_128(const Step *s, int row, int head, float *scores, float *out) {
    attend(s, row, head, scores, out, 128 / LANES);
}

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
    if (dtype < F32 || dtype > F16 || dim % LANES || dim < LANES || dim / LANES > MAX_CHUNKS || kv_heads < 1
        || heads % kv_heads || heads / kv_heads > MAX_GROUP || shared_length < 0)
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
    const int64_t buffer = (int64_t)(heads / kv_heads) * padded(shared_length + longest);
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

#else /* neither AVX-512F nor AVX2 with FMA and F16C at build time: the loader keeps torch's ops */
int dpf_decode_attention(void) { return 1; }
#endif
