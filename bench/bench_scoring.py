"""ETA scoring benchmark: batch throughput vs raw XGBoost, single-shipment latency, and
(optionally) peak memory of training on a million simulated shipments.

    .venv/bin/python bench/bench_scoring.py [--rows 100000] [--train-1m [--rounds N]]

Batch scoring = features from shipments + scans (``current_features``) + ``EtaModel.predict``;
the floor is ``Booster.inplace_predict`` on the already-encoded matrix of the same rows
with the same 400-tree, 3-quantile, depth-6 model, measured in the same run. Recent
performance is built once beforehand (a service refreshes it periodically, not per call).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictor.features import current_features, recent_performance, serving_features  # noqa: E402
from predictor.simulator import simulate  # noqa: E402
from predictor.train import train_model  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scoring.json"
START = datetime(2024, 8, 1, tzinfo=UTC)


def bench_batch_and_latency(rows: int) -> dict[str, Any]:
    history = simulate(max(rows, 20_000), 60, START, seed=5)
    s, ev = history.shipments, history.events
    t0 = time.perf_counter()
    model, _ = train_model(s, ev, num_boost_round=400, max_train_rows=60_000,
                           params={"max_depth": 6})
    train_s = time.perf_counter() - t0
    recent = recent_performance(s)
    as_of = START + timedelta(days=40)
    batch = s.head(rows)
    X = current_features(batch, ev, as_of, recent)  # warm caches (ZIP table, lanes)
    matrix = model.encode(X)

    def best_of(fn: Any, repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    raw_s = best_of(lambda: model.booster.inplace_predict(matrix))
    full_s = best_of(lambda: model.predict(current_features(batch, ev, as_of, recent)))
    feat_s = best_of(lambda: current_features(batch, ev, as_of, recent))

    by_tracking = {k: g for k, g in ev.groupby("tracking_number", observed=True)}
    latencies = []
    sample = s.sample(300, random_state=1)
    for _, ship in sample.iterrows():
        scans = by_tracking[ship["tracking_number"]]
        rows_ = [{"status": str(r.status), "occurred_at": r.occurred_at}
                 for r in scans.itertuples()]
        t = time.perf_counter()
        model.predict(serving_features(ship.to_dict(), rows_, as_of, recent))
        latencies.append((time.perf_counter() - t) * 1000)
    return {
        "rows": int(len(batch)), "trees_per_quantile": model.booster.num_boosted_rounds(),
        "max_depth": 6, "train_seconds": round(train_s, 1),
        "raw_inplace_predict_rows_per_s": round(len(batch) / raw_s),
        "features_only_rows_per_s": round(len(batch) / feat_s),
        "features_plus_model_rows_per_s": round(len(batch) / full_s),
        "ratio_vs_raw": round(raw_s / full_s, 3),
        "single_latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "single_latency_ms_p99": round(float(np.percentile(latencies, 99)), 2),
    }


def simulate_1m_child(path: str) -> None:
    """Child 1: simulate a million shipments and store them for the training child."""
    t = time.perf_counter()
    history = simulate(1_000_000, 90, START, seed=9)
    pd.to_pickle((history.shipments, history.events), path)  # our own frames, local tmp
    print(json.dumps({"simulate_seconds": round(time.perf_counter() - t, 1),
                      "simulate_peak_rss_gb": _peak_gb()}))


def train_1m_child(path: str, rounds: int, max_rows: int | None) -> None:
    """Child 2: load the history and train; its RSS high-water mark is the figure."""
    shipments, events = pd.read_pickle(path)
    t = time.perf_counter()
    _, report = train_model(shipments, events, num_boost_round=rounds,
                            max_train_rows=max_rows)
    print(json.dumps({"train_seconds": round(time.perf_counter() - t, 1),
                      "rows": report["model"]["rows"], "train_peak_rss_gb": _peak_gb(),
                      "test_mae_hours": report["evaluation"]["overall"]["model"]["mae_hours"],
                      "test_coverage": report["evaluation"]["overall"]["model"][
                          "coverage_p10_p90"]}))


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 2)


def bench_train_1m(rounds: int, max_rows: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "history.pkl")
        results: dict[str, Any] = {"shipments": 1_000_000, "rounds": rounds,
                                   "max_train_rows": max_rows}
        for args in (["--simulate-1m-child", path],
                     ["--train-1m-child", path, "--rounds", str(rounds)]
                     + (["--max-rows", str(max_rows)] if max_rows else [])):
            out = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                                 text=True, check=True)
            results |= json.loads(out.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--train-1m", action="store_true", help="also measure 1M training")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--max-rows", type=int, default=None,
                        help="subsample training snapshots for the 1M run")
    parser.add_argument("--simulate-1m-child", help=argparse.SUPPRESS)
    parser.add_argument("--train-1m-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate_1m_child:
        simulate_1m_child(args.simulate_1m_child)
        return
    if args.train_1m_child:
        train_1m_child(args.train_1m_child, args.rounds, args.max_rows)
        return
    results: dict[str, Any] = {"scoring": bench_batch_and_latency(args.rows)}
    if args.train_1m:
        results["train_1m"] = bench_train_1m(args.rounds, args.max_rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    r = results["scoring"]
    print("| metric | value |\n|---|---|")
    print(f"| raw inplace_predict (rows/s) | {r['raw_inplace_predict_rows_per_s']:,} |")
    print(f"| features + model (rows/s) | {r['features_plus_model_rows_per_s']:,} |")
    print(f"| ratio vs raw (target >= 0.70) | {r['ratio_vs_raw']:.2f} |")
    print(f"| features only (rows/s) | {r['features_only_rows_per_s']:,} |")
    print(f"| single shipment p50 / p99 (ms) | {r['single_latency_ms_p50']} / "
          f"{r['single_latency_ms_p99']} |")
    if "train_1m" in results:
        t = results["train_1m"]
        print(f"| 1M training peak RSS (GB, target <= 4) | {t['train_peak_rss_gb']} |")
        print(f"| 1M simulation peak RSS (GB, separate process) | {t['simulate_peak_rss_gb']} |")
        print(f"| 1M simulate / train (s) | {t['simulate_seconds']} / {t['train_seconds']} |")


if __name__ == "__main__":
    main()
