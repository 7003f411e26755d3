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

    def closed_form(x):
        """The tridiagonal Hessian's diagonal and off-diagonal at x, in NumPy."""
        diag = np.zeros_like(x)
        diag[:-1] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
        diag[1:] += 200.0
        return diag, -400.0 * x[:-1]

    def tridiag_times(x, v):
        diag, off = closed_form(x)
        out = diag * v
        out[:-1] += off * v[1:]
        out[1:] += off * v[:-1]
        return out

    def point(n):
        return jax.device_put(jnp.asarray(1.0 + 0.5 * np.sin(np.arange(n, dtype=np.float64))))

    def run(record, fn, args, n, check):
        """Times the first call, checks its result, then times the steady state."""
        t0 = time.perf_counter()
        out = block(fn(*args))
        first = time.perf_counter() - t0
        check(np.asarray(out))
        del out
        rec.add(record, timeit_calls(lambda: block(fn(*args))), first_call_s=first, n=n)

    def close(got, want):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-9), np.abs(got - want).max()

    for n in [int(float(v)) for v in arg("dense-n", "1000,10000").split(",") if v]:
        x = point(n)
        diag, off = closed_form(np.asarray(x))
        run(f"rosenbrock-dense-hessian-n{n}", jax.jit(jax.hessian(f)), (x,), n,
            lambda H: (close(np.diag(H), diag), close(np.diag(H, 1), off)))
    for n in [int(float(v)) for v in arg("hvp-n", "10000,100000,1000000").split(",") if v]:
        x = point(n)
        xn = np.asarray(x)
        vn = np.cos(np.arange(n, dtype=np.float64))
        v = jax.device_put(jnp.asarray(vn))
        run(f"rosenbrock-hvp-n{n}", jax.jit(hvp), (x, v), n, lambda got: close(got, tridiag_times(xn, vn)))
        sn = (np.arange(n)[None, :] % 3 == np.arange(3)[:, None]).astype(np.float64)
        seeds = jax.device_put(jnp.asarray(sn))
        run(f"rosenbrock-hvp3-n{n}", jax.jit(jax.vmap(hvp, in_axes=(None, 0))), (x, seeds), n,
            lambda got: [close(got[c], tridiag_times(xn, sn[c])) for c in range(3)])


if __name__ == "__main__":
    main()
