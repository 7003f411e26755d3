"""JAX's side of the Taylor-mode and nested-derivative workloads (examples/taylor.rs is ferrax's).

jet-k<k>: `jax.experimental.jet.jet` of tanh at x = 0.5 with a general series of k terms
(the first term 1, the others 0), jitted. Recorded: the equations of its jaxpr with the terms as
k scalar arguments (so that no slicing adds equations; counted through sub-jaxprs), and the
first call in a fresh process (trace + lower + compile + run) and per-call time of the jitted
form that takes the series as one array.

nested-k<k>: grad applied k times to tanh; the equations of its jaxpr (through sub-jaxprs) and,
for k <= 8, the instructions of XLA's optimised HLO module.

    python jet_jax.py --out FILE [--ks 4,8,16,20] [--nested-kmax 10]
    python jet_jax.py --first-call K      # internal: one fresh first call of jet-k<K>
"""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Recorder, arg, block, first_call_fresh, timeit_calls  # noqa: E402


def setup():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax, jax.numpy


def count_eqns(jaxpr):
    """Equations of a jaxpr, counting those of sub-jaxprs held in equation parameters."""
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    total += count_eqns(inner)
                elif hasattr(sub, "eqns"):
                    total += count_eqns(sub)
    return total


def jet_fn(jax, jnp, k):
    """The jet of tanh with k series terms as separate arguments (whose jaxpr is counted), and the
    jitted form that is timed, which takes the series as one array, as ferrax's jitted jet does:
    passing k scalars to a jitted function costs JAX about 2 µs per argument per call."""
    from jax.experimental.jet import jet

    def f(x, *terms):
        primal, series = jet(jnp.tanh, (x,), (list(terms),))
        return primal, series

    def g(x, s):
        primal, series = jet(jnp.tanh, (x,), ([s[i] for i in range(k)],))
        return primal, jnp.stack(series)

    x = jnp.asarray(0.5, jnp.float64)
    terms = [jnp.asarray(1.0 if i == 0 else 0.0, jnp.float64) for i in range(k)]
    s = jnp.asarray([1.0] + [0.0] * (k - 1), jnp.float64)
    return (f, [x] + terms), jax.jit(g), [jax.device_put(a) for a in (x, s)]


def first_call(k):
    jax, jnp = setup()
    jax.devices()
    _, fn, args = jet_fn(jax, jnp, k)
    block(args)
    t0 = time.perf_counter()
    block(fn(*args))
    return time.perf_counter() - t0


HLO_INSTR = re.compile(r"^\s*(ROOT\s+)?[%\w.\-]+\s*=\s*\S+")


def hlo_ops(text):
    return sum(1 for line in text.splitlines() if HLO_INSTR.match(line))


def main():
    if "--first-call" in sys.argv:
        print(json.dumps({"first_call_s": first_call(int(arg("first-call")))}))
        return
    jax, jnp = setup()
    rec = Recorder("jax", arg("out"), ("jax",))
    for k in [int(v) for v in arg("ks", "4,8,16,20").split(",")]:
        (f, fargs), fn, args = jet_fn(jax, jnp, k)
        eqns = count_eqns(jax.make_jaxpr(f)(*fargs).jaxpr)
        _, series = fn(*args)
        rec.add(f"jet-k{k}", timeit_calls(lambda: block(fn(*args))), eqns=eqns,
                first_call_s=first_call_fresh(__file__, str(k)), value=float(series[-1]))
    g = jnp.tanh
    for k in range(1, int(arg("nested-kmax", "10")) + 1):
        g = jax.grad(g)
        eqns = count_eqns(jax.make_jaxpr(g)(0.5).jaxpr)
        fields = dict(eqns=eqns)
        if k <= 8:
            fields["hlo_ops"] = hlo_ops(jax.jit(g).lower(0.5).compile().as_text())
        rec.add(f"nested-k{k}", **fields)


if __name__ == "__main__":
    main()
