"""The demo, stage by stage: one stamped line each, a bar for each long step, all on real
processes; library logs in a file (service.demo.console)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd

from predictor.simulator import SimulatedHistory, simulate
from predictor.train import DEFAULT_ROUNDS
from service.clock import ScaledClock
from service.demo import database as demo_db
from service.demo import replay, summary
from service.demo.console import Console, shown
from service.demo.stack import API_PORT, DEMO_QUEUE, Stack, api_port
from service.eta.training import train_and_register
from service.security.api_keys import new_key
from service.security.links import tracking_url
from service.settings import Settings
from service.store import api_keys, work
from service.store.embedded import resolve_stores
from service.store.history import load_history
from service.store.migrations import upgrade
from service.store.pool import connect
from service.store.redis import arq_client

HISTORY_DAYS = 90
# Real seconds the live days take at the default speed, and the head start the processes
# get before the live clock runs (to start, and to give the parcels in flight their ETAs).
REPLAY_SECONDS = 60
STARTUP_SECONDS = 15.0
START = datetime(2026, 8, 24, tzinfo=UTC)  # the live days then fall in late November
STAGES = 8


@dataclass
class DemoOptions:
    shipments: int = 20_000
    days: int = 5
    speed: float = 0.0  # 0: pick one that replays the days in about REPLAY_SECONDS
    seed: int = 7
    keep_running: bool = False
    # The demo's model trains lighter than `parcelcast train` (DEFAULT_ROUNDS on every
    # snapshot) so that the whole demo fits in a few minutes; it says so where it reports.
    rounds: int = 60
    max_train_rows: int = 60_000
    port: int = API_PORT  # the API's; another when it is busy, any free one for 0


def split(history: SimulatedHistory, t0: datetime, end: datetime
          ) -> tuple[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
                     tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """What was known at t0 (loaded as history) and what happens in [t0, end) (replayed)."""
    s, e, o = history.shipments, history.events, history.orders
    past_s = s[s["label_created_at"] < t0].copy()
    past_s["shipped_at"] = past_s["shipped_at"].where(past_s["shipped_at"] < t0)
    past_s["delivered_at"] = past_s["delivered_at"].where(past_s["delivered_at"] < t0)
    if "carrier_estimate_as_of" in past_s:  # the carrier's estimate, if it was given yet
        told = past_s["carrier_estimate_as_of"] < t0
        past_s["carrier_estimated_delivery"] = past_s["carrier_estimated_delivery"].where(told)
        past_s["carrier_estimate_as_of"] = past_s["carrier_estimate_as_of"].where(told)
    past_e = e[(e["occurred_at"] < t0) & e["tracking_number"].isin(past_s["tracking_number"])]
    past_o = o[o["order_id"].isin(past_s["order_id"])]
    live_s = s[(s["label_created_at"] >= t0) & (s["label_created_at"] < end)]
    live_o = o[o["order_id"].isin(live_s["order_id"])]
    live_e = e[(e["occurred_at"] >= t0) & (e["occurred_at"] < end)]
    return (past_o, past_s, past_e), (live_o, live_s, live_e)


def live_estimates(shipments: pd.DataFrame, t0: datetime
                   ) -> dict[str, tuple[pd.Timestamp, Any]]:
    """Carrier estimates given during the replay: tracking number -> (as of, date)."""
    if "carrier_estimate_as_of" not in shipments:
        return {}
    live = shipments[shipments["carrier_estimate_as_of"] >= t0]
    return {str(t): (pd.Timestamp(a), d) for t, a, d in zip(
        live["tracking_number"], live["carrier_estimate_as_of"],
        live["carrier_estimated_delivery"], strict=True)}


async def run_demo(settings: Settings, options: DemoOptions, console: Console,
                   log_dir: Path) -> dict[str, Any]:
    started = time.monotonic()
    stages: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        """Seconds spent in the stage that just ended (printed in the summary)."""
        nonlocal mark
        now = time.monotonic()
        stages[name] = round(now - mark, 1)
        mark = now

    total_days = HISTORY_DAYS + options.days
    t0 = START + timedelta(days=HISTORY_DAYS)
    end = t0 + timedelta(days=options.days)
    speed = options.speed or options.days * 86400 / REPLAY_SECONDS

    embedded = [n for n, url in (("PostgreSQL", settings.database_url),
                                 ("Redis", settings.redis_url)) if url is None]
    configured = [v for v, url in (("DATABASE_URL", settings.database_url),
                                   ("REDIS_URL", settings.redis_url)) if url is not None]
    console.stage("stores: " + "; ".join(
        ([f"{' and '.join(embedded)} embedded in {shown(settings.data_dir)} (left running "
          "for the CLI; `parcelcast stores stop` ends them)"] if embedded else [])
        + ([f"{' and '.join(configured)} as set"] if configured else [])))
    urls = await asyncio.to_thread(resolve_stores, settings)
    name = demo_db.name_for(options.seed)
    console.stage(f"database {name}: created, migrated, an admin API key")
    database_url = await demo_db.create_fresh(urls.database_url, name)
    await asyncio.to_thread(upgrade, database_url)
    if urls.embedded_postgres:  # from now on `parcelcast ...` works on the demo's data
        demo_db.remember(settings.data_dir, name)
    key_id, key, key_hash = new_key()
    conn = await connect(database_url)
    await api_keys.create(conn, key_id, key_hash, ["admin"], "demo", t0)
    lap("database")

    console.stage(f"simulating {options.shipments:,} shipments over {HISTORY_DAYS} days "
                  f"+ {options.days} live days (seed {options.seed})")
    count = round(options.shipments * total_days / HISTORY_DAYS)
    history = await asyncio.to_thread(simulate, count, total_days, START, options.seed)
    (past_o, past_s, past_e), (live_o, live_s, live_e) = split(history, t0, end)
    lap("simulation")

    rows = len(past_o) + len(past_s) + len(past_e)
    console.stage(f"loading the history: {len(past_s):,} shipments, {len(past_e):,} scans")
    with console.bar(rows, "COPY", " rows") as bar:
        await load_history(conn, past_o, past_s, past_e, t0, progress=bar.update)
    # Parcels still on their way when the replay starts get an ETA straight away, as they
    # would after an import in production.
    in_flight = past_s[past_s["delivered_at"].isna()
                       & (past_s["label_created_at"] > t0 - timedelta(days=30))]
    # Due before the live clock starts, so they are done before the first live scan arrives.
    await work.add(conn, work.REFRESH_SHIPMENT, list(in_flight["shipment_id"].astype(str)), t0,
                   run_after=t0 - timedelta(days=1))
    lap("history_load")

    console.stage(f"training the demo's ETA model: {options.rounds} boosting rounds on at "
                  f"most {options.max_train_rows:,} snapshots")
    with console.bar(100, "training") as bar:
        def progress(stage: str, fraction: float) -> None:
            bar.n = round(fraction * 100)
            bar.set_postfix_str(stage)
            bar.refresh()
        # The simulated frames (what was just loaded) keep the simulator's oracle columns,
        # so the evaluation can show how far the model is from the best possible.
        outcome = await train_and_register(conn, t0, rounds=options.rounds,
                                           progress=progress, frames=(past_s, past_e),
                                           max_train_rows=options.max_train_rows)
    print_evaluation(console, outcome.report)
    await conn.close()
    lap("training")

    port = api_port(options.port)
    # The one real instant every process anchors the accelerated clock to: a little ahead,
    # so the processes start and the parcels in flight get their ETAs before live time runs.
    startup = startup_seconds()
    anchor = time.time() + startup  # clock-ok
    stack = Stack(database_url, urls.redis_url, t0.isoformat(), anchor, speed, end.isoformat(),
                  log_dir, port)
    console.stage(f"starting the API on {stack.api}, 2 workers and the Twilio/SMTP "
                  f"stand-ins (clock x{speed:,.0f}); ETAs for {len(in_flight):,} parcels "
                  f"in flight")
    if startup > STARTUP_SECONDS:
        console.detail(f"the machine is busy (load {os.getloadavg()[0]:.1f} on "
                       f"{os.cpu_count()} cores): the processes get {startup:.0f} s to start")
    if options.port and port != options.port:
        console.detail(f"port {options.port} is busy, so the API is on port {port} this time: "
                       f"use it instead of {options.port} in the README's examples")
    clock = ScaledClock(t0, stack.clock_anchor, speed, realtime_from=end)
    try:
        # Jobs a previous (interrupted) demo left in the queue belong to a dropped database.
        queue = arq_client(urls.redis_url, DEMO_QUEUE)
        try:
            await queue.delete(DEMO_QUEUE)
        finally:
            await queue.aclose()
        await stack.start()
        if stack.api_port != port:
            console.detail(f"port {port} was taken while the processes started, so the API "
                           f"is on port {stack.api_port} this time")
        await wait_for_work(database_url, until=anchor, console=console)
        lap("start_and_in_flight_etas")

        console.stage(f"replaying {options.days} days of live traffic through the API in "
                      f"~{options.days * 86400 / speed:.0f} s")
        pushes = replay.plan(live_o, live_s, live_e, options.seed,
                             estimates=live_estimates(history.shipments, t0))
        with console.bar(len(pushes), "replay", " calls") as bar:
            counts = await replay.run(stack.api, key, pushes, clock, end, bar.update,
                                      options.seed)
        lap("replay")

        console.stage("summary: the workers finish what was due, then the counts")
        behind = await work_behind(database_url, clock, end)
        if behind > timedelta(hours=24):
            console.detail(
                f"the workers were {behind.total_seconds() / 3600:.0f} simulated hours behind "
                f"the clock when the replay ended (a busy machine?): ETAs computed late are less "
                f"accurate; `--speed {speed / 2:.0f}` replays at half the pace")
        await wait_for_quiet(database_url, clock, end, console=console)
        # Freeze the picture: the workers finish their jobs and stop, so what the database
        # says was sent and what the stand-ins received can be compared exactly.
        if not options.keep_running and not await asyncio.to_thread(stack.stop_workers):
            console.detail("a worker had to be killed: a send it had begun may be missing "
                           "from the counts")
        lap("drain")
        conn = await connect(database_url)
        try:
            result = await build_summary(conn, stack, counts, t0, end, past_s, settings)
        finally:
            await conn.close()
        lap("summary")
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        result["stage_seconds"] = stages
        result["model"] = demo_model(outcome.report)
        print_summary(console, result, options)
        print_next_steps(console, name, database_url, urls.embedded_postgres, log_dir)
        if options.keep_running:
            console.line(
                f"\nStill running: the API on {stack.api} (admin key {key}), 2 workers and "
                f"the stand-ins,\non the demo's clock, now at real speed. Try the API from "
                f"another terminal (README). Ctrl+C stops them all.")
            await asyncio.Event().wait()
        return result
    finally:
        stack.stop()


def demo_model(report: dict[str, Any]) -> dict[str, Any]:
    """How the demo's model was trained, as its report says."""
    model = report["model"]
    return {"rounds": model["params"]["num_boost_round"], "train_rows": model["rows"]["train"],
            "test_rows": model["rows"]["test"], "cutoff": model["data_range"]["cutoff"]}


