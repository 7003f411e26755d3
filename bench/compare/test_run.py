"""Tests of run.py's parts that need neither cargo nor the peers: parsing the examples' lines,
joining figures through goals.json, and rewriting the README's blocks.

    python3 bench/compare/test_run.py
"""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import run  # noqa: E402

SPARSE_HESSIAN = """\
n = 1000 nnz = 2998 colors = 3 first_ms = 12.5 call_ms = 0.021 peak_mb = 3.1
n = 100000 nnz = 299998 colors = 3 first_ms = 95.0 call_ms = 0.400 peak_mb = 40.0
some other line with x = 3
"""

TAYLOR = """\
jet d1 tanh(0.5) = 7.86447732965927e-1 (5 equations)   closed form 7.86447732965927e-1, rel. error 0.0e0
jet d20 tanh(0.5) = 2.51750089080222e13 (339 equations)   closed form 2.51750089080222e13, rel. error 1.2e-15
nested d8 tanh(0.5) = -1.2e2 (325 equations)
jit_derivatives_k20_first_call_ms = 2.10   (specialise 1.00 ms, lower 0.50 ms, codegen 0.60 ms)
jit_derivatives_k20_per_call_us = 0.50
jit_jet_k20_first_call_ms = 6.00   (general series argument, 849 equations; specialise 1 ms, lower 1 ms, codegen 3 ms)
jit_jet_k20_per_call_us = 1.50
"""


class Parsing(unittest.TestCase):
    def test_pairs_keyed_by_first_pair(self):
        figs = run.parse_pairs(SPARSE_HESSIAN)
        self.assertEqual(figs["n=1000"]["nnz"], 2998)
        self.assertEqual(figs["n=100000"]["call_ms"], 0.4)
        self.assertEqual(len(figs), 2, figs)  # the line not starting with its first pair is not a row

    def test_taylor(self):
        figs = run.parse_taylor(TAYLOR)
        self.assertEqual(figs["jet-k20"]["eqns"], 339)
        self.assertEqual(figs["nested-k8"]["eqns"], 325)
        self.assertEqual(figs["jet-k20-general"], dict(first_ms=6.0, eqns=849.0, call_us=1.5))


