#!/usr/bin/env python3
"""ferrax side by side with its peers (JAX, JAX + optax, CasADi, hand-written Rust): one command.

    python3 bench/compare/run.py                       # everything (an hour or more)
    python3 bench/compare/run.py --only sparse,jet     # a subset of the groups
    python3 bench/compare/run.py --smoke --only jet    # quick, rough timings: tests the harness
    python3 bench/compare/run.py --update-readme       # also rewrites the README's tables
    python3 bench/compare/run.py --rounds 3            # alternate the two sides, best of 3 each

Groups: anchors (benches/anchors.rs against JAX and hand-written Rust), models (benches/
train_step.rs and benches/conv.rs against JAX + optax), sparse (examples/sparse_hessian.rs and
examples/sparse_jacobian.rs against CasADi and JAX), jet (examples/taylor.rs against JAX's
jet and nested grad). WORKLOADS.md beside this file says what each workload computes on both
sides; goals.json holds the goals; README.md beside this file explains the ratios.

The peers run in a virtual environment this script creates from requirements.txt (pinned
versions) at ~/.cache/ferrax-compare/venv, or at $FERRAX_COMPARE_VENV; it is reinstalled when
requirements.txt changes. $FERRAX_COMPARE_PYTHON names an existing interpreter to use as it is
(nothing installed; a peer whose package is missing is skipped with a message).

Output (under --out, default target/compare): results.md (the table as Markdown, with the
date, commit, CPU and versions), results.json (every row and the raw figures), ferrax/<group>/
round-<r>/ (the examples' output and criterion's medians), peers/<group>/round-<r>/ (the peers'
JSON lines). Only this script's standard library is used
outside the virtual environment.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(HERE, "peers")
GROUPS = ("anchors", "models", "sparse", "jet")
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "ferrax-compare", "venv")
EXAMPLES = {"sparse": ("sparse_hessian", "sparse_jacobian"), "jet": ("taylor",)}
BEGIN, END = "<!-- compare:{}:begin -->", "<!-- compare:{}:end -->"

# Sizes per group: (full run, smoke run).
SIZES = {
    "hessian_n": ([1_000, 10_000, 100_000, 1_000_000], [1_000, 10_000]),
    "casadi_hessian_n": ([10_000, 100_000], [10_000]),
    "jax_dense_n": ([1_000, 10_000], [1_000]),
    "jax_hvp_n": ([10_000, 100_000, 1_000_000], [10_000]),
    "brusselator_N": ([64, 128, 256], [64]),
    "jet_k": ([4, 8, 16, 20], [4, 20]),
    "nested_kmax": ([10], [8]),
}


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def sizes(name, smoke):
    return SIZES[name][1 if smoke else 0]


def joined(values):
    return ",".join(str(v) for v in values)


# ------------------------------------------------------------------------------ environment

def machine():
    """The CPU model, core count, commit and tool versions this run measured with."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or cpu
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    simd = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), None)
    if simd:
        cpu += f" with {simd}"

    def out(cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if out(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    return dict(cpu=cpu, cores=os.cpu_count(), commit=commit, rustc=out(["rustc", "--version"]),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def peer_python():
    """The interpreter of the peers' virtual environment, created or updated as needed."""
    given = os.environ.get("FERRAX_COMPARE_PYTHON")
    if given:
        log(f"peers use {given} as it is (FERRAX_COMPARE_PYTHON)")
        return given
    venv = os.environ.get("FERRAX_COMPARE_VENV", DEFAULT_VENV)
    python = os.path.join(venv, "bin", "python")
    req = os.path.join(HERE, "requirements.txt")
    with open(req, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(venv, "ferrax-requirements.sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() == digest and os.path.exists(python):
        return python
    if not os.path.exists(python):
        log(f"creating the peers' virtual environment in {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    log(f"installing {req} into {venv} (the first time takes a few minutes)")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", req], check=True)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return python


def has_module(python, module):
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------ ferrax's half

def cargo(args, capture=False):
    """Runs cargo from the repository root; its output (when captured) or None on failure."""
    cmd = ["cargo"] + args
    log(" ".join(cmd))
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", "1")
    p = subprocess.run(cmd, cwd=ROOT, env=env, text=True,
                       stdout=subprocess.PIPE if capture else None)
    if p.returncode != 0:
        log(f"failed ({p.returncode}): {' '.join(cmd)}")
        return None
    return p.stdout if capture else ""


def criterion_args(smoke):
    return ["--", "--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10"] if smoke else []


def example(name, args, out_dir):
    """Runs an example in release mode and keeps its output; None when it does not exist."""
    if not os.path.exists(os.path.join(ROOT, "examples", f"{name}.rs")):
        log(f"examples/{name}.rs is not in this checkout: its rows stay unmeasured")
        return None
    text = cargo(["run", "--release", "--quiet", "--example", name, "--"] + [str(a) for a in args],
                 capture=True)
    if text is None:
        return None
    with open(os.path.join(out_dir, f"{name}.txt"), "w") as f:
        f.write(text)
    return text


def run_ferrax(group, smoke, out_dir):
    """ferrax's half of one group: criterion benches and examples."""
    if group == "anchors":
        cargo(["bench", "--bench", "anchors"] + criterion_args(smoke))
    elif group == "models":
        cargo(["bench", "--bench", "train_step"] + criterion_args(smoke))
        extra = criterion_args(smoke) or ["--"]
        cargo(["bench", "--bench", "conv"] + extra + ["conv-fwd-bwd"])
    elif group == "sparse":
        example("sparse_hessian", sizes("hessian_n", smoke), out_dir)
        example("sparse_jacobian", sizes("brusselator_N", smoke), out_dir)
    elif group == "jet":
        example("taylor", [], out_dir)


NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
PAIR = re.compile(rf"(\w+) = ({NUM})(?![\w.])")


def parse_pairs(text):
    """Lines of `name = value` pairs keyed by their first pair: `n = 1000 nnz = 2998 ...` becomes
    {"n=1000": {"n": 1000, "nnz": 2998, ...}}."""
    out = {}
    for line in text.splitlines():
        pairs = PAIR.findall(line)
        if pairs and line.lstrip().startswith(pairs[0][0]):
            out[f"{pairs[0][0]}={pairs[0][1]}"] = {k: float(v) for k, v in pairs}
    return out


def parse_taylor(text):
    out = {}
    for kind, k, v, n in re.findall(rf"^(jet|nested) d(\d+) tanh\(0\.5\) = ({NUM}) \((\d+) equations\)",
                                    text, re.M):
        out[f"{kind}-k{k}"] = dict(value=float(v), eqns=float(n))
    general = {}
    m = re.search(rf"jit_jet_k20_first_call_ms = ({NUM}).*?(\d+) equations", text)
    if m:
        general.update(first_ms=float(m.group(1)), eqns=float(m.group(2)))
    m = re.search(rf"jit_jet_k20_per_call_us = ({NUM})", text)
    if m:
        general["call_us"] = float(m.group(1))
    if general:
        out["jet-k20-general"] = general
    return out


def example_figures(out_dir):
    figs = {}
    for name, parse in (("sparse_hessian", parse_pairs), ("sparse_jacobian", parse_pairs),
                        ("taylor", parse_taylor)):
        p = os.path.join(out_dir, f"{name}.txt")
        if os.path.exists(p):
            with open(p) as f:
                figs[name] = parse(f.read())
    return figs


def round_dir(base, group, r):
    """The directory of one group's figures from round r (created)."""
    d = os.path.join(base, group, f"round-{r}")
    os.makedirs(d, exist_ok=True)
    return d


def ferrax_rounds(group_dir):
    """Every round's figures of one group of ferrax's half: [{figs, crit}]."""
    if not os.path.isdir(group_dir):
        return []
    out = []
    for name in sorted(os.listdir(group_dir)):
        d = os.path.join(group_dir, name)
        if not name.startswith("round-"):
            continue
        crit = {}
        p = os.path.join(d, "criterion.json")
        if os.path.exists(p):
            with open(p) as f:
                crit = json.load(f)
        out.append(dict(figs=example_figures(d), crit=crit))
    return out


def criterion_specs(goals, group):
    """The criterion figures ('group/function') that a group's rows read."""
    specs = []
    for g in goals["rows"]:
        if g["group"] == group:
            for side in (g.get("ferrax"), g.get("peer")):
                if side and "criterion" in side and side["criterion"] not in specs:
                    specs.append(side["criterion"])
    return specs


def criterion_median(spec, since):
    """Criterion's median (seconds) for 'group/function', if written at or after `since`."""
    group, function = spec.split("/", 1)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    for fn_dir in (function, function.replace("/", "_")):
        p = os.path.join(target, "criterion", group, fn_dir, "new", "estimates.json")
        if os.path.exists(p) and os.path.getmtime(p) >= since:
            with open(p) as f:
                return json.load(f)["median"]["point_estimate"] * 1e-9
    return None


# ------------------------------------------------------------------------------ the peers' half

def run_peers(group, smoke, python, out_dir, pinned):
    """The peers' half of one group: each script writes JSON lines under out_dir."""
    env = dict(os.environ, COMPARE_SMOKE="1" if smoke else "0")
    jobs = []
    if group == "anchors":
        jobs.append(("anchors-jax", "jax", ["anchors_jax.py"], True))
    elif group == "models":
        jobs.append(("models-jax", "optax", ["models_jax.py"], True))
    elif group == "sparse":
        jobs.append(("sparse-jax", "jax", ["sparse_jax.py", "--dense-n", joined(sizes("jax_dense_n", smoke)),
                                           "--hvp-n", joined(sizes("jax_hvp_n", smoke))], True))
        jobs.append(("sparse-casadi", "casadi", ["sparse_casadi.py",
                                                 "--hessian-n", joined(sizes("casadi_hessian_n", smoke)),
                                                 "--brusselator-N", joined(sizes("brusselator_N", smoke))], False))
    elif group == "jet":
        jobs.append(("jet-jax", "jax", ["jet_jax.py", "--ks", joined(sizes("jet_k", smoke)),
                                        "--nested-kmax", str(sizes("nested_kmax", smoke)[0])], True))
    for name, module, cmd, pin_too in jobs:
        if not has_module(python, module):
            log(f"{module} is not importable by {python}: {name} skipped")
            continue
        passes = [("", [])]
        if pin_too and pinned:
            # XLA's thread pool slows small jobs; JAX pinned to one core is the faster JAX on
            # some workloads, and the table takes the faster of the two.
            passes.append(("-1core", ["taskset", "-c", "0"]))
        for suffix, prefix in passes:
            out = os.path.join(out_dir, f"{name}{suffix}.jsonl")
            full = prefix + [python, os.path.join(PEERS, cmd[0])] + cmd[1:] + ["--out", out]
            if suffix:
                full.append("--steady-only")
            log(" ".join(full))
            t0 = time.time()
            p = subprocess.run(full, env=env, cwd=PEERS)
            log(f"{name}{suffix}: exit {p.returncode} after {time.time() - t0:.0f} s")


def peer_records(out_dir):
    """{(peer base name, record, variant): record}, merged figure by figure over JAX's two
    passes and over the rounds (the directories under out_dir): the fastest of each time
    (`median_s`, `first_call_s`, CasADi's `build_s`, ...), with `<field>_from` naming the
    pass that gave it."""
    recs = {}
    if not os.path.isdir(out_dir):
        return recs
    for dirpath, dirnames, filenames in sorted(os.walk(out_dir)):
        dirnames.sort()
        for fname in sorted(filenames):
            if not fname.endswith(".jsonl"):
                continue
            with open(os.path.join(dirpath, fname)) as f:
                for line in f:
                    r = json.loads(line)
                    base = r["peer"].split("-")[0]
                    key = (base, r["record"], r.get("variant"))
                    old = recs.get(key)
                    times = [k for k, v in r.items() if k.endswith("_s") and isinstance(v, (int, float))]
                    if old is None:
                        old = recs[key] = dict(r, peer=base)
                        for field in times:
                            old[f"{field}_from"] = r["peer"]
                        continue
                    for field in times:
                        a, b = old.get(field), r[field]
                        if a is None or b < a:
                            old[field] = b
                            old[f"{field}_from"] = r["peer"]
    return recs


# ------------------------------------------------------------------------------ the table

def fmt_value(v, unit):
    if v is None:
        return "-"
    if unit != "s":
        return f"{v:.4g} {unit}" if unit == "MB" else f"{v:.0f}"
    for name, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if v >= scale:
            return f"{v / scale:.3g} {name}"
    return f"{v / 1e-9:.3g} ns"


def example_value(figs, spec):
    line = figs.get(spec["example"], {}).get(spec["key"], {})
    v = line.get(spec["field"])
    if v is None:
        return None
    field = spec["field"]
    return v * 1e-3 if field.endswith("_ms") else v * 1e-6 if field.endswith("_us") else v


def best(values, unit):
    """One figure from the rounds' figures: the fastest time (the machine's noise only ever
    slows a run down), and the largest count or memory figure."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return min(values) if unit == "s" else max(values)


def build_rows(goals, rounds, peers):
    """The table's rows. `rounds` holds one dict per round of ferrax's half: `figs` (the
    examples' parsed output) and `crit` (criterion medians by 'group/function'); each ferrax
    and hand-written figure is the best over the rounds, as each peer figure in `peers` is."""
    rows = []
    for g in goals["rows"]:
        unit = g.get("unit", "s")
        src = g.get("ferrax")
        per_round = []
        for rd in rounds:
            if src and "criterion" in src:
                per_round.append(rd["crit"].get(src["criterion"]))
            elif src:
                per_round.append(example_value(rd["figs"], src))
        fx = best(per_round, unit)
        peer, pv, versions = g.get("peer"), None, {}
        if peer and "criterion" in peer:
            pv = best([rd["crit"].get(peer["criterion"]) for rd in rounds], unit)
        elif peer:
            base = peer["name"].lower()
            r = peers.get((base, peer["record"], peer.get("variant")))
            if r is None:
                r = next((v for (b, rec, _), v in peers.items() if b == base and rec == peer["record"]), None)
            if r is not None:
                pv = r.get(peer.get("field", "median_s"))
                versions.update({p: r[p] for p in ("jax", "optax", "casadi") if isinstance(r.get(p), str)})
        ratio = fx / pv if fx is not None and pv else None
        goal, status = "-", "context"
        if "vs_peer" in g:
            goal = f"<= {g['vs_peer']}x"
            status = "not measured" if ratio is None else ("met" if ratio <= g["vs_peer"] else "MISSED")
        elif "max" in g:
            goal = f"<= {fmt_value(g['max'], unit)}"
            status = "not measured" if fx is None else ("met" if fx <= g["max"] else "MISSED")
        rows.append(dict(id=g["id"], group=g["group"], peer=peer.get("label", peer["name"]) if peer else "-",
                         ferrax=fx, ferrax_rounds=per_round, peer_value=pv, ratio=ratio, goal=goal,
                         status=status, unit=unit, what=g["what"], versions=versions))
    return rows


def table_lines(rows):
    head = ("workload", "ferrax", "peer", "peer value", "ratio", "goal", "result")
    body = [(r["id"], fmt_value(r["ferrax"], r["unit"]), r["peer"], fmt_value(r["peer_value"], r["unit"]),
             "-" if r["ratio"] is None else f"{r['ratio']:.3g}", r["goal"], r["status"]) for r in rows]
    return head, body


def print_table(rows):
    head, body = table_lines(rows)
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    for line in [head] + body:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths))))


def group_markdown(group, rows, env):
    """One group's table in Markdown, headed by the machine and versions of the run that
    measured it."""
    head, body = table_lines(rows)
    met = sum(r["status"] == "met" for r in rows)
    missed = sum(r["status"] == "MISSED" for r in rows)
    unmeasured = sum(r["status"] == "not measured" for r in rows)
    smoke = env.get("smoke", False)
    found = {}
    for r in rows:
        found.update(r["versions"])
    versions = ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
    n = env.get("rounds", 1)
    rounds = f" --rounds {n}" if n > 1 else ""
    best_of = f", each figure the best of {n} rounds alternating the two sides" if n > 1 else ""
    lines = [
        f"Measured {env['date']} at commit {env['commit']} on {env['cpu']} ({env['cores']} cores)"
        f"{'; ' + env['rustc'] if env.get('rustc') else ''}{'; ' + versions if versions else ''}"
        f" by `python3 bench/compare/run.py{' --smoke' if smoke else ''} --only {group}{rounds}`{best_of}"
        f"{'; load average ' + env['load'] if env.get('load') else ''}."
        + (" **Smoke run: short, rough timings, not for comparison.**" if smoke else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    lines += ["", f"Goals met: {met}, missed: {missed}, not measured: {unmeasured}."]
    return "\n".join(lines)


def update_readme(path, sections):
    with open(path) as f:
        text = f.read()
    for group, md in sections.items():
        b, e = BEGIN.format(group), END.format(group)
        if b not in text or e not in text:
            log(f"{path} has no {b} ... {e} block: {group} not written there")
            continue
        head, rest = text.split(b, 1)
        _, tail = rest.split(e, 1)
        text = head + b + "\n" + md + "\n" + e + tail
    with open(path, "w") as f:
        f.write(text)
    log(f"rewrote the {', '.join(sections)} block(s) of {path}")


# ------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups: " + ",".join(GROUPS))
    ap.add_argument("--smoke", action="store_true", help="quick, rough timings (tests the harness)")
    ap.add_argument("--half", choices=("both", "ferrax", "peers"), default="both",
                    help="run only one half; the other half's figures are read from the last run")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: rebuild the table from the last run's files")
    ap.add_argument("--rounds", type=int, default=1, metavar="N",
                    help="alternate the two halves N times per group; each figure is its side's best")
    ap.add_argument("--no-pinned", action="store_true", help="skip JAX's pass pinned to one core")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "compare"))
    ap.add_argument("--update-readme", nargs="?", const=os.path.join(ROOT, "README.md"), metavar="PATH",
                    help="rewrite the measured groups' blocks of README.md (not from a smoke run)")
    ap.add_argument("--force", action="store_true", help="allow --update-readme after a smoke run")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a measured goal is missed")
    a = ap.parse_args()
    groups = [g for g in a.only.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {bad}; choose from {GROUPS}")
    if a.update_readme and a.smoke and not a.force:
        ap.error("--update-readme takes a full run's figures; a smoke run's are not for publishing")
    if a.rounds < 1:
        ap.error("--rounds takes a count of at least 1")
    ferrax_dir, peers_dir = os.path.join(a.out, "ferrax"), os.path.join(a.out, "peers")
    os.makedirs(ferrax_dir, exist_ok=True)
    os.makedirs(peers_dir, exist_ok=True)
    env = machine()
    if a.table_only:
        a.half = "neither"
    python = None
    if a.half in ("both", "peers"):
        python = peer_python()
    pinned = not a.no_pinned and shutil.which("taskset") is not None
    with open(os.path.join(HERE, "goals.json")) as f:
        goals = json.load(f)
    for group in groups:
        group_start = os.getloadavg()[0]
        # A half that runs again replaces all of that group's earlier figures (every round's),
        # so an example or peer that fails or is missing now cannot leave an older run's.
        for half, base in (("ferrax", ferrax_dir), ("peers", peers_dir)):
            if a.half in ("both", half):
                shutil.rmtree(os.path.join(base, group), ignore_errors=True)
        # Rounds alternate the two halves, so that a slow spell of the shared machine (which
        # comes and goes over minutes) meets both sides rather than one.
        for r in range(1, a.rounds + 1):
            tag = f"round {r} of {a.rounds}: " if a.rounds > 1 else ""
            if a.half in ("both", "ferrax"):
                log(f"{tag}{group}, ferrax")
                fdir = round_dir(ferrax_dir, group, r)
                since = time.time() - 1
                run_ferrax(group, a.smoke, fdir)
                crit = {spec: criterion_median(spec, since) for spec in criterion_specs(goals, group)}
                with open(os.path.join(fdir, "criterion.json"), "w") as f:
                    json.dump({k: v for k, v in crit.items() if v is not None}, f)
            if a.half in ("both", "peers"):
                log(f"{tag}{group}, peers")
                run_peers(group, a.smoke, python, round_dir(peers_dir, group, r), pinned)
        if a.half != "neither":
            load = f"{group_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            with open(os.path.join(a.out, f"env-{group}.json"), "w") as f:
                json.dump(dict(env, smoke=a.smoke, half=a.half, load=load, rounds=a.rounds), f)
    peers = {}
    rounds = []
    for g in groups:
        peers.update(peer_records(os.path.join(peers_dir, g)))
        rounds += ferrax_rounds(os.path.join(ferrax_dir, g))
    group_env = {}
    for g in groups:
        p = os.path.join(a.out, f"env-{g}.json")
        group_env[g] = dict(env, smoke=a.smoke)
        if os.path.exists(p):
            with open(p) as f:
                group_env[g] = json.load(f)
    if a.update_readme and any(e.get("smoke") for e in group_env.values()) and not a.force:
        ap.error("--update-readme takes a full run's figures; the last run of a group was a smoke run")
    rows = [r for r in build_rows(goals, rounds, peers) if r["group"] in groups]
    print(f"{env['date']}, commit {env['commit']}, {env['cpu']} ({env['cores']} cores)"
          + (", SMOKE RUN (rough timings)" if a.smoke else ""))
    print_table(rows)
    sections = {g: group_markdown(g, [r for r in rows if r["group"] == g], group_env[g]) for g in groups}
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("# ferrax side by side with its peers\n\n")
        for g, md in sections.items():
            f.write(f"## {g}\n\n{md}\n\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(dict(env=env, group_env=group_env, smoke=a.smoke, rows=rows,
                       peers=[dict(r) for r in peers.values()]), f, indent=1)
    log(f"wrote {os.path.join(a.out, 'results.md')} and results.json")
    if a.update_readme:
        update_readme(a.update_readme, sections)
    missed = sum(r["status"] == "MISSED" for r in rows)
    return 1 if a.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
