"""`parcelcast data-quality`: the feeds' data quality, as an operator reads it each morning."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import click

from service.cli.common import cli_settings, instant, main, resolved, run, with_db

_SPAN = re.compile(r"^(\d{1,4})([dh])$")


def _since(text: str, now: Any) -> Any:
    """'7d', '36h', a date or an ISO 8601 time with an offset, as an instant."""
    span = _SPAN.match(text.strip())
    if span:
        amount, unit = int(span.group(1)), span.group(2)
        return now - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    return instant(text, "--since")


@main.command("data-quality")
@click.option("--since", default="7d", show_default=True,
              help="The window: '7d', '24h', a date (UTC) or an ISO 8601 time with an offset. "
                   "Counters are per UTC day: the window starts on the day of this time.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def data_quality(since: str, as_json: bool) -> None:
    """Per source (API key, shopify, easypost, aftership) and carrier: events accepted,
    duplicate and rejected, unknown codes, naive times by the rule that placed them, late
    scans, scans after delivery, webhooks with notes, estimates before their shipment, and
    trackers gone quiet. Worst offenders first; a rate above its DATA_QUALITY_* threshold is
    a warning. Exits 0 either way (it is a report)."""
    from service.store import quality as quality_db
    from service.tracking import quality

    settings = resolved(cli_settings(), echo=not as_json)
    now = settings.clock().now()
    start = _since(since, now)

    async def read(conn: Any) -> Any:
        counted = await quality_db.totals(conn, start.date())
        stale = await quality_db.stale_trackers(conn, now, settings.data_quality_stale_days)
        return counted, stale

    counted, stale = run(lambda: with_db(settings, read))
    report = quality.build(counted, stale, settings)
    report["since"] = start.date().isoformat()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(quality.render(report, report["since"]))