def print_evaluation(console: Console, report: dict[str, Any]) -> None:
    evaluation = report["evaluation"].get("overall", {})
    m = demo_model(report)
    console.detail(f"demo model: {m['rounds']} rounds on {m['train_rows']:,} snapshots "
                   f"(`parcelcast train`: {DEFAULT_ROUNDS} rounds on every one); test period "
                   f"from {m['cutoff'][:10]}, {m['test_rows']:,} snapshots:")
    names = {"model": "demo model", "lane_median": "carrier/lane median",
             "promise": "promised date", "oracle": "simulator's oracle"}
    for method, label in names.items():
        r = evaluation.get(method)
        if r:
            window = (f", {r['coverage_p10_p90']:.0%} inside p10-p90"
                      if r.get("coverage_p10_p90") is not None else "")
            console.detail(f"  {label:20s} p50 off by {r['mae_days']:.2f} days{window}")


def print_next_steps(console: Console, name: str, database_url: str, embedded: bool,
                     log_dir: Path) -> None:
    console.line(f"\nLogs: {shown(log_dir)}/ (this run's libraries in demo.log, each process "
                 f"in its own file)")
    if embedded:
        console.line(f"`parcelcast` commands now use the demo's database {name} (until "
                     f"`parcelcast demo --clean`): see the README's \"Try the API\".")
    else:
        console.line("DATABASE_URL is set, so `parcelcast` commands keep using it; for the "
                     "demo's database:")
        console.line(f"  export DATABASE_URL='{database_url}'")


