/* The C side of `cargo run --release --example aot`: calls the exported gradient of the seed
 * function and the chained Rosenbrock Hessian from demo.o through demo.h, prints every result
 * with 17 significant digits (enough to recover each double exactly), and times the gradient
 * call: the median over 25 batches of 200,000 calls of the nanoseconds per call. */

#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    /* The gradient of sin(x) * exp(y) / log(z) at (1, 2, 3). */
    double x = 1.0, y = 2.0, z = 3.0, g[3];
    if (seed_grad(&x, &y, &z, &g[0], &g[1], &g[2], NULL) != 0) {
        return 1;
    }
    printf("grad %.17g %.17g %.17g\n", g[0], g[1], g[2]);

    /* The dense Hessian of the chained Rosenbrock function at x_i = -1.2 + 2.4 i / (n - 1). */
    double xs[ROSEN_HESSIAN_IN0_LEN];
    double h[ROSEN_HESSIAN_OUT0_LEN];
    for (int i = 0; i < ROSEN_HESSIAN_IN0_LEN; i++) {
        xs[i] = -1.2 + 2.4 * i / (ROSEN_HESSIAN_IN0_LEN - 1);
    }
    /* The workspace: caller-owned, aligned to FERRAX_AOT_ALIGN. */
    void *ws = NULL;
    if (ROSEN_HESSIAN_WORKSPACE_BYTES > 0) {
        size_t bytes = (ROSEN_HESSIAN_WORKSPACE_BYTES + FERRAX_AOT_ALIGN - 1) / FERRAX_AOT_ALIGN
                       * FERRAX_AOT_ALIGN;
        ws = aligned_alloc(FERRAX_AOT_ALIGN, bytes);
        if (ws == NULL) {
            return 1;
        }
    }
    if (rosen_hessian(xs, h, ws) != 0) {
        return 1;
    }
    printf("hessian");
    for (int k = 0; k < ROSEN_HESSIAN_OUT0_LEN; k++) {
        printf(" %.17g", h[k]);
    }
    printf("\n");

    /* Inputs through volatile reads, so the calls are not hoisted out of the loop. */
    volatile double vx = 1.0, vy = 2.0, vz = 3.0;
    double samples[25], sink = 0.0;
    for (int s = 0; s < 25; s++) {
        const int n = 200000;
        double t0 = now_ns();
        for (int i = 0; i < n; i++) {
            double a = vx, b = vy, c = vz;
            seed_grad(&a, &b, &c, &g[0], &g[1], &g[2], NULL);
            sink += g[0] + g[1] + g[2];
        }
        samples[s] = (now_ns() - t0) / n;
    }
    qsort(samples, 25, sizeof(double), compare);
    printf("call_ns %.1f\n", samples[12]);
    printf("sink %g\n", sink);
    free(ws);
    return 0;
}
