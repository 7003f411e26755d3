"""CasADi's side of the sparse-derivative workloads (examples/sparse_hessian.rs and
examples/sparse_jacobian.rs are ferrax's). WORKLOADS.md defines both functions and points.

rosenbrock-hessian-n<n>: the chained Rosenbrock function of n SX symbols, its Hessian by
`casadi.hessian` and a `casadi.Function` returning it (a sparse matrix, tridiagonal).
brusselator-jacobian-N<N>: the 2-D Brusselator right-hand side on an N x N periodic grid
(2 N^2 SX symbols), its Jacobian by `casadi.jacobian` and a `casadi.Function` returning it.

Recorded for each: build_s (from creating the symbols to the constructed Function: CasADi's
counterpart of ferrax's detection + colouring + transforms + compilation), first_call_s (build
plus the first evaluation), median_s (per evaluation, from Python on a DM argument, the result
a sparse DM), nnz.

    python sparse_casadi.py --out FILE [--hessian-n 10000,100000] [--brusselator-N 64,128,256]
"""
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Recorder, arg, timeit_calls  # noqa: E402

BRUSSELATOR = dict(A=1.0, B=3.4, alpha=10.0)


def rosenbrock_point(n):
    """x_i = 1 + 0.5 sin(i), as the ferrax example."""
    return 1.0 + 0.5 * np.sin(np.arange(n, dtype=np.float64))


def brusselator_point(N):
    """u[i, j] = 22 (y_j (1 - y_j))^1.5 and v[i, j] = 27 (x_i (1 - x_i))^1.5 with
    x_k = y_k = k / (N - 1), as the ferrax example; the state is u then v, each row-major
    (index i N + j)."""
    g = np.arange(N) / (max(N, 2) - 1)
    row, col = np.meshgrid(g, g, indexing="ij")
    u = 22.0 * (col * (1.0 - col)) ** 1.5
    v = 27.0 * (row * (1.0 - row)) ** 1.5
    return np.concatenate([u.ravel(), v.ravel()])


def brusselator_neighbours(N):
    """Index lists of each point's four neighbours (periodic), row-major."""
    idx = np.arange(N * N).reshape(N, N)
    return [np.roll(idx, s, axis=a).ravel().tolist() for a in (0, 1) for s in (1, -1)]


def hessian_build(ca, n):
    x = ca.SX.sym("x", n)
    a, b = x[0:n - 1], x[1:n]
    f = ca.sum1(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)
    H, _ = ca.hessian(f, x)
    return ca.Function("rosenbrock_hessian", [x], [H])


def brusselator_build(ca, N):
    p = BRUSSELATOR
    m = N * N
    y = ca.SX.sym("y", 2 * m)
    u, v = y[0:m], y[m:2 * m]
    c = p["alpha"] * (max(N, 2) - 1) ** 2  # alpha / h^2 with h = 1 / (N - 1)
    nb = brusselator_neighbours(N)

    def lap(w):
        return c * (w[nb[0]] + w[nb[1]] + w[nb[2]] + w[nb[3]] - 4.0 * w)

    uuv = u * u * v
    fu = p["A"] + uuv - (p["B"] + 1.0) * u + lap(u)
    fv = p["B"] * u - uuv + lap(v)
    J = ca.jacobian(ca.vertcat(fu, fv), y)
    return ca.Function("brusselator_jacobian", [y], [J])


def measure(rec, ca, record, build, point, **fields):
    t0 = time.perf_counter()
    fn = build()
    build_s = time.perf_counter() - t0
    arg_dm = ca.DM(point)
    t1 = time.perf_counter()
    out = fn(arg_dm)
    first_call_s = build_s + (time.perf_counter() - t1)
    nnz = out.nnz()
    rec.add(record, timeit_calls(lambda: fn(arg_dm)), build_s=build_s, first_call_s=first_call_s,
            nnz=nnz, **fields)
    return out


def main():
    import casadi as ca

    rec = Recorder("casadi", arg("out"), ("casadi",))
    for n in [int(float(v)) for v in arg("hessian-n", "10000,100000").split(",") if v]:
        x = rosenbrock_point(n)
        H = measure(rec, ca, f"rosenbrock-hessian-n{n}", lambda: hessian_build(ca, n), x, n=n)
        # Spot-check two entries against the closed form.
        assert math.isclose(float(H[0, 1]), -400.0 * x[0], rel_tol=1e-12)
        assert math.isclose(float(H[1, 1]), 1200 * x[1] ** 2 - 400 * x[2] + 2 + 200, rel_tol=1e-12)
    for N in [int(v) for v in arg("brusselator-N", "64,128,256").split(",") if v]:
        J = measure(rec, ca, f"brusselator-jacobian-N{N}", lambda: brusselator_build(ca, N),
                    brusselator_point(N), N=N)
        assert J.nnz() == 12 * N * N, J.nnz()


if __name__ == "__main__":
    main()
