"""Training memory: peak RSS of `train_model` on a million simulated shipments, where it
goes (the high-water mark of each training stage), and the same history trained on Dask.

    python -m bench --only training
    .venv/bin/python -m bench.bench_training [--shipments 1000000] [--rounds 60] [--dask]

The history is simulated in a child process of its own and handed over as a pickle (our
own frames, in a local temporary folder), so the training child's high-water mark
(`getrusage` ru_maxrss) counts only loading the frames and training, as `parcelcast
train` would hold them. While it trains, a thread samples the child's RSS every 0.2 s
and keeps the highest value seen in each stage the trainer reports.

`--dask`: also train the same history with :func:`predictor.distributed.train_model_dask`
on a LocalCluster of two single-threaded worker processes, and report the client's and
each worker's peak RSS (the history is handed to the cluster in partitions of shipments).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import rss_mb, write_result

START = datetime(2024, 8, 1, tzinfo=UTC)
TARGET_GB = 2.0


def simulate_child(path: str, shipments: int) -> None:
    from predictor.simulator import simulate

    t = time.perf_counter()
    history = simulate(shipments, 90, START, seed=9)
    pd.to_pickle((history.shipments, history.events), path)
    print(json.dumps({"simulate_seconds": round(time.perf_counter() - t, 1),
                      "events": int(len(history.events))}))


class StageSampler:
    """Highest RSS seen in each reported stage (sampled every 0.2 s from /proc)."""

    def __init__(self) -> None:
        self.stage = "loading the history"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StageSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def progress(self, stage: str, _fraction: float) -> None:
        self.stage = stage
        self.sample()

    def sample(self) -> None:
        mb = rss_mb(_pid())
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), mb)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()


def _pid() -> int:
    import os

    return os.getpid()


def train_child(path: str, rounds: int) -> None:
    from predictor.train import train_model

    with StageSampler() as sampler:
        shipments, events = pd.read_pickle(path)
        sampler.sample()
        loaded_gb = rss_mb(_pid()) / 1024
        t = time.perf_counter()
        _, report = train_model(shipments, events, num_boost_round=rounds,
                                progress=sampler.progress)
    model = report["evaluation"]["overall"]["model"]
    print(json.dumps({
        "train_seconds": round(time.perf_counter() - t, 1), "rows": report["model"]["rows"],
        "train_peak_rss_gb": _peak_gb(), "rss_after_loading_gb": round(loaded_gb, 2),
        "stage_peak_rss_gb": {k: round(v / 1024, 2) for k, v in sampler.peaks.items()},
        "test_mae_hours": model["mae_hours"], "test_coverage": model["coverage_p10_p90"]}))


def dask_child(path: str, rounds: int, partitions: int) -> None:
    from distributed import Client, LocalCluster

    from predictor.distributed import FramePartitions, train_model_dask

    with StageSampler() as sampler:
        shipments, events = pd.read_pickle(path)
        source = FramePartitions(shipments, events, partitions)
        del shipments, events
        t = time.perf_counter()
        local: Any = LocalCluster  # untyped
        connect: Any = Client
        with local(n_workers=2, threads_per_worker=1, processes=True,
                   dashboard_address=":0") as cluster, connect(cluster) as client:
            _, report = train_model_dask(source, client, num_boost_round=rounds,
                                         progress=sampler.progress)
            workers = client.run(_peak_gb)
    print(json.dumps({
        "dask_train_seconds": round(time.perf_counter() - t, 1),
        "dask_rows": report["model"]["rows"], "dask_partitions": partitions,
        "dask_client_peak_rss_gb": _peak_gb(),
        "dask_worker_peak_rss_gb": sorted(workers.values()),
        "dask_stage_peak_rss_gb": {k: round(v / 1024, 2) for k, v in sampler.peaks.items()}}))


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 2)


def run(shipments: int, rounds: int, dask: bool, partitions: int) -> dict[str, Any]:
    results: dict[str, Any] = {"shipments": shipments, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "history.pkl")
        children = [["--simulate-child", path], ["--train-child", path]]
        if dask:
            children.append(["--dask-child", path, "--partitions", str(partitions)])
        for args in children:
            out = subprocess.run([sys.executable, "-m", "bench.bench_training", *args,
                                  "--shipments", str(shipments), "--rounds", str(rounds)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"{args[0]} failed")
            results |= json.loads(out.stdout.strip().splitlines()[-1])
    return results


def rows_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    n = f"{r['shipments']:,}"
    rows = [{"figure": f"training on {n} simulated shipments, peak RSS (GB)",
             "measured": r["train_peak_rss_gb"],
             "floor": f"the history's frames alone {r['rss_after_loading_gb']} GB",
             "ratio": None, "target": f"≤ {TARGET_GB:g} GB",
             "met": r["train_peak_rss_gb"] <= TARGET_GB}]
    if "dask_client_peak_rss_gb" in r:
        rows.append({"figure": f"training on Dask ({r['dask_partitions']} partitions, 2 "
                               f"workers), peak RSS (GB): client / workers",
                     "measured": f"{r['dask_client_peak_rss_gb']} / "
                                 + " / ".join(map(str, r["dask_worker_peak_rss_gb"])),
                     "floor": None, "ratio": None, "target": "(reported)", "met": True})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shipments", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--simulate-child", help=argparse.SUPPRESS)
    parser.add_argument("--train-child", help=argparse.SUPPRESS)
    parser.add_argument("--dask-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate_child:
        return simulate_child(args.simulate_child, args.shipments)
    if args.train_child:
        return train_child(args.train_child, args.rounds)
    if args.dask_child:
        return dask_child(args.dask_child, args.rounds, args.partitions)
    result = run(args.shipments, args.rounds, args.dask, args.partitions)
    rows = rows_of(result)
    write_result("training", rows, {"run": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