def startup_seconds() -> float:
    """STARTUP_SECONDS, longer on a machine already busy (5 Python processes importing
    pandas and XGBoost at once can take half a minute there): a process still starting when
    the accelerated clock runs makes everything after it late."""
    # The last minute's load counts the demo's own training (about 1): not a busy machine.
    busy = (os.getloadavg()[0] - 1.0) / (os.cpu_count() or 1)
    return STARTUP_SECONDS * min(3.0, max(1.0, busy))


async def work_behind(database_url: str, clock: ScaledClock, end: datetime) -> timedelta:
    """How long the oldest work due (by the replay's end) has waited, in simulated time."""
    now = min(clock.now(), end)
    conn = await connect(database_url)
    try:
        oldest = await conn.fetchval(
            "SELECT min(run_after) FROM work_items WHERE run_after <= $1", now)
    finally:
        await conn.close()
    return now - oldest if oldest is not None else timedelta(0)


async def wait_for_quiet(database_url: str, clock: ScaledClock, end: datetime,
                         console: Console, limit_s: float = 120) -> None:
    """Until no work due by the replay's `end` is left (deferred SMS for the morning may
    still wait; what the still-running clock makes due later is the future)."""
    query = "SELECT count(*) FROM work_items WHERE run_after <= $1"
    await _count_down(database_url, lambda conn: conn.fetchval(query, min(clock.now(), end)),
                      "work due", console, time.monotonic() + limit_s)


