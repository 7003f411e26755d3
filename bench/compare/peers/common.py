"""Timing and recording helpers shared by the peer scripts (JAX, JAX + optax, CasADi).

How a steady-state figure is measured:
  * a few warm-up calls after the first (compiling) call;
  * the loop length n is grown until one loop takes at least 50 ms, then scaled so that one
    repeat lasts about COMPARE_TARGET_S seconds;
  * COMPARE_REPEATS repeats of that loop with the garbage collector off; the record keeps the
    median and the minimum of the per-call times of the repeats.
The machine may be shared, so before each measurement the helper waits (a few seconds at most)
until other processes use less than a quarter of a core, and measures again, up to
COMPARE_ATTEMPTS times, when another process disturbed the measurement; the attempt with the
least foreign load is kept, and the record says how loaded the machine was (`foreign_load`:
cores kept busy by other processes, from /proc/stat).

COMPARE_SMOKE=1 makes every figure quick and rough (short loops, three repeats, no waiting, one
fresh process per first call): for testing the harness, never for a table that is published.

Each measurement becomes one JSON line in the file given by --out:
  {"record": <workload record id>, "peer": "jax" | "jax-1core" | "casadi", "variant": ...,
   "median_s": ..., "min_s": ..., "first_call_s": ..., other fields}
A process pinned to fewer cores than the machine has (`taskset -c 0`) records its peer name
with a "-<n>core" suffix; run.py takes the faster of the two for every JAX figure.
"""
import gc
import json
import os
import statistics
import subprocess
import sys
import time

SMOKE = os.environ.get("COMPARE_SMOKE", "0") == "1"
TARGET_S = float(os.environ.get("COMPARE_TARGET_S", "0.05" if SMOKE else "1.0"))
REPEATS = int(os.environ.get("COMPARE_REPEATS", "3" if SMOKE else "7"))
QUIET_WAIT_S = float(os.environ.get("COMPARE_QUIET_WAIT_S", "0" if SMOKE else "10"))
QUIET_LEVEL = 0.25
ATTEMPTS = int(os.environ.get("COMPARE_ATTEMPTS", "1" if SMOKE else "3"))
FIRST_CALL_REPS = 1 if SMOKE else 3
# The pass pinned to one core measures steady states only (first calls: both cores).
STEADY_ONLY = "--steady-only" in sys.argv

_busy_streak = False  # set when the last wait timed out: the load looks persistent


def _cpu_busy_s():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(p) for p in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _foreign_busy(sample_s=0.5):
    """Cores kept busy by other processes over a short sample (None when unknown)."""
    s0, c0, w0 = _cpu_busy_s(), time.process_time(), time.perf_counter()
    if s0 is None:
        return None
    time.sleep(sample_s)
    s1, c1, w1 = _cpu_busy_s(), time.process_time(), time.perf_counter()
    return max(0.0, (s1 - s0 - (c1 - c0)) / (w1 - w0))


def _wait_quiet():
    """Waits until other processes use less than QUIET_LEVEL cores, at most QUIET_WAIT_S
    seconds (two while the load looks persistent). Returns (seconds waited, timed out)."""
    global _busy_streak
    if QUIET_WAIT_S <= 0:
        return 0.0, False
    limit = min(QUIET_WAIT_S, 2.0) if _busy_streak else QUIET_WAIT_S
    t0 = time.perf_counter()
    while True:
        load = _foreign_busy()
        if load is None or load < QUIET_LEVEL:
            _busy_streak = False
            return round(time.perf_counter() - t0, 1), False
        if time.perf_counter() - t0 >= limit:
            _busy_streak = True
            return round(time.perf_counter() - t0, 1), True


def _measure_once(fn, warmup):
    for _ in range(warmup):
        fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= 0.05:
            break
        n *= 4
    n = max(1, int(round(n * TARGET_S / dt)))
    times = []
    gc_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        s0, c0, w0 = _cpu_busy_s(), time.process_time(), time.perf_counter()
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times.append((time.perf_counter() - t0) / n)
        wall = time.perf_counter() - w0
        own = time.process_time() - c0
        s1 = _cpu_busy_s()
    finally:
        if gc_on:
            gc.enable()
    foreign = None if s0 is None else round(max(0.0, (s1 - s0 - own) / wall), 2)
    return dict(calls=n, median_s=statistics.median(times), min_s=min(times),
                cpu_util=round(own / wall, 2), foreign_load=foreign)


def timeit_calls(fn, warmup=3):
    """Per-call time of fn() in the steady state (see the module's description)."""
    best = None
    for attempt in range(1, ATTEMPTS + 1):
        waited, timed_out = _wait_quiet()
        r = _measure_once(fn, warmup)
        r["waited_s"] = waited
        if best is None or (r["foreign_load"] or 0) < (best["foreign_load"] or 0):
            best = r
        if r["foreign_load"] is None or r["foreign_load"] <= QUIET_LEVEL or timed_out:
            break
    best["attempts"] = attempt
    return best


def first_call_fresh(script, name, reps=None):
    """Median over `reps` fresh processes of `script --first-call name`, which must print one
    JSON line with "first_call_s" last; no cache of this process can help the first call.
    None in a --steady-only pass."""
    if STEADY_ONLY:
        return None
    reps = FIRST_CALL_REPS if reps is None else reps
    times = []
    for _ in range(reps):
        p = subprocess.run([sys.executable, script, "--first-call", name],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"first call of {name} failed:\n{p.stderr[-2000:]}")
        times.append(json.loads(p.stdout.strip().splitlines()[-1])["first_call_s"])
    return statistics.median(times)


def peer_name(base):
    """`base`, or `base-<n>core` when this process is pinned to fewer cores than exist."""
    try:
        mine = len(os.sched_getaffinity(0))
    except AttributeError:
        return base
    total = os.cpu_count() or mine
    return f"{base}-{mine}core" if mine < total else base


class Recorder:
    """Appends one JSON object per measurement to the --out file and echoes it to stderr."""

    def __init__(self, base, out, packages=()):
        from importlib.metadata import version

        self.peer = peer_name(base)
        self.version = {p: version(p) for p in packages}
        self.path = out
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            open(out, "w").close()

    def add(self, record, result=None, **fields):
        rec = dict(record=record, peer=self.peer, **fields, **(result or {}), **(self.version or {}))
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        timed = ("median_s", "min_s", "first_call_s", "build_s")
        shown = " ".join(f"{k}={fmt(v) if k in timed else v}" for k, v in rec.items()
                         if k not in ("record", "peer"))
        print(f"[{self.peer}] {record:<24s} {shown}", file=sys.stderr, flush=True)


def fmt(s):
    """A duration in seconds in a readable unit."""
    if not isinstance(s, (int, float)):
        return str(s)
    if s < 1e-6:
        return f"{s * 1e9:.1f}ns"
    if s < 1e-3:
        return f"{s * 1e6:.2f}us"
    if s < 1:
        return f"{s * 1e3:.3f}ms"
    return f"{s:.3f}s"


def arg(name, default=None):
    """The value after `--name` on the command line, or `default`."""
    flag = f"--{name}"
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def block(x):
    """Waits for JAX's asynchronous dispatch to finish computing x."""
    import jax

    return jax.block_until_ready(x)