class Rows(unittest.TestCase):
    def test_join_and_goals(self):
        with open(os.path.join(run.HERE, "goals.json")) as f:
            goals = json.load(f)
        figs = {"sparse_hessian": run.parse_pairs(SPARSE_HESSIAN), "taylor": run.parse_taylor(TAYLOR)}
        peers = {
            ("casadi", "rosenbrock-hessian-n100000", None): dict(median_s=0.013, build_s=2.0),
            ("jax", "jet-k20", None): dict(median_s=6.7e-6, first_call_s=0.24, eqns=1296),
        }
        rows = {(r["id"], r["peer"]): r for r in run.build_rows(goals, [dict(figs=figs, crit={})], peers)}
        first = rows[("rosenbrock-hessian n=1e5 first", "CasADi")]
        self.assertAlmostEqual(first["ratio"], 0.095 / 2.0)
        self.assertEqual(first["status"], "MISSED")  # goal 0.02
        call = rows[("rosenbrock-hessian n=1e5 call", "CasADi")]
        self.assertAlmostEqual(call["ratio"], 0.0004 / 0.013)
        self.assertEqual(call["status"], "met")  # goal 0.05
        self.assertEqual(rows[("rosenbrock-hessian n=1e6 first", "-")]["status"], "not measured")
        eq = rows[("jet k=20 equations", "JAX")]
        self.assertEqual((eq["ferrax"], eq["peer_value"], eq["status"]), (339, 1296, "met"))
        self.assertEqual(rows[("jet k=20 first", "JAX")]["status"], "MISSED")  # 6 ms > 5 ms
        self.assertEqual(rows[("jet k=20 call", "JAX")]["status"], "MISSED")  # 1.5 / 6.7 > 0.05
        self.assertEqual(rows[("P1", "JAX")]["status"], "not measured")

    def test_each_side_takes_its_best_round(self):
        with open(os.path.join(run.HERE, "goals.json")) as f:
            goals = json.load(f)
        slow = SPARSE_HESSIAN.replace("call_ms = 0.400", "call_ms = 0.900")
        fewer = TAYLOR.replace("(339 equations)", "(300 equations)")
        rounds = [
            dict(figs={"sparse_hessian": run.parse_pairs(slow), "taylor": run.parse_taylor(TAYLOR)},
                 crit={"P1/ferrax": 30e-9, "P1/hand": 20e-9}),
            dict(figs={"sparse_hessian": run.parse_pairs(SPARSE_HESSIAN), "taylor": run.parse_taylor(fewer)},
                 crit={"P1/ferrax": 22e-9, "P1/hand": 25e-9}),
            dict(figs={}, crit={}),  # a round that measured nothing counts for nothing
        ]
        peers = {("casadi", "rosenbrock-hessian-n100000", None): dict(median_s=0.013, build_s=2.0)}
        rows = {(r["id"], r["peer"]): r for r in run.build_rows(goals, rounds, peers)}
        call = rows[("rosenbrock-hessian n=1e5 call", "CasADi")]
        self.assertAlmostEqual(call["ferrax"], 0.0004)  # the faster round
        self.assertEqual([v and round(v * 1e4, 9) for v in call["ferrax_rounds"]], [9, 4, None])
        hand = rows[("P1", "hand")]
        self.assertEqual((hand["ferrax"], hand["peer_value"]), (22e-9, 20e-9))  # best of each side
        self.assertEqual(rows[("jet k=20 equations", "JAX")]["ferrax"], 339)  # a count: the largest

    def test_every_goal_row_is_well_formed(self):
        with open(os.path.join(run.HERE, "goals.json")) as f:
            goals = json.load(f)
        for g in goals["rows"]:
            self.assertIn(g["group"], run.GROUPS, g)
            self.assertTrue(g.get("ferrax") or g.get("peer"), g)
            self.assertFalse("vs_peer" in g and "peer" not in g, g)


class PeerRecords(unittest.TestCase):
    def test_the_faster_jax_pass_counts_per_figure(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "x-jax.jsonl"), "w") as f:
                f.write(json.dumps(dict(record="P1", peer="jax", median_s=2.0, first_call_s=0.1)) + "\n")
            with open(os.path.join(d, "x-jax-1core.jsonl"), "w") as f:
                f.write(json.dumps(dict(record="P1", peer="jax-1core", median_s=1.0, first_call_s=None)) + "\n")
            r = run.peer_records(d)[("jax", "P1", None)]
        self.assertEqual((r["median_s"], r["median_s_from"]), (1.0, "jax-1core"))
        self.assertEqual((r["first_call_s"], r["first_call_s_from"]), (0.1, "jax"))

    def test_rounds_merge_to_the_fastest_of_every_time(self):
        with tempfile.TemporaryDirectory() as d:
            for r, (median, build) in enumerate(((3.0, 1.5), (2.5, 2.0)), 1):
                os.makedirs(os.path.join(d, f"round-{r}"))
                with open(os.path.join(d, f"round-{r}", "s-casadi.jsonl"), "w") as f:
                    f.write(json.dumps(dict(record="H", peer="casadi", median_s=median, build_s=build,
                                            nnz=10)) + "\n")
            r = run.peer_records(d)[("casadi", "H", None)]
        self.assertEqual((r["median_s"], r["build_s"], r["nnz"]), (2.5, 1.5, 10))


class Readme(unittest.TestCase):
    def test_only_the_named_blocks_change(self):
        text = ("intro\n<!-- compare:jet:begin -->\nold jet\n<!-- compare:jet:end -->\nmiddle\n"
                "<!-- compare:sparse:begin -->\nold sparse\n<!-- compare:sparse:end -->\nend\n")
        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as f:
            f.write(text)
        try:
            run.update_readme(f.name, {"jet": "new jet table"})
            with open(f.name) as g:
                got = g.read()
        finally:
            os.remove(f.name)
        self.assertEqual(got, text.replace("old jet", "new jet table"))


if __name__ == "__main__":
    unittest.main()
