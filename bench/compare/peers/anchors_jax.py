"""JAX's side of the anchor workloads P1-P7 and the first calls C-P1, C-P4, C-P5.

WORKLOADS.md (beside this directory) says what each workload computes; benches/anchors.rs is
ferrax's side. Inputs have the same shapes, dtypes and distributions (NumPy draws them here,
a small generator draws them there, which does not change the work).

    python anchors_jax.py --out FILE [--only P1,P4,...]    # steady state and first calls
    python anchors_jax.py --first-call P1|P4|P5            # internal: one fresh first call
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import STEADY_ONLY, Recorder, arg, block, first_call_fresh, timeit_calls  # noqa: E402

P3_N = 1_000_000
P4_N = 100
P5 = dict(batch=256, d_in=784, d_hidden=256, d_out=10)
P6_EPOCHS, P6_LR = 100, 0.01
P7_N = 100


def jnp_setup():
    import jax

    jax.config.update("jax_enable_x64", True)  # the f32 workloads use explicit f32 arrays
    return jax, jax.numpy


def f1(jnp, x, y, z):
    return jnp.sin(x) * jnp.exp(y) / jnp.log(z)


def rosenbrock(jnp, x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def p5_loss(jnp, params, X, Y):
    W1, b1, W2, b2 = params
    return jnp.mean((jnp.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2)


def p5_data(jax, jnp):
    rng = np.random.default_rng(0)
    f = np.float32
    s = P5
    X = rng.standard_normal((s["batch"], s["d_in"])).astype(f)
    Y = rng.standard_normal((s["batch"], s["d_out"])).astype(f)
    W1 = (rng.standard_normal((s["d_in"], s["d_hidden"])) * 0.05).astype(f)
    W2 = (rng.standard_normal((s["d_hidden"], s["d_out"])) * 0.05).astype(f)
    params = (W1, np.zeros(s["d_hidden"], f), W2, np.zeros(s["d_out"], f))
    put = jax.device_put
    return tuple(put(jnp.asarray(p)) for p in params), put(jnp.asarray(X)), put(jnp.asarray(Y))


def first_call_setup(which):
    """The function and arguments of C-P1, C-P4 or C-P5, not yet called."""
    jax, jnp = jnp_setup()
    if which == "P1":
        return jax.jit(jax.grad(lambda x, y, z: f1(jnp, x, y, z), argnums=(0, 1, 2))), (1.0, 2.0, 3.0)
    if which == "P4":
        x = jax.device_put(jnp.asarray(np.linspace(-1.2, 1.2, P4_N)))
        return jax.jit(jax.hessian(lambda x: rosenbrock(jnp, x))), (x,)
    if which == "P5":
        return jax.jit(jax.value_and_grad(lambda p, X, Y: p5_loss(jnp, p, X, Y))), p5_data(jax, jnp)
    raise SystemExit(f"unknown first-call workload {which}")


def first_call(which):
    """Trace + lower + compile + first run in this fresh process; the imports, the backend's
    start and placing the inputs are not counted (JAX has no persistent cache configured)."""
    import jax

    jax.devices()
    fn, args = first_call_setup(which)
    block(args)
    t0 = time.perf_counter()
    block(fn(*args))
    return time.perf_counter() - t0


def steady(rec, want):
    jax, jnp = jnp_setup()
    put = jax.device_put
    if want("P1"):
        g1 = jax.jit(jax.grad(lambda x, y, z: f1(jnp, x, y, z), argnums=(0, 1, 2)))
        rec.add("P1", timeit_calls(lambda: block(g1(1.0, 2.0, 3.0))), variant="python floats")
        xa, ya, za = (put(jnp.asarray(v, jnp.float64)) for v in (1.0, 2.0, 3.0))
        rec.add("P1", timeit_calls(lambda: block(g1(xa, ya, za))), variant="jax arrays")
    if want("P2"):
        g4 = jax.jit(jax.grad(jax.grad(jax.grad(jax.grad(jnp.tanh)))))
        xa = jnp.asarray(0.5, jnp.float64)
        rec.add("P2", timeit_calls(lambda: block(g4(xa))), variant="jax array", value=float(g4(xa)))
    if want("P3"):
        g3 = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) ** 2 * jnp.exp(-x * x) + jnp.log1p(x * x))))
        for dt, name in ((np.float32, "P3-f32"), (np.float64, "P3-f64")):
            x = put(jnp.asarray(np.random.default_rng(0).uniform(-3.0, 3.0, P3_N).astype(dt)))
            assert g3(x).dtype == dt
            rec.add(name, timeit_calls(lambda: block(g3(x))))
    if want("P4"):
        h4 = jax.jit(jax.hessian(lambda x: rosenbrock(jnp, x)))
        x = put(jnp.asarray(np.linspace(-1.2, 1.2, P4_N)))
        assert h4(x).shape == (P4_N, P4_N)
        rec.add("P4", timeit_calls(lambda: block(h4(x))))
    if want("P5"):
        vg5 = jax.jit(jax.value_and_grad(lambda p, X, Y: p5_loss(jnp, p, X, Y)))
        params, X, Y = p5_data(jax, jnp)
        rec.add("P5", timeit_calls(lambda: block(vg5(params, X, Y))), loss=float(vg5(params, X, Y)[0]))
    if want("P6"):
        # NumPy's legacy seeded generator, as the project's examples/data/linreg_seed42.csv.
        np.random.seed(42)
        Xn = (np.random.rand(100, 1) * 10).astype(np.float32)
        yn = (2 * Xn + 1 + np.random.randn(100, 1)).astype(np.float32)
        X, y = put(jnp.asarray(Xn)), put(jnp.asarray(yn))
        w0, b0 = jnp.zeros((1, 1), jnp.float32), jnp.zeros((1,), jnp.float32)
        lr = np.float32(P6_LR)

        def mse(w, b):
            return jnp.mean((X @ w + b - y) ** 2)

        def step(wb):
            gw, gb = jax.grad(mse, argnums=(0, 1))(*wb)
            return wb[0] - lr * gw, wb[1] - lr * gb

        train = jax.jit(lambda w, b: jax.lax.fori_loop(0, P6_EPOCHS, lambda i, wb: step(wb), (w, b)))
        w, b = train(w0, b0)
        rec.add("P6", timeit_calls(lambda: block(train(w0, b0))), variant="whole loop in jit (fori_loop)",
                w=float(w[0, 0]), b=float(b[0]))
    if want("P7"):
        rng = np.random.default_rng(0)
        W = put(jnp.asarray(rng.standard_normal((P7_N, P7_N)) / np.sqrt(P7_N)))
        x = put(jnp.asarray(rng.standard_normal(P7_N)))
        b = put(jnp.asarray(rng.standard_normal(P7_N) * 0.1))
        f7 = lambda x, W, b: jnp.tanh(W @ x + b)  # noqa: E731
        jf, jr = jax.jit(jax.jacfwd(f7)), jax.jit(jax.jacrev(f7))
        np.testing.assert_allclose(np.asarray(jf(x, W, b)), np.asarray(jr(x, W, b)), rtol=1e-12, atol=1e-14)
        rec.add("P7-jacfwd", timeit_calls(lambda: block(jf(x, W, b))))
        rec.add("P7-jacrev", timeit_calls(lambda: block(jr(x, W, b))))
    for which in ("P1", "P4", "P5"):
        if want(f"C-{which}") and not STEADY_ONLY:
            rec.add(f"C-{which}", median_s=first_call_fresh(__file__, which))


def main():
    if "--first-call" in sys.argv:
        import json

        print(json.dumps({"first_call_s": first_call(arg("first-call"))}))
        return
    only = arg("only")
    only = None if only is None else set(only.split(","))

    def want(name):
        return only is None or name in only or name.split("-")[0] in only

    steady(Recorder("jax", arg("out"), ("jax",)), want)


if __name__ == "__main__":
    main()