async def wait_for_work(database_url: str, until: float, console: Console) -> None:
    """Until the work queue is empty, or the real instant `until` passes."""
    deadline = time.monotonic() + until - time.time()  # clock-ok: real time, the replay's start
    await _count_down(database_url, lambda conn: conn.fetchval("SELECT count(*) FROM work_items"),
                      "in-flight ETAs", console, deadline)


async def _count_down(database_url: str, remaining: Callable[[asyncpg.Connection], Any],
                      desc: str, console: Console, deadline: float) -> None:
    """Poll `remaining` until it is 0 or the monotonic `deadline` passes, with a bar."""
    conn = await connect(database_url)
    try:
        first = left = int(await remaining(conn))
        with console.bar(first, desc, " items") as bar:
            while left and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                left = int(await remaining(conn))
                bar.n = max(0, first - left)
                bar.refresh()
    finally:
        await conn.close()


async def build_summary(conn: asyncpg.Connection, stack: Stack, counts: replay.ReplayCounts,
                        t0: datetime, end: datetime, past_s: pd.DataFrame,
                        settings: Settings) -> dict[str, Any]:
    standins, samples = await summary.standin_stats(stack.twilio, stack.smtp_control)
    in_transit = await conn.fetchval(
        "SELECT shipment_id FROM shipments WHERE status = 'in_transit' AND eta_id IS NOT NULL "
        "ORDER BY shipment_id LIMIT 1")
    return {
        "ingested": {"orders": counts.orders, "shipments": counts.shipments,
                     "events_sent": counts.events_sent, "accepted": counts.accepted,
                     "duplicates": counts.duplicates, "rejected": counts.rejected,
                     "http_errors": dict(counts.errors)},
        "etas": await conn.fetchval("SELECT count(*) FROM shipment_etas WHERE NOT shadow"),
        "shipments_with_eta": await conn.fetchval(
            "SELECT count(DISTINCT shipment_id) FROM shipment_etas WHERE NOT shadow"),
        "accuracy": await summary.accuracy(conn, t0, end, past_s),
        "against_carrier": await summary.against_carrier(conn, t0, end),
        "delays": await summary.delays(conn),
        "messages": await summary.messages(conn),
        "standins": standins,
        "samples": samples,
        "tracking_link": tracking_url(stack.api, settings.parcelcast_secret_key, in_transit, end)
        if in_transit else None,
    }


