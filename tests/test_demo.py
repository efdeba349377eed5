"""A smoke test of `parcelcast demo`, as small as it goes, on real processes: its summary's
invariants. The full demo, as the README prints it, runs in .ci/readme_walkthrough.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.store.embedded import with_database


def test_smallest_demo_keeps_its_invariants(tmp_path: Path, postgres_admin: str,
                                           redis_server_url: str) -> None:
    out = tmp_path / "summary.json"
    env = {**os.environ, "DATABASE_URL": with_database(postgres_admin, "postgres"),
           "REDIS_URL": redis_server_url, "PARCELCAST_DATA_DIR": str(tmp_path / "data")}
    env.pop("PARCELCAST_RUN_STARTED", None)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--shipments", "500", "--days", "2",
         "--speed", "16000", "--rounds", "10", "--seed", "11", "--port", "0", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())
    standins = summary["standins"]
    # Nothing sent twice, and everything we recorded as sent reached a stand-in.
    assert standins["sms"]["duplicates"] == 0 and standins["email"]["duplicates"] == 0
    sent = {ch: sum(m["sent"] for m in summary["messages"] if m["channel"] == ch)
            for ch in ("sms", "email")}
    assert sent["sms"] == standins["sms"]["accepted"], (summary, result.stdout)
    assert sent["email"] == standins["email"]["accepted"], (summary, result.stdout)
    assert summary["ingested"]["rejected"] == 0 and not summary["ingested"]["http_errors"]
    accuracy = summary["accuracy"]
    assert accuracy["parcels"] > 0
    assert accuracy["parcels"] == accuracy["delivered"]  # every delivered parcel had an ETA
    # The terminal gets stage lines, the libraries' logs go to the demo's log file.
    assert "8/8 summary" in result.stdout
    assert " INFO " not in result.stdout + result.stderr
    assert "alembic" in (tmp_path / "data" / "demo-logs" / "demo.log").read_text()
    # DATABASE_URL is set: it stays the CLI's database, and the demo says how to switch.
    assert "export DATABASE_URL=" in result.stdout
    assert not (tmp_path / "data" / "demo-database").exists()
