"""Benchmark: fedchain's aggregation rules against Flower and ByzFL.

    .venv/bin/python bench/aggregate.py [--json] [--n 5,10,25,50,100] [--d 1e5,1e6,1e7]
        [--rules median,krum,geometric_median,trimmed_mean,mean] [--reps 3]
        [--bench-python /work/benchenv/bin/python] [--timeout 180]

Our implementation runs in the interpreter that runs this script (the project
venv). The reference libraries are NOT runtime dependencies: they live in a
separate venv made for the benchmark only, with the same torch and numpy::

    python3 -m venv /work/benchenv
    /work/benchenv/bin/pip install torch==2.13.0 numpy==2.4.6 flwr==1.42.0 byzfl==0.0.11

(torch 2.13.0+cpu; byzfl 0.0.11 also pulls torchvision 0.28.0, scipy, matplotlib,
seaborn; flwr 1.42.0 pulls grpcio etc.). Each (implementation, N, d) runs in its
own subprocess (``--worker``), with ``--bench-python`` for Flower and ByzFL;
when that interpreter lacks a library its rows are reported as unavailable.

What is measured, per rule, N, d, implementation:

* ``seconds``: the best of ``--reps`` timed calls after one untimed call
  (the first call's page faults are the same for everyone; min is the least
  noisy statistic on a shared 2-core machine). Inputs: seeded standard normal
  float32 [N, d], as the library takes them (Flower: a list of N clients with one
  numpy layer each, views of the same buffer; ByzFL and ours: a torch tensor).
* ``peak_bytes``: extra resident memory during the first call: the kernel's
  high-water mark (VmHWM, reset through /proc/self/clear_refs just before the
  call) minus the resident size just before it. It covers numpy, torch and
  BLAS allocations alike (tracemalloc sees only numpy's, torch's allocator
  stats only torch's). The input itself is not included.
* ``gbps``: input bytes (N x d x 4) / seconds, compared with this machine's
  memory bandwidth measured at the start of the run (a 2-thread streaming sum
  over 1 GiB with torch, best of 5).

Rule parameters: f = min((N - 3) // 2, N // 5) for trimmed mean and Krum (the
same f for every library; Flower's trimmed mean gets proportiontocut = f / N);
geometric median with each library's defaults (ByzFL: nu = 0.1, T = 3 fixed
iterations; ours: Weiszfeld to a relative tolerance of 1e-7, up to 100
iterations; on this data ours needs 3-6 iterations to converge).
Flower's Krum computes every pair's distance with numpy one pair at a time
(O(N^2 d) Python-level work); calls estimated beyond ``--timeout`` are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

IMPLS = ("fedchain", "flower", "byzfl")
DEFAULT_RULES = ("median", "trimmed_mean", "krum", "geometric_median", "mean")
SUPPORTED = {
    "fedchain": {"median", "trimmed_mean", "krum", "multi_krum", "geometric_median", "mean", "centered_clipping"},
    "flower": {"median", "trimmed_mean", "krum", "multi_krum", "mean"},
    "byzfl": {"median", "trimmed_mean", "krum", "multi_krum", "geometric_median", "mean", "centered_clipping"},
}


def byz_f(n: int) -> int:
    return max(0, min((n - 3) // 2, n // 5))


# ----------------------------------------------------------------- worker side


def _mem() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
    return out


def _measure(fn: Any, reps: int) -> tuple[float, int]:
    """(best seconds over reps after a first call, extra peak bytes of the first call)."""
    before = _mem()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    res = fn()
    first = time.perf_counter() - t0
    peak = _mem()["VmHWM"] - before
    del res
    best = first
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
        del res
    return best, peak


def _import_byzfl_aggregators() -> Any:
    """byzfl.aggregators without running byzfl/__init__.py.

    That file imports byzfl.fed_framework, which imports torchvision; PyPI's
    torchvision 0.28.0 is built for the CUDA torch and fails to load next to
    torch 2.13.0+cpu ("operator torchvision::nms does not exist"). The
    aggregators use only numpy, scipy and torch, so an empty package object
    with byzfl's path lets them import unchanged.
    """
    import importlib.util
    import types

    spec = importlib.util.find_spec("byzfl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("byzfl is not installed in this interpreter")
    pkg = types.ModuleType("byzfl")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["byzfl"] = pkg
    from byzfl.aggregators import aggregators

    return aggregators


def _callables(impl: str, x: Any, n: int, f: int) -> dict[str, Any]:
    if impl == "fedchain":
        from peer import aggregate as A

        return {
            "median": lambda: A.aggregate(x, rule="median"),
            "trimmed_mean": lambda: A.aggregate(x, rule="trimmed_mean", f=f),
            "krum": lambda: A.aggregate(x, rule="krum", f=f),
            "multi_krum": lambda: A.aggregate(x, rule="multi_krum", f=f),
            "geometric_median": lambda: A.aggregate(x, rule="geometric_median"),
            "mean": lambda: A.aggregate(x, rule="mean"),
            "centered_clipping": lambda: A.aggregate(x, rule="centered_clipping", iters=1, tau=100.0),
        }
    if impl == "flower":
        from flwr.server.strategy import aggregate as F

        results = [([row], 1) for row in x.numpy()]
        return {
            "median": lambda: F.aggregate_median(results),
            "trimmed_mean": lambda: F.aggregate_trimmed_avg(results, proportiontocut=f / n),
            "krum": lambda: F.aggregate_krum(results, num_malicious=f, to_keep=0),
            "multi_krum": lambda: F.aggregate_krum(results, num_malicious=f, to_keep=n - f),
            "mean": lambda: F.aggregate(results),
        }
    if impl == "byzfl":
        B = _import_byzfl_aggregators()

        return {
            "median": lambda: B.Median()(x),
            "trimmed_mean": lambda: B.TrMean(f=f)(x),
            "krum": lambda: B.Krum(f=f)(x),
            "multi_krum": lambda: B.MultiKrum(f=f)(x),
            "geometric_median": lambda: B.GeometricMedian()(x),
            "mean": lambda: B.Average()(x),
            "centered_clipping": lambda: B.CenteredClipping()(x),
        }
    raise ValueError(impl)


def worker(impl: str, n: int, d: int, rules: list[str], reps: int) -> None:
    """Run the rules of one implementation on one input; print one JSON line per rule."""
    import torch

    try:
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(n * 1000003 + d))
        fns = _callables(impl, x, n, byz_f(n))
    except ImportError as exc:
        for rule in rules:
            print(json.dumps({"rule": rule, "impl": impl, "n": n, "d": d, "error": f"unavailable: {exc}"}), flush=True)
        return
    for rule in rules:
        sec, peak = _measure(fns[rule], reps)
        row = {"rule": rule, "impl": impl, "n": n, "d": d, "seconds": sec, "peak_bytes": peak,
               "input_bytes": n * d * 4, "threads": torch.get_num_threads()}
        print(json.dumps(row), flush=True)


# ----------------------------------------------------------------- driver side


def bandwidth() -> float:
    """Streaming read bandwidth in bytes/s: torch sum over 1 GiB, 2 threads, best of 5."""
    import torch

    buf = torch.ones(2**28, dtype=torch.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        float(buf.sum())
        best = min(best, time.perf_counter() - t0)
    return buf.numel() * 4 / best


def estimate_seconds(impl: str, rule: str, n: int, d: int) -> float:
    """Rough cost model used only to skip hopeless reference calls."""
    if impl == "flower" and rule in ("krum", "multi_krum"):
        return n * n * d * 2.5e-9
    if impl in ("flower", "byzfl") and rule in ("median", "trimmed_mean"):
        return n * d * 4 / 0.12e9 * (1.5 if n >= 50 else 1.0)
    return n * d * 4 / 0.5e9


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    bw = bandwidth()
    rows: list[dict[str, Any]] = [{"machine_bandwidth_gbps": bw / 1e9}]
    if not args.json:
        print(f"memory bandwidth (2-thread streaming read): {bw / 1e9:.1f} GB/s", flush=True)
    here = os.path.abspath(__file__)
    root = os.path.dirname(os.path.dirname(here))
    for d in args.d:
        for n in args.n:
            if n * d * 4 > args.max_input_gb * 1e9:
                continue
            for impl in args.impl:
                rules = [r for r in args.rules if r in SUPPORTED[impl]]
                todo = [r for r in rules if impl == "fedchain" or estimate_seconds(impl, r, n, d) * (args.reps + 1) <= args.timeout]
                for r in sorted(set(rules) - set(todo)):
                    rows.append({"rule": r, "impl": impl, "n": n, "d": d, "error": "skipped: estimated beyond --timeout"})
                if not todo:
                    continue
                python = sys.executable if impl == "fedchain" else args.bench_python
                cmd = [python, here, "--worker", impl, str(n), str(d), ",".join(todo), str(args.reps)]
                env = dict(os.environ, PYTHONPATH=root)
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
                    got = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
                    if out.returncode != 0 and not got:
                        got = [{"rule": r, "impl": impl, "n": n, "d": d, "error": out.stderr.strip().splitlines()[-1:]} for r in todo]
                except subprocess.TimeoutExpired as exc:
                    got = [json.loads(line) for line in (exc.stdout or b"").decode().splitlines() if line.startswith("{")]
                    done = {g["rule"] for g in got}
                    got += [{"rule": r, "impl": impl, "n": n, "d": d, "error": f"timeout {args.timeout}s"} for r in todo if r not in done]
                for g in got:
                    if "seconds" in g:
                        g["gbps"] = g["input_bytes"] / g["seconds"] / 1e9
                        g["bandwidth_fraction"] = g["gbps"] * 1e9 / bw
                    rows.append(g)
                    if not args.json:
                        print(_line(g), flush=True)
    _speedups(rows)
    return rows


def _line(g: dict[str, Any]) -> str:
    if "seconds" not in g:
        return f"{g['rule']:>17} N={g['n']:<4} d={g['d']:<9.0e} {g['impl']:<9} {g['error']}"
    return (f"{g['rule']:>17} N={g['n']:<4} d={g['d']:<9.0e} {g['impl']:<9} {g['seconds']:9.4f}s "
            f"{g['gbps']:6.2f} GB/s  peak {g['peak_bytes'] / 1e6:9.1f} MB ({g['peak_bytes'] / g['input_bytes']:.2f}x input)")


def _speedups(rows: list[dict[str, Any]]) -> None:
    """Add to each fedchain row its speed-up over the fastest reference that ran."""
    for g in rows:
        if g.get("impl") != "fedchain" or "seconds" not in g:
            continue
        refs = [r for r in rows if r.get("rule") == g["rule"] and r.get("n") == g["n"] and r.get("d") == g["d"]
                and r.get("impl") != "fedchain" and "seconds" in r]
        if refs:
            best = min(refs, key=lambda r: r["seconds"])
            g["speedup_vs_fastest_ref"] = best["seconds"] / g["seconds"]
            g["fastest_ref"] = best["impl"]


def markdown(rows: list[dict[str, Any]]) -> str:
    bw = rows[0]["machine_bandwidth_gbps"]
    out = [f"Memory bandwidth measured in the same run: {bw:.1f} GB/s (2-thread streaming read).", "",
           "| rule | N | d | impl | seconds | GB/s | % of bandwidth | peak extra MB | peak / input | speed-up vs fastest ref |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in sorted(rows[1:], key=lambda r: (r["rule"], r["n"], r["d"], IMPLS.index(r["impl"]))):
        if "seconds" not in g:
            out.append(f"| {g['rule']} | {g['n']} | {g['d']:.0e} | {g['impl']} | {g['error']} | | | | | |")
            continue
        sp = f"{g['speedup_vs_fastest_ref']:.1f}x ({g['fastest_ref']})" if "speedup_vs_fastest_ref" in g else ""
        out.append(f"| {g['rule']} | {g['n']} | {g['d']:.0e} | {g['impl']} | {g['seconds']:.4f} | {g['gbps']:.2f} | "
                   f"{100 * g['bandwidth_fraction']:.0f}% | {g['peak_bytes'] / 1e6:.1f} | {g['peak_bytes'] / g['input_bytes']:.2f} | {sp} |")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, n, d, rules, reps = sys.argv[2:7]
        worker(impl, int(n), int(float(d)), rules.split(","), int(reps))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object per line (first: the bandwidth)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    p.add_argument("--n", type=lambda s: [int(v) for v in s.split(",")], default=[5, 10, 25, 50, 100])
    p.add_argument("--d", type=lambda s: [int(float(v)) for v in s.split(",")], default=[10**5, 10**6, 10**7])
    p.add_argument("--rules", type=lambda s: s.split(","), default=list(DEFAULT_RULES))
    p.add_argument("--impl", type=lambda s: s.split(","), default=list(IMPLS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per (impl, N, d) subprocess")
    p.add_argument("--max-input-gb", type=float, default=4.1, help="skip inputs larger than this")
    p.add_argument("--bench-python", default="/work/benchenv/bin/python", help="interpreter with flwr and byzfl")
    args = p.parse_args()
    rows = run(args)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
