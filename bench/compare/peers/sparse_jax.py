"""JAX's side of the chained Rosenbrock Hessian workloads (examples/sparse_hessian.rs is
ferrax's). JAX has no sparse derivatives; what a JAX user has is:

rosenbrock-dense-hessian-n<n>: `jit(hessian(f))`, the dense n x n matrix (only where it fits
in memory: 8 n^2 bytes for the result alone).
rosenbrock-hvp-n<n>: one Hessian-vector product, `jit` of `jvp(grad(f))`.
rosenbrock-hvp3-n<n>: the compressed Hessian a user could write by hand knowing the
tridiagonal pattern: three HVPs along the colour seeds (e_i summed over i = c mod 3), batched by
`vmap`, without the decompression into the nonzeros.

Each record has median_s (per call) and first_call_s (trace + compile + first call in this
process, right after the imports; each function is new, so nothing is cached).

    python sparse_jax.py --out FILE [--dense-n 1000,10000] [--hvp-n 10000,100000,1000000]
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Recorder, arg, block, timeit_calls  # noqa: E402


def main():
    import jax

    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def f(x):
        a, b = x[:-1], x[1:]
        return jnp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

    def hvp(x, v):
        return jax.jvp(jax.grad(f), (x,), (v,))[1]

    rec = Recorder("jax", arg("out"), ("jax",))

    def point(n):
        return jax.device_put(jnp.asarray(1.0 + 0.5 * np.sin(np.arange(n, dtype=np.float64))))

    def run(record, fn, args, n):
        t0 = time.perf_counter()
        block(fn(*args))
        first = time.perf_counter() - t0
        rec.add(record, timeit_calls(lambda: block(fn(*args))), first_call_s=first, n=n)

    for n in [int(float(v)) for v in arg("dense-n", "1000,10000").split(",") if v]:
        run(f"rosenbrock-dense-hessian-n{n}", jax.jit(jax.hessian(f)), (point(n),), n)
    for n in [int(float(v)) for v in arg("hvp-n", "10000,100000,1000000").split(",") if v]:
        x = point(n)
        v = jax.device_put(jnp.asarray(np.cos(np.arange(n, dtype=np.float64))))
        run(f"rosenbrock-hvp-n{n}", jax.jit(hvp), (x, v), n)
        seeds = jax.device_put(jnp.asarray(
            (np.arange(n)[None, :] % 3 == np.arange(3)[:, None]).astype(np.float64)))
        run(f"rosenbrock-hvp3-n{n}", jax.jit(jax.vmap(hvp, in_axes=(None, 0))), (x, seeds), n)


if __name__ == "__main__":
    main()
