"""JAX + optax's side of the model benchmarks (benches/train_step.rs and benches/conv.rs).

Each workload is built with the same shapes, dtypes, activations and initial scales as the Rust
bench (the random numbers differ, which does not change the work) and timed in the steady state
by common.timeit_calls; its first call (building the step, tracing, compiling and running it
once; the imports not counted) is timed in fresh processes, so no cache of this process helps.

    python models_jax.py --out FILE [--only train-spirals,cnn-step,...]
    python models_jax.py --first-call NAME     # internal: one fresh first call
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Recorder, arg, block, first_call_fresh, timeit_calls  # noqa: E402


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


def train_step(loss, params, opt, x, y):
    """One jitted train step (value_and_grad of `loss`, the optax update, apply_updates) and a
    call that runs it on (x, y), carrying the parameters and optimiser state between calls."""
    import jax
    import optax

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


def mlp_step(setup):
    """The train step of a two-layer network built by `setup`."""
    import jax

    params, (x, y), opt, act = setup()

    def loss(p, x, y):
        z = act(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        logp = jax.nn.log_softmax(z, axis=1)
        return -jax.numpy.take_along_axis(logp, y[:, None], 1).mean()

    return train_step(loss, params, opt, x, y)


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

    return train_step(loss, params, opt, x, y)


WORKLOADS = {
    "train-spirals": lambda: mlp_step(spirals_mlp),
    "train-784-256-10": lambda: mlp_step(mnist_mlp),
    "conv-fwd-bwd": conv_fwd_bwd,
    "cnn-step": digits_cnn,
}


def first_call(name):
    """Builds the step, traces, compiles and runs it once in this (fresh) process."""
    import jax
    import optax  # noqa: F401

    jax.devices()
    t0 = time.perf_counter()
    call = WORKLOADS[name]()
    block(call())
    return time.perf_counter() - t0


def main():
    if "--first-call" in sys.argv:
        print(json.dumps({"first_call_s": first_call(arg("first-call"))}))
        return
    only = arg("only")
    names = list(WORKLOADS) if only is None else [n for n in WORKLOADS if n in only.split(",")]
    rec = Recorder("jax", arg("out"), ("jax", "optax"))
    for name in names:
        call = WORKLOADS[name]()
        r = timeit_calls(lambda: block(call()))
        rec.add(name, r, first_call_s=first_call_fresh(__file__, name))


if __name__ == "__main__":
    main()
