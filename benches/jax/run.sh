#!/usr/bin/env bash
# JAX's side of the model benchmarks: creates a private venv (jax, optax, numpy from PyPI) on
# first use, then writes OUT/jax_models.jsonl (default OUT: target/bench-jax).
#   benches/jax/run.sh [OUT]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-target/bench-jax}"
VENV="${FERRAX_BENCH_VENV:-$HOME/.cache/ferrax-bench/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import jax, optax, numpy" 2>/dev/null; then
  "$VENV/bin/pip" install -q jax optax numpy
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/jax_models.jsonl"
"$VENV/bin/python" "$HERE/models.py" --out "$OUT/jax_models.jsonl" "${@:2}"
echo "JAX figures written to $OUT/jax_models.jsonl"