def print_summary(console: Console, r: dict[str, Any], options: DemoOptions) -> None:
    i, a, d = r["ingested"], r["accuracy"], r["delays"]
    lines = [
        "",
        f"Parcelcast demo: {options.days} live days, seed {options.seed}, "
        f"{r['wall_seconds']:.0f} s ("
        + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in r["stage_seconds"].items())
        + ")",
        f"  ingested   {i['orders']:,} orders, {i['shipments']:,} shipments, "
        f"{i['events_sent']:,} scans sent: {i['accepted']:,} new, {i['duplicates']:,} "
        f"duplicates ignored, {i['rejected']} rejected, HTTP errors {i['http_errors'] or 0}",
        f"  ETAs       {r['etas']:,} computed for {r['shipments_with_eta']:,} shipments",
    ]
    if a.get("parcels"):
        lines += [
            f"  accuracy   {a['parcels']:,} parcels delivered during the replay, judged by "
            f"the first ETA the system showed (the demo model: {r['model']['rounds']} rounds "
            f"on {r['model']['train_rows']:,} snapshots):",
            f"             model p50 off by {a['model_mae_days']:.2f} days",
            f"             carrier/lane median off by {a['lane_median_mae_days']:.2f} days; "
            f"promised date off by {a['promise_mae_days']:.2f} days, "
            f"kept for {a['on_or_before_promise']:.0%}",
        ]
    if a.get("windows_ended"):
        lines.append(
            f"  window     of the {a['windows_ended']:,} first windows shown that had ended by "
            f"the replay's end (parcels delivered or not): {a['inside_window']:.0%} inside "
            f"the window"
            + (f"; {a['on_or_before_shown_date']:.0%} on or before the date shown (of "
               f"{a['dates_passed']:,} whose date had passed)" if a.get("dates_passed") else ""))
    c = r.get("against_carrier", {})
    if c.get("parcels"):
        lines += [
            f"  carrier    {c['parcels']:,} of them had the carrier's own estimated date: "
            f"off by {c['carrier_mae_days']:.2f} days, kept for {c['carrier_date_kept']:.0%}; "
            f"the ETA shown at that moment off by {c['model_mae_days']:.2f} days, "
            f"its date kept for {c['model_date_kept']:.0%}",
        ]
    if d.get("announced"):
        lines.append(
            f"  delays     {d['announced']} customers told of a delay, a median "
            f"{d['median_hours_before_promise']:.0f} h before the promised date ran out "
            f"({d['really_late_or_still_out']} of them did arrive late or are still out)")
    lines.append("  messages   moment / channel: sent (waiting for morning, skipped)")
    for m in r["messages"]:
        lines.append(f"             {m['moment']:20s} {m['channel']:5s} {m['sent']:6,} "
                     f"({m['waiting']} waiting, {m['skipped']} skipped)")
    s = r["standins"]
    lines.append(f"  stand-ins  SMS accepted {s['sms']['accepted']:,}, e-mail accepted "
                 f"{s['email']['accepted']:,}; duplicates: SMS {s['sms']['duplicates']}, "
                 f"e-mail {s['email']['duplicates']}")
    lines += ["  samples"] + [f"             {x[:150]}" for x in r["samples"]]
    if r.get("tracking_link"):
        lines.append(f"  tracking   {r['tracking_link']}"
                     + ("" if options.keep_running else "  (use --keep-running to open it)"))
    console.line("\n".join(lines))
