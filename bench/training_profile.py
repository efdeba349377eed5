"""Where training's memory goes, step by step: the highest RSS seen inside each step of
`predictor.train.train_model` (and between steps), printed as each step ends.

    .venv/bin/python -m bench.bench_training --simulate-child /tmp/h.pkl --shipments 1000000
    .venv/bin/python -m bench.training_profile /tmp/h.pkl 10     # history, rounds

Memory hardly depends on the rounds (10 keep the run short); the RSS is sampled from /proc
every 0.2 s by a thread, the high-water mark is getrusage's.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import threading
import time
from typing import Any

import pandas as pd

import predictor.train as T
from bench.common import rss_mb

STEPS = ("shipment_attributes", "recent_performance", "training_snapshots",
         "spilled_snapshots", "fit_booster",
         "prepare_fit", "train_prepared",
         "raw_rows", "snapshot_outcomes", "online_quantiles", "evaluate_snapshots",
         "recalibrate")


def main() -> None:
    pid = os.getpid()
    stage = ["loading"]
    peaks: dict[str, float] = {}
    started = time.time()

    def sample() -> None:
        peaks[stage[0]] = max(peaks.get(stage[0], 0.0), rss_mb(pid))

    def loop() -> None:
        while True:
            sample()
            time.sleep(0.2)

    def mark(name: str) -> None:
        sample()
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{time.time() - started:7.0f}s leaving {stage[0]!r}: peak "
              f"{peaks.get(stage[0], 0):.0f} MB; now {rss_mb(pid):.0f} MB; high-water "
              f"{hwm:.0f} MB", flush=True)
        stage[0] = name

    def wrap(f: Any, name: str) -> Any:
        @functools.wraps(f)
        def step(*args: Any, **kwargs: Any) -> Any:
            mark(name)
            try:
                return f(*args, **kwargs)
            finally:
                mark(f"between (after {name})")
        return step

    threading.Thread(target=loop, daemon=True).start()
    shipments, events = pd.read_pickle(sys.argv[1])
    for name in STEPS:
        setattr(T, name, wrap(getattr(T, name), name))
    mark("start")
    T.train_model(shipments, events, num_boost_round=int(sys.argv[2]))
    mark("end")


if __name__ == "__main__":
    main()
