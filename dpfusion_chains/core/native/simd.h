/* The vector primitives the native kernels are written over (one definition for both widths).
 *
 * For AVX-512F (16 float lanes) or AVX2 with FMA and F16C (8), whichever the compiler targets
 * (-march=native): `vec`, LANES, SIMD(name) for the ISA's _mm512_/_mm256_ intrinsic of that name,
 * the v_* operations, loads that convert bfloat16 and float16 to float32, the exponential's
 * scaling, sums and maxima of lanes. DPF_SIMD is defined where one of them is; each kernel file
 * compiles to a stub without it, and the loader then keeps torch's ops.
 */
#ifndef DPF_SIMD_H
#define DPF_SIMD_H

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#include <immintrin.h>
#include <stdint.h>

#define DPF_SIMD 1

enum { F32 = 0, BF16 = 1, F16 = 2 };

#ifdef __AVX512F__
#define LANES 16
typedef __m512 vec;
#define SIMD(name) _mm512_##name
#define v_sum _mm512_reduce_add_ps
#define v_largest _mm512_reduce_max_ps

static inline vec load_lanes(const void *base, int64_t index, int dtype) {
    if (dtype == F32) return _mm512_loadu_ps((const float *)base + index);
    __m256i half = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + index));
    if (dtype == BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
    return _mm512_cvtph_ps(half);
}

static inline vec round_nearest(vec x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* p·2^n where the exponential's x >= -87 (kept), else 0 */
static inline vec scale_kept(vec p, vec n, vec x) {
    const __mmask16 kept = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.f), _CMP_GE_OQ);
    return _mm512_maskz_mov_ps(kept, _mm512_scalef_ps(p, n));
}

/* The sums of the lanes of a, b, c and d, in that order (cheaper than four reductions). */
static inline __m128 sum4(vec a, vec b, vec c, vec d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 quarters = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                          _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 halves = _mm256_add_ps(_mm512_castps512_ps256(quarters),
                                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(quarters), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
}

static inline int simd_usable(void) { return __builtin_cpu_supports("avx512f"); }

#else /* AVX2, FMA, F16C */
#define LANES 8
typedef __m256 vec;
#define SIMD(name) _mm256_##name

static inline vec load_lanes(const void *base, int64_t index, int dtype) {
    if (dtype == F32) return _mm256_loadu_ps((const float *)base + index);
    __m128i half = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + index));
    if (dtype == BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
    return _mm256_cvtph_ps(half);
}

static inline vec round_nearest(vec x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/* p·2^n where the exponential's x >= -87 (kept), else 0; n is an integer in [-126, 0] there, so
 * 2^n is built in the exponent field */
static inline vec scale_kept(vec p, vec n, vec x) {
    const __m256 kept = _mm256_cmp_ps(x, _mm256_set1_ps(-87.f), _CMP_GE_OQ);
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_and_ps(kept, _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23))));
}

static inline float v_sum(vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float v_largest(vec x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* The sums of the lanes of a, b, c and d, in that order. */
static inline __m128 sum4(vec a, vec b, vec c, vec d) {
    const __m256 all = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(all), _mm256_extractf128_ps(all, 1));
}

static inline int simd_usable(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

/* The float vector operations, alike for both widths */
#define v_zero SIMD(setzero_ps)
#define v_set1 SIMD(set1_ps)
#define v_add SIMD(add_ps)
#define v_sub SIMD(sub_ps)
#define v_mul SIMD(mul_ps)
#define v_max SIMD(max_ps)
#define v_fmadd SIMD(fmadd_ps)
#define v_loadf SIMD(loadu_ps)
#define v_storef SIMD(storeu_ps)

#endif /* AVX-512F or AVX2 */
#endif /* DPF_SIMD_H */
