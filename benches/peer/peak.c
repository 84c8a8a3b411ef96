/* One core's fused multiply-add peak, in GFLOP/s: 24 independent AVX-512 (or, with -DAVX2,
 * 12 AVX2: 16 registers hold no more without spilling) accumulators, a billion updates in
 * all, no memory traffic. The ceiling every
 * network's GFLOP/s in benches/README.md is set against.
 *
 *   gcc -O2 -mavx512f -mfma benches/peer/peak.c -o /tmp/peak && /tmp/peak
 *   gcc -O2 -mavx2 -mfma -DAVX2 benches/peer/peak.c -o /tmp/peak2 && /tmp/peak2
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#ifdef AVX2
typedef __m256 V;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define SUM(v) ({ float t[8]; _mm256_storeu_ps(t, v); t[0] + t[7]; })
#define N 12
#else
typedef __m512 V;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define SUM(v) _mm512_reduce_add_ps(v)
#define N 24
#endif

int main(void) {
    V acc[N];
    for (int i = 0; i < N; i++) acc[i] = SET1((float)i);
    V a = SET1(0.999999f), b = SET1(1e-7f);
    long iters = 1000000000L / N;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < N; i++) acc[i] = FMA(acc[i], a, b);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    V s = acc[0];
    for (int i = 1; i < N; i++) s = ADD(s, acc[i]);
    double sec = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    double flop = 2.0 * LANES * (double)iters * N;
    printf("%.1f GFLOP/s (%d lanes; checksum %g)\n", flop / sec / 1e9, LANES, (double)SUM(s));
    return 0;
}
