"""`parcelcast`: the one command-line entry point; each command group lives in a module here."""

from __future__ import annotations

from service.cli import (  # noqa: F401 - importing a module registers its commands
    backtest,
    carriers,
    demo,
    history,
    keys,
    maintenance,
    models,
    notifications,
    processes,
    quality,
    stores,
    webhooks,
    work,
)
from service.cli.common import main

__all__ = ["main"]
