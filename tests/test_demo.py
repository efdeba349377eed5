"""The one-command demo, small, end to end on real processes: its summary's invariants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.store.embedded import with_database


def test_small_demo_end_to_end(tmp_path: Path, postgres_admin: str, redis_server_url: str
                               ) -> None:
    out = tmp_path / "summary.json"
    env = {**os.environ, "DATABASE_URL": with_database(postgres_admin, "postgres"),
           "REDIS_URL": redis_server_url, "PARCELCAST_DATA_DIR": str(tmp_path / "data"),
           "PARCELCAST_LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--shipments", "2000", "--days", "3",
         "--speed", "4000", "--rounds", "60", "--seed", "11", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())
    standins = summary["standins"]
    # Nothing sent twice, and everything we recorded as sent reached a stand-in.
    assert standins["sms"]["duplicates"] == 0 and standins["email"]["duplicates"] == 0
    sent = {ch: sum(m["sent"] for m in summary["messages"] if m["channel"] == ch)
            for ch in ("sms", "email")}
    assert sent["sms"] == standins["sms"]["accepted"]
    assert sent["email"] == standins["email"]["accepted"]
    assert summary["ingested"]["duplicates"] > 0 and summary["ingested"]["rejected"] == 0
    assert not summary["ingested"]["http_errors"]
    accuracy = summary["accuracy"]
    assert accuracy["parcels"] > 0
    assert accuracy["parcels"] == accuracy["delivered"]  # every delivered parcel had an ETA
    assert accuracy["model_mae_days"] < accuracy["lane_median_mae_days"]
    carrier = summary["against_carrier"]  # estimates rode in on the replayed scans
    assert carrier["parcels"] > 0 and 0 < carrier["carrier_date_kept"] <= 1
    assert "carrier" in result.stderr + result.stdout
    assert summary["delays"]["announced"] > 0
    assert summary["delays"]["min_hours_before_promise"] > 0  # told before the promise ran out
    assert "Parcelcast demo" in result.stderr + result.stdout
