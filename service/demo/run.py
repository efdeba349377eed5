"""The demo, stage by stage: each with a progress bar, all on real processes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pandas as pd
from tqdm import tqdm

from predictor.simulator import SimulatedHistory, simulate
from service.clock import ScaledClock
from service.demo import replay, summary
from service.demo.stack import DEMO_QUEUE, Stack
from service.eta.training import train_and_register
from service.security.api_keys import new_key
from service.security.links import tracking_url
from service.settings import Settings
from service.store import api_keys, work
from service.store.embedded import with_database
from service.store.history import load_history
from service.store.migrations import upgrade
from service.store.pool import connect
from service.store.redis import arq_client

HISTORY_DAYS = 90
STARTUP_SECONDS = 20.0
START = datetime(2026, 8, 24, tzinfo=UTC)  # the live days then fall in late November


@dataclass
class DemoOptions:
    shipments: int = 50_000
    days: int = 5
    speed: float = 0.0  # 0: pick one that replays the days in about 90 seconds
    seed: int = 7
    keep_running: bool = False
    # A demo trains a little lighter than `parcelcast train` so it fits in minutes.
    rounds: int | None = 200
    max_train_rows: int = 250_000


def say(text: str) -> None:
    tqdm.write(text)


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


async def demo_database(database_url: str, seed: int) -> str:
    """A database of the demo's own on the same server, created fresh."""
    name = f"parcelcast_demo_{seed}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(database_url, name)


async def run_demo(settings: Settings, options: DemoOptions) -> dict[str, Any]:
    started = time.monotonic()
    stages: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        """Seconds spent in the stage that just ended (printed in the JSON summary)."""
        nonlocal mark
        now = time.monotonic()
        stages[name] = round(now - mark, 1)
        mark = now

    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("store URLs must be resolved first")
    total_days = HISTORY_DAYS + options.days
    t0 = START + timedelta(days=HISTORY_DAYS)
    end = t0 + timedelta(days=options.days)
    speed = options.speed or options.days * 86400 / 90

    say("1/6 database and keys")
    database_url = await demo_database(settings.database_url, options.seed)
    await asyncio.to_thread(upgrade, database_url)
    key_id, key, key_hash = new_key()
    conn = await connect(database_url)
    await api_keys.create(conn, key_id, key_hash, ["admin"], "demo", t0)

    say(f"2/6 simulating {options.shipments:,} shipments over {HISTORY_DAYS} days "
        f"+ {options.days} live days (seed {options.seed})")
    count = round(options.shipments * total_days / HISTORY_DAYS)
    history = await asyncio.to_thread(simulate, count, total_days, START, options.seed)
    (past_o, past_s, past_e), (live_o, live_s, live_e) = split(history, t0, end)
    lap("database_and_simulation")
    with tqdm(total=len(past_o) + len(past_s) + len(past_e), desc="loading history",
              unit=" rows") as bar:
        await load_history(conn, past_o, past_s, past_e, t0, progress=bar.update)
    # Parcels still on their way when the replay starts get an ETA straight away, as they
    # would after an import in production.
    in_flight = past_s[past_s["delivered_at"].isna()
                       & (past_s["label_created_at"] > t0 - timedelta(days=30))]
    # Due before the live clock starts, so they are done before the first live scan arrives.
    await work.add(conn, work.REFRESH_SHIPMENT, list(in_flight["shipment_id"].astype(str)), t0,
                   run_after=t0 - timedelta(days=1))

    lap("history_load")
    say("3/6 training the ETA model on the history")
    with tqdm(total=100, desc="training", bar_format="{desc}: {percentage:3.0f}%|{bar}| "
              "{postfix}") as bar:
        def progress(stage: str, fraction: float) -> None:
            bar.n = round(fraction * 100)
            bar.set_postfix_str(stage)
            bar.refresh()
        # The simulated frames (what was just loaded) keep the simulator's oracle columns,
        # so the evaluation can show how far the model is from the best possible.
        outcome = await train_and_register(conn, t0, rounds=options.rounds,
                                           progress=progress, frames=(past_s, past_e),
                                           max_train_rows=options.max_train_rows)
    evaluation = outcome.report["evaluation"].get("overall", {})
    for method in ("model", "lane_median", "promise", "oracle"):
        m = evaluation.get(method)
        if m:
            window = (f", inside p10-p90 {m['coverage_p10_p90']:.0%}"
                      if m.get("coverage_p10_p90") is not None else "")
            say(f"   {method:12s} p50 MAE {m['mae_days']:.2f} days{window} "
                f"(test period, {m['n']:,} ETA snapshots)")
    await conn.close()
    lap("training")

    say(f"4/6 starting the API, 2 workers and the Twilio/SMTP stand-ins (clock x{speed:,.0f})")
    # The one real instant every process anchors the accelerated clock to: a little ahead,
    # so the processes start and the parcels in flight get their ETAs before live time runs.
    anchor = time.time() + STARTUP_SECONDS  # clock-ok
    stack = Stack(database_url, settings.redis_url, t0.isoformat(), anchor, speed,
                  settings.data_dir / "demo-logs")
    clock = ScaledClock(t0, stack.clock_anchor, speed)
    # Jobs a previous (interrupted) demo left in the queue belong to a dropped database.
    queue = arq_client(settings.redis_url, DEMO_QUEUE)
    try:
        await queue.delete(DEMO_QUEUE)
    finally:
        await queue.aclose()
    await stack.start()
    await wait_for_work(database_url, until=anchor)
    lap("start_and_in_flight_etas")
    try:
        say(f"5/6 replaying {options.days} days of live traffic through {stack.api}")
        pushes = replay.plan(live_o, live_s, live_e, options.seed,
                             estimates=live_estimates(history.shipments, t0))
        with tqdm(total=len(pushes), desc="replay", unit=" calls") as bar:
            counts = await replay.run(stack.api, key, pushes, clock, end, bar.update,
                                      options.seed)
        lap("replay")
        await wait_for_quiet(database_url, clock, end)
        # Freeze the picture: the workers finish their jobs and stop, so what the database
        # says was sent and what the stand-ins received can be compared exactly.
        if not options.keep_running:
            stack.signal_workers()
            await wait_for_sends(database_url)
        lap("drain")
        say("6/6 summary")
        conn = await connect(database_url)
        try:
            result = await build_summary(conn, stack, counts, t0, end, past_s, settings)
        finally:
            await conn.close()
        lap("summary")
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        result["stage_seconds"] = stages
        print_summary(result, options)
        if options.keep_running:
            say(f"\nStill running. API {stack.api}  key {key}\nPress Ctrl+C to stop.")
            await asyncio.Event().wait()
        return result
    finally:
        stack.stop()


