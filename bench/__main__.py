"""`python -m bench` (or `./run bench`): every benchmark, one markdown table, one JSON file.

Each benchmark runs in its own process, measures its raw floor in the same run, and
writes bench/results/<name>.json; this gathers them into bench/results/README.md and
bench/results/all.json. `--quick` runs smaller sizes (for a smoke check, not for figures).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, markdown

ROOT = Path(__file__).resolve().parent.parent

BENCHES: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, quick arguments)
    "ingest": (["-m", "bench.bench_ingest"],
               ["-m", "bench.bench_ingest", "--events", "20000", "--singles", "2000"]),
    "eta": (["-m", "bench.bench_eta"],
            ["-m", "bench.bench_eta", "--shipments", "5000", "--refreshes", "100",
             "--rounds", "50"]),
    "scoring": (["bench/bench_scoring.py", "--train-1m"],
                ["bench/bench_scoring.py", "--rows", "20000"]),
    # Peak memory of training on 1M simulated shipments, by stage (--dask: also on a cluster).
    "training": (["-m", "bench.bench_training"],
                 ["-m", "bench.bench_training", "--shipments", "20000", "--rounds", "20"]),
    "render": (["-m", "bench.bench_render"], ["-m", "bench.bench_render", "--messages", "600"]),
    "notify": (["-m", "bench.bench_notify"], ["-m", "bench.bench_notify", "--messages", "600"]),
    "pages": (["-m", "bench.bench_pages"],
              ["-m", "bench.bench_pages", "--shipments", "10000", "--requests", "400"]),
    # Ten minutes of mixed traffic (one with --quick): errors, latency, memory over time.
    "soak": (["-m", "bench.bench_soak"], ["-m", "bench.bench_soak", "--minutes", "1"]),
    # The whole pipeline at a steady rate of events for ten minutes (one with --quick), then
    # drained: freshness, message latency, hand-offs, queue depth, RSS, lost and duplicates.
    "pipeline": (["-m", "bench.bench_pipeline"],
                 ["-m", "bench.bench_pipeline", "--minutes", "1"]),
}


def rows_for(name: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each benchmark's JSON as table rows (figure, measured, floor, ratio, target, met)."""
    if "rows" in data:
        return list(data["rows"])
    if name == "scoring":
        s = data["scoring"]
        rows = [{
            "figure": "batch ETA scoring, features + model (rows/s)",
            "measured": round(s["features_plus_model_rows_per_s"]),
            "floor": f"raw inplace_predict {round(s['raw_inplace_predict_rows_per_s'])} rows/s",
            "ratio": s["ratio_vs_raw"], "target": "≥ 70% of raw",
            "met": s["ratio_vs_raw"] >= 0.7,
        }]
        train = data.get("train_1m")
        if train:
            peak = (train.get("train_peak_rss_gb") or train.get("peak_rss_gb")
                    or train.get("peak_rss_mb", 0) / 1024)
            rows.append({"figure": "training on 1M simulated shipments, peak RSS (GB)",
                         "measured": round(peak, 2), "floor": None, "ratio": None,
                         "target": "≤ 4 GB", "met": peak <= 4})
        return rows
    if name == "render":
        return [{
            "figure": "notifications rendered and handed to the stand-ins (msgs/s)",
            "measured": data["end_to_end_msgs_per_s"],
            "floor": f"pre-rendered raw sends {data['floor_msgs_per_s']} msgs/s",
            "ratio": data["ratio_to_floor"], "target": "≥ 300/s, 0 duplicates",
            "met": data["meets_target"] and data["duplicates"] == 0,
        }, {
            "figure": "render cost per message (µs): e-mail / SMS",
            "measured": f"{data['email_render_us']} / {data['sms_render_us']}", "floor": None,
            "ratio": None, "target": "(reported)", "met": True,
        }]
    return []


def notes() -> list[str]:
    """The notes some result files carry (the command, the machine's load, one line of
    figures for runs kept beside the table's, e.g. pipeline-1worker.json), under the table."""
    lines: list[str] = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "all.json":
            continue
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("notes"):
            lines += [f"## {path.stem}", "", *(f"- {n}" for n in data["notes"]), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    parser.add_argument("--rate", type=float, help="pipeline: events per second")
    parser.add_argument("--workers", type=int, help="pipeline: worker processes")
    parser.add_argument("--collect", action="store_true",
                        help="Run nothing; rebuild the table from the latest result files.")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    table: list[dict[str, Any]] = []
    for name, (full, quick) in BENCHES.items():
        if args.collect or (args.only and name not in args.only):
            continue
        command = [sys.executable, *(quick if args.quick else full)]
        if name == "pipeline":
            command += [*(["--rate", str(args.rate)] if args.rate else []),
                        *(["--workers", str(args.workers)] if args.workers else [])]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT)
        if result.returncode != 0:
            print(f"   {name} failed with exit code {result.returncode}", flush=True)
            continue
        print(f"   done in {time.monotonic() - started:.0f} s", flush=True)
    # The table shows every benchmark's latest result file (reruns with --only keep the rest).
    for name in BENCHES:
        path = RESULTS / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            table += [{"benchmark": name, **row} for row in rows_for(name, data)]
    text = "\n".join([
        "# Benchmarks", "",
        f"Latest result of each benchmark (`python -m bench`, see bench/results/*.json for "
        f"each run's arguments) on {platform.machine()} with "
        f"{len(__import__('os').sched_getaffinity(0))} cores, collected "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Targets from "
        "docs/product.md (Performance targets); each floor is measured in the same run as "
        "its figure.", "",
        markdown(table), "", *notes()])
    (RESULTS / "README.md").write_text(text)
    (RESULTS / "all.json").write_text(json.dumps(table, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
