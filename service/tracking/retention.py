"""`parcelcast maintenance`: tracking events' monthly partitions made ahead of time, and those
past the retention dropped with their events and dedupe keys (docs/operations.md,
"Tracking events: partitions and retention").

A month's partition holds the events *stored* in that UTC month (received_at, the service
clock). With EVENT_RETENTION_MONTHS = N (0: keep everything), a month's partition is dropped
once N whole months have passed since it ended: an event is kept at least N months after it
was stored. A scan replayed after its event was dropped is stored again, as a new event (its
key went with it); before that it is recognised however late it comes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from service.store import event_partitions as store
from service.store.event_partitions import Partition
from service.store.locks import session_lock

LAST_MONTH = datetime(9999, 12, 1, tzinfo=UTC)  # no month after it to bound a partition with


def month_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, n: int) -> datetime:
    year, index = divmod(month.year * 12 + month.month - 1 + n, 12)
    return month.replace(year=year, month=index + 1)


def _shifted(month: datetime, n: int) -> datetime | None:
    """`add_months`, or None past the years a datetime holds (1-9999)."""
    index = month.year * 12 + month.month - 1 + n
    return add_months(month, n) if 12 <= index <= 9999 * 12 + 11 else None


@dataclass(frozen=True)
class Plan:
    create: list[tuple[datetime, datetime]]  # [start, end) of each month to give a partition
    drop: list[Partition]
    cutoff: datetime | None  # events stored before it are past the retention (None: kept)


def plan(now: datetime, ahead: int, retention_months: int, existing: list[Partition],
         in_default: list[datetime]) -> Plan:
    """What maintenance does at `now`: partitions for this month and the `ahead` next ones
    and for every unexpired month the default partition holds rows of; drop the partitions
    that ended at least `retention_months` months before this month began (0: none)."""
    current = month_start(now)
    # Nothing can be older than year 1: a retention reaching past it expires nothing.
    cutoff = _shifted(current, -retention_months) if retention_months > 0 else None
    ahead_months = (_shifted(current, k) for k in range(ahead + 1))
    wanted = {m for m in ahead_months if m is not None} | set(in_default)
    bounded = [(p.start, p.end, p) for p in existing if p.start is not None and p.end is not None]
    create = []
    for month in sorted(wanted):
        if month >= LAST_MONTH:
            continue  # its rows stay in the default partition
        end = add_months(month, 1)
        if cutoff is not None and end <= cutoff:
            continue  # expired: the default partition's rows of it are deleted instead
        if any(start < end and month < stop for start, stop, _ in bounded):
            continue
        create.append((month, end))
    drop = [p for _, stop, p in bounded if cutoff is not None and stop <= cutoff]
    return Plan(create, drop, cutoff)


@dataclass
class Report:
    now: datetime
    dry_run: bool
    ahead: int
    retention_months: int
    cutoff: datetime | None = None
    created: list[dict[str, Any]] = field(default_factory=list)  # name, start, end, moved
    dropped: list[dict[str, Any]] = field(default_factory=list)  # name, start, end, events
    expired_from_default: int = 0
    partitions: list[str] = field(default_factory=list)  # after the run (dry run: before)
    skipped: str | None = None
    # Changes whose lock was not had within the store's timeout (tried again next run).
    postponed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in asdict(self).items()} | {
            "created": [_iso(c) for c in self.created],
            "dropped": [_iso(d) for d in self.dropped]}

    @property
    def changed(self) -> bool:
        return bool(self.created or self.dropped or self.expired_from_default)


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


async def maintain(conn: asyncpg.Connection, now: datetime, ahead: int, retention_months: int,
                   *, dry_run: bool = False) -> Report:
    """Plan at `now` and, unless `dry_run`, carry it out; one run at a time (a session
    advisory lock: a second one returns at once with `skipped` set)."""
    report = Report(now, dry_run, ahead, retention_months)
    async with session_lock(conn, store.MAINTENANCE_LOCK) as held:
        if not held:
            report.skipped = "another maintenance is running"
            return report
        await _run(conn, report)
    return report


async def _run(conn: asyncpg.Connection, report: Report) -> None:
    existing = await store.partitions(conn)
    todo = plan(report.now, report.ahead, report.retention_months, existing,
                await store.default_months(conn))
    report.cutoff = todo.cutoff
    for start, end in todo.create:
        name = store.partition_name(start)
        try:
            moved = (await store.count_between(conn, store.DEFAULT, start, end)
                     if report.dry_run else await store.create(conn, start, end))
        except asyncpg.LockNotAvailableError:
            report.postponed.append(f"create {name}")
            continue
        report.created.append({"name": name, "start": start, "end": end,
                               "moved_from_default": moved})
    for partition in todo.drop:
        assert partition.end is not None
        try:
            events = (await store.count_between(conn, partition.name, None, partition.end)
                      if report.dry_run else await store.drop(conn, partition))
        except asyncpg.LockNotAvailableError:
            report.postponed.append(f"drop {partition.name}")
            continue
        report.dropped.append({"name": partition.name, "start": partition.start,
                               "end": partition.end, "events": events})
    if todo.cutoff is not None:
        report.expired_from_default = (
            await store.count_between(conn, store.DEFAULT, None, todo.cutoff) if report.dry_run
            else await store.expire_default(conn, todo.cutoff))
    report.partitions = [p.name for p in await store.partitions(conn)]