async def wait_for_quiet(database_url: str, clock: ScaledClock, end: datetime,
                         limit_s: float = 120) -> None:
    """Until no work due by the replay's `end` is left (deferred SMS for the morning may
    still wait; what the still-running clock makes due later is the future)."""
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            due = await conn.fetchval(
                "SELECT count(*) FROM work_items WHERE run_after <= $1", min(clock.now(), end))
            if due == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def wait_for_work(database_url: str, until: float) -> None:
    """Until the work queue is empty, or the real instant `until` passes."""
    conn = await connect(database_url)
    try:
        while time.time() < until:  # clock-ok: real time, the replay's start
            if not await conn.fetchval("SELECT count(*) FROM work_items"):
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def wait_for_sends(database_url: str, limit_s: float = 30) -> None:
    """Until no message is between "claimed" and "recorded" (the workers are draining)."""
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if not await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE state = 'sending'"):
                await asyncio.sleep(0.5)  # a send claimed just now shows up within this
                if not await conn.fetchval(
                        "SELECT count(*) FROM notifications WHERE state = 'sending'"):
                    return
            await asyncio.sleep(0.2)
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
        "etas": await conn.fetchval("SELECT count(*) FROM shipment_etas"),
        "shipments_with_eta": await conn.fetchval(
            "SELECT count(DISTINCT shipment_id) FROM shipment_etas"),
        "accuracy": await summary.accuracy(conn, t0, end, past_s),
        "against_carrier": await summary.against_carrier(conn, t0, end),
        "delays": await summary.delays(conn),
        "messages": await summary.messages(conn),
        "standins": standins,
        "samples": samples,
        "tracking_link": tracking_url(stack.api, settings.parcelcast_secret_key, in_transit, end)
        if in_transit else None,
    }


def print_summary(r: dict[str, Any], options: DemoOptions) -> None:
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
            f"the first ETA the system showed:",
            f"             model p50 off by {a['model_mae_days']:.2f} days; "
            f"{a['inside_window']:.0%} inside the window; "
            f"{a['on_or_before_shown_date']:.0%} on or before the date shown",
            f"             carrier/lane median off by {a['lane_median_mae_days']:.2f} days; "
            f"promised date off by {a['promise_mae_days']:.2f} days, "
            f"kept for {a['on_or_before_promise']:.0%}",
        ]
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
    say("\n".join(lines))
