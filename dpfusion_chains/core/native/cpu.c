/* What the loader asks first: whether this CPU runs the kernels built here, and their width. */
#include "simd.h"

#ifdef DPF_SIMD
int dpf_native_usable(void) { return simd_usable(); }
int dpf_native_lanes(void) { return LANES; }
#else /* built for neither AVX-512F nor AVX2 with FMA and F16C */
int dpf_native_usable(void) { return 0; }
int dpf_native_lanes(void) { return 0; }
#endif
