#!/usr/bin/env python3
"""JAX's side of the model benchmarks (benches/train_step.rs and benches/conv.rs).

Each workload is built with the same shapes, dtypes and initial scales as the Rust bench, timed
after warm-up as a median over repeats of a loop sized to about TARGET_S seconds, and written as
one JSON line: {"workload", "median_s", "first_call_s"}. The first call (trace, compile and run)
is timed in a fresh subprocess per workload, so no cache of this process helps it.

    benches/jax/run.sh [OUT]       # creates the venv on first use, writes OUT/jax_models.jsonl
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TARGET_S = float(os.environ.get("BENCH_TARGET_S", "0.5"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))


def spirals_mlp():
    """2-32-2 tanh network on 200 points (f64), softmax cross-entropy, Adam(0.02)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(7)
    n = 100
    t = np.arange(n) / n
    xs, ys = [], []
    for c in range(2):
        r = 0.15 + 0.85 * t
        a = 2.5 * np.pi * t + np.pi * c
        xs.append(np.stack([r * np.cos(a), r * np.sin(a)], 1) + 0.03 * rng.normal(size=(n, 2)))
        ys.append(np.full(n, c))
    x = jnp.asarray(np.concatenate(xs), jnp.float64)
    y = jnp.asarray(np.concatenate(ys), jnp.int32)
    params = {
        "w1": jnp.asarray(rng.normal(size=(2, 32)), jnp.float64),
        "b1": jnp.zeros(32, jnp.float64),
        "w2": jnp.asarray(rng.normal(size=(32, 2)) / np.sqrt(32), jnp.float64),
        "b2": jnp.zeros(2, jnp.float64),
    }
    return params, (x, y), optax.adam(0.02), jnp.tanh


def mnist_mlp():
    """784-256-10 tanh network, batch 128, f32, random data, Adam(1e-3)."""
    import jax.numpy as jnp
    import numpy as np
    import optax

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(128, 784)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=128), jnp.int32)
    params = {
        "w1": jnp.asarray(rng.normal(size=(784, 256)) / np.sqrt(784), jnp.float32),
        "b1": jnp.zeros(256, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(256, 10)) / np.sqrt(256), jnp.float32),
        "b2": jnp.zeros(10, jnp.float32),
    }
    return params, (x, y), optax.adam(1e-3), jnp.tanh


def mlp_step(setup):
    import jax
    import optax

    params, (x, y), opt, act = setup()

    def loss(p, x, y):
        z = act(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        logp = jax.nn.log_softmax(z, axis=1)
        return -jax.numpy.take_along_axis(logp, y[:, None], 1).mean()

    @jax.jit
    def step(p, s, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, value

    state = [params, opt.init(params)]

    def call():
        p, s, v = step(state[0], state[1], x, y)
        state[0], state[1] = p, s
        return v

    return call


def conv_fwd_bwd():
    """Gradient w.r.t. both kernels of sum(conv(relu(conv(x, k1)), k2)): batch 32, 28x28,
    1 -> 16 -> 32 channels, 3x3 kernels, SAME padding, stride 1, NCHW/OIHW, f32."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 1, 28, 28)), jnp.float32)
    k1 = jnp.asarray(rng.normal(size=(16, 1, 3, 3)) / 3.0, jnp.float32)
    k2 = jnp.asarray(rng.normal(size=(32, 16, 3, 3)) / 12.0, jnp.float32)
    dn = ("NCHW", "OIHW", "NCHW")

    def f(k1, k2, x):
        h = jax.lax.conv_general_dilated(x, k1, (1, 1), "SAME", dimension_numbers=dn)
        h = jax.nn.relu(h)
        return jax.lax.conv_general_dilated(h, k2, (1, 1), "SAME", dimension_numbers=dn).sum()

    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    return lambda: g(k1, k2, x)


def digits_cnn():
    """The cnn example's train step: 8x8 digits, batch 128, conv 3x3 1->16 SAME, relu,
    2x2 max-pool, conv 3x3 16->32 SAME, relu, dense 512->10, softmax cross-entropy, Adam(1e-3);
    f32."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(128, 1, 8, 8)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=128), jnp.int32)
    params = {
        "k1": jnp.asarray(rng.normal(size=(16, 1, 3, 3)) / 3.0, jnp.float32),
        "c1": jnp.zeros(16, jnp.float32),
        "k2": jnp.asarray(rng.normal(size=(32, 16, 3, 3)) / 12.0, jnp.float32),
        "c2": jnp.zeros(32, jnp.float32),
        "w": jnp.asarray(rng.normal(size=(512, 10)) / np.sqrt(512), jnp.float32),
        "b": jnp.zeros(10, jnp.float32),
    }
    dn = ("NCHW", "OIHW", "NCHW")
    opt = optax.adam(1e-3)

    def loss(p, x, y):
        h = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME", dimension_numbers=dn)
        h = jax.nn.relu(h + p["c1"][None, :, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.lax.conv_general_dilated(h, p["k2"], (1, 1), "SAME", dimension_numbers=dn)
        h = jax.nn.relu(h + p["c2"][None, :, None, None])
        z = h.reshape(h.shape[0], -1) @ p["w"] + p["b"]
        logp = jax.nn.log_softmax(z, axis=1)
        return -jnp.take_along_axis(logp, y[:, None], 1).mean()

    @jax.jit
    def step(p, s, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, value

    state = [params, opt.init(params)]

    def call():
        p, s, v = step(state[0], state[1], x, y)
        state[0], state[1] = p, s
        return v

    return call


WORKLOADS = {
    "train-spirals": lambda: mlp_step(spirals_mlp),
    "train-784-256-10": lambda: mlp_step(mnist_mlp),
    "conv-fwd-bwd": conv_fwd_bwd,
    "cnn-step": digits_cnn,
}


def block(v):
    import jax

    jax.block_until_ready(v)


def first_call(name):
    """Trace, compile and first run of one workload, in this (fresh) process; importing the
    libraries is not counted."""
    import jax  # noqa: F401
    import numpy  # noqa: F401
    import optax  # noqa: F401

    t0 = time.perf_counter()
    call = WORKLOADS[name]()
    block(call())
    return time.perf_counter() - t0


def steady(name):
    call = WORKLOADS[name]()
    for _ in range(5):
        block(call())
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            block(call())
        if time.perf_counter() - t0 >= TARGET_S / 4 or n >= 1 << 20:
            break
        n *= 2
    n = max(1, int(n * TARGET_S / max(time.perf_counter() - t0, 1e-9)))
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(n):
            block(call())
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--first-call", help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", default=list(WORKLOADS))
    a = ap.parse_args()
    if a.first_call:
        print(json.dumps({"first_call_s": first_call(a.first_call)}))
        return
    with open(a.out, "a") as f:
        for name in a.only:
            firsts = []
            for _ in range(3):
                r = subprocess.run(
                    [sys.executable, __file__, "--out", "-", "--first-call", name],
                    check=True, capture_output=True, text=True,
                )
                firsts.append(json.loads(r.stdout.strip().splitlines()[-1])["first_call_s"])
            rec = {
                "workload": name,
                "median_s": steady(name),
                "first_call_s": statistics.median(firsts),
                "jax": __import__("jax").__version__,
            }
            print(json.dumps(rec), flush=True)
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
