"""Benchmark: the learning core (local training, baselines, codecs, DP).

    .venv/bin/python bench/learn.py [--json] [--reps 5] [--baseline-epochs 20]

What is measured (best of ``--reps`` after one untimed warm-up call; min is the
least noisy statistic on a shared 2-core machine):

* ``train``: one :func:`peer.train.train_local` round on one of five IID digits
  peers (about 290 records), 1 and 2 epochs, batch 32, SGD, for logreg / mlp / cnn,
  with 1 and 2 torch intra-op threads (ratios in the same run).
* ``baseline``: :func:`peer.train.centralized_baseline` on digits (1438 train /
  359 test records), ``--baseline-epochs`` epochs, SGD lr 0.05 and Adam lr 0.01,
  one thread: test accuracy, loss and training seconds.
* ``codec``: encode and decode of a d = 1e6 update (seeded normal * 0.01) per
  codec: payload size / float32 payload size, max decode error, MB/s of the
  float32 input.
* ``dp``: clip_and_noise of d = 1e6 and the accountant's epsilon at delta 1e-5 for
  sigma 1.0 after 10 / 50 / 100 rounds (sample rate 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, Python puts bench/ first on sys.path, where bench/gossip.py would
# shadow the gossip package: look in the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)


def _best(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_train(reps: int) -> list[dict[str, Any]]:
    import torch

    from peer.data import DataConfig, load_peer_data
    from peer.models import ModelSpec, build_model, get_flat
    from peer.train import TrainConfig, train_local

    train, _ = load_peer_data(DataConfig(dataset="digits"), 0, 5)
    rows = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for arch in ("logreg", "mlp", "cnn"):
                spec = ModelSpec(arch, input_shape=train.input_shape, n_classes=train.n_classes)
                start = get_flat(build_model(spec))
                for epochs in (1, 2):
                    cfg = TrainConfig(epochs=epochs, batch_size=32)
                    def one(spec: ModelSpec = spec, start: np.ndarray = start,
                            cfg: TrainConfig = cfg) -> Any:
                        return train_local(spec, start, train, cfg, round=1, peer_seed=0)

                    secs = _best(one, reps)
                    rows.append({"bench": "train", "arch": arch, "threads": threads,
                                 "epochs": epochs, "records": len(train), "seconds": secs})
    finally:
        torch.set_num_threads(before)
    return rows


def bench_baseline(epochs: int) -> list[dict[str, Any]]:
    import torch

    from peer.data import DataConfig
    from peer.models import ModelSpec
    from peer.train import TrainConfig, centralized_baseline

    torch.set_num_threads(1)
    data = DataConfig(dataset="digits")
    rows = []
    for arch in ("logreg", "mlp", "cnn"):
        spec = ModelSpec(arch, input_shape=(1, 8, 8), n_classes=10)
        for opt, lr in (("sgd", 0.05), ("adam", 0.01)):
            r = centralized_baseline(data, spec, TrainConfig(epochs=epochs, optimizer=opt, lr=lr))
            rows.append({"bench": "baseline", "arch": arch, "optimizer": opt, "lr": lr,
                         "epochs": epochs, "accuracy": r["accuracy"], "loss": r["loss"],
                         "seconds": r["train_seconds"], "n_params": r["n_params"]})
    return rows


def bench_codecs(reps: int) -> list[dict[str, Any]]:
    from peer.codecs import decode_update, encode_update

    d = 1_000_000
    vec = (np.random.default_rng(0).standard_normal(d) * 0.01).astype(np.float32)
    base = len(encode_update(vec, codec="float32")[0])
    rows = []
    for codec in ("float32", "float16", "int8", "topk"):
        payload, _, _ = encode_update(vec, codec=codec, topk_fraction=0.1)
        out = decode_update(payload, expected_dim=d, max_bytes=1 << 28)
        enc = _best(lambda c=codec: encode_update(vec, codec=c, topk_fraction=0.1), reps)
        dec = _best(lambda p=payload: decode_update(p, expected_dim=d, max_bytes=1 << 28), reps)
        rows.append({"bench": "codec", "codec": codec, "d": d, "bytes": len(payload),
                     "ratio": len(payload) / base,
                     "max_abs_error": float(np.abs(out - vec).max()),
                     "rel_l2_error": float(np.linalg.norm(out - vec) / np.linalg.norm(vec)),
                     "encode_mb_s": 4 * d / enc / 1e6, "decode_mb_s": 4 * d / dec / 1e6})
    return rows


def bench_dp(reps: int) -> list[dict[str, Any]]:
    from peer.privacy import DPConfig, PrivacyAccountant, clip_and_noise

    d = 1_000_000
    vec = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    cfg = DPConfig(clip=1.0, noise_multiplier=1.0, noise_seed=0)
    secs = _best(lambda: clip_and_noise(vec, cfg, generator=cfg.generator(1)), reps)
    rows: list[dict[str, Any]] = [{"bench": "dp_noise", "d": d, "seconds": secs}]
    for rounds in (10, 50, 100):
        acct = PrivacyAccountant(delta=1e-5)
        acct.step(cfg, rounds=rounds)
        t0 = time.perf_counter()
        eps = acct.epsilon()
        rows.append({"bench": "dp_epsilon", "sigma": 1.0, "rounds": rounds, "delta": 1e-5,
                     "epsilon": eps, "seconds": time.perf_counter() - t0})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-epochs", type=int, default=20)
    args = ap.parse_args()
    rows = (bench_train(args.reps) + bench_baseline(args.baseline_epochs)
            + bench_codecs(args.reps) + bench_dp(args.reps))
    for row in rows:
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
