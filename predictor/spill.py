"""A snapshot table kept on local disk while training reads it in chunks.

A million shipments give ~6.7 million snapshots: ~0.6 GB of float32 feature columns. Each
booster's training matrix is built from the table chunk by chunk
(:class:`predictor.fitting.RowChunks`), so the table itself need not stay in memory for
that: a :class:`SpilledTable` keeps its numeric columns in a temporary folder (one raw
file a column, written chunk by chunk as the snapshots are built:
:func:`predictor.features.spilled_snapshots`) and reads back only the rows asked for, one
column at a time through a read-only memory map that is closed again at once. The pages
read stay in the operating system's file cache (which may drop them and read them again),
not in the process. The categorical columns (a byte or two a row) stay in memory.

:func:`take_rows` reads rows of either kind of table, so the same code serves both.

A :class:`Shelf` in the same folder holds what training computed for later (the report's
rows, the shipment attributes) while a booster's matrix and boosting need the memory.

The folder is a :class:`SpillFolder`: a trainer killed outright (SIGKILL, out of memory)
cannot remove it, so its trainer holds a lock on the folder while alive, and the next
training removes the folders whose lock nobody holds (:func:`remove_stale`).
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so no folder is ever taken for stale
    fcntl = None  # type: ignore[assignment]

PREFIX = "parcelcast-snapshots-"
# Written once the folder is locked: a folder without it is being created (or is from a
# release before locks, to remove by hand) and is left alone.
_LOCKED = "locked"


class SpillFolder:
    """A temporary folder (under ``tempfile.gettempdir()``) for one training's spilled
    tables, locked by this process until :meth:`cleanup` (or until the object is
    collected, as :class:`tempfile.TemporaryDirectory`); creating one first removes the
    folders of trainers that died (:func:`remove_stale`)."""

    def __init__(self) -> None:
        remove_stale()
        self.name = tempfile.mkdtemp(prefix=PREFIX)
        fd = os.open(self.name, os.O_RDONLY)
        self._finalizer = weakref.finalize(self, _remove, self.name, fd)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            (Path(self.name) / _LOCKED).touch()

    def cleanup(self) -> None:
        """Remove the folder and everything in it (a second call does nothing)."""
        self._finalizer()


def _remove(folder: str | Path, fd: int) -> None:
    """Remove a folder, then give up the lock on it that ``fd`` holds."""
    shutil.rmtree(folder, ignore_errors=True)
    os.close(fd)


def remove_stale(parent: str | Path | None = None) -> list[Path]:
    """Remove the spill folders under ``parent`` (default: the temporary directory) whose
    trainer is gone (their lock is free); the folders removed."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    for folder in Path(parent or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            if not (folder / _LOCKED).exists():
                continue
            fd = os.open(folder, os.O_RDONLY)
        except OSError:  # removed meanwhile, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its trainer is alive
            os.close(fd)
            continue
        _remove(folder, fd)
        removed.append(folder)
    return removed


class Shelf:
    """Values set aside while a phase needs the memory: pickled into files under
    ``folder`` (the process holds none of them until :meth:`take`), or, without a folder,
    simply kept."""

    def __init__(self, folder: str | Path | None) -> None:
        self._folder = None if folder is None else Path(folder)
        self._kept: dict[str, Any] = {}

    def put(self, name: str, value: object) -> None:
        """Set ``value`` aside under ``name`` (the caller drops its own references)."""
        if self._folder is None:
            self._kept[name] = value
            return
        with open(self._folder / f"shelf-{name}.pickle", "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)

    def take(self, name: str) -> Any:
        """The value put under ``name``, forgotten here (its file removed)."""
        if self._folder is None:
            return self._kept.pop(name)
        path = self._folder / f"shelf-{name}.pickle"
        with open(path, "rb") as f:
            value = pickle.load(f)  # noqa: S301 (our own file, written just before)
        path.unlink()
        return value


class ColumnFiles:
    """One raw file per column under ``folder``, appended to chunk after chunk."""

    def __init__(self, folder: str | Path, names: Sequence[str], dtype: type = np.float32
                 ) -> None:
        self._dtype = np.dtype(dtype)
        self.paths = {name: Path(folder) / f"{j}.{self._dtype.name}"
                      for j, name in enumerate(names)}
        self._files: dict[str, BinaryIO] = {n: open(p, "wb")  # noqa: SIM115 (closed in close)
                                            for n, p in self.paths.items()}

    def append(self, name: str, values: np.ndarray) -> None:
        np.asarray(values, dtype=self._dtype).tofile(self._files[name])

    def close(self) -> dict[str, tuple[Path, np.dtype[np.generic]]]:
        for f in self._files.values():
            f.close()
        return {n: (p, self._dtype) for n, p in self.paths.items()}


class SpilledTable:
    """A feature table whose numeric columns are files (``files``: name → (path, dtype)),
    its categorical columns in memory (``memory``); rows come back as a DataFrame equal to
    the in-memory table's ``.iloc[rows]`` (same columns, order and dtypes). The files'
    folder must outlive the table."""

    def __init__(self, n: int, columns: Sequence[str], memory: Mapping[str, pd.Series],
                 files: Mapping[str, tuple[Path, np.dtype[np.generic]]]) -> None:
        self._n = n
        self._columns = list(columns)
        self._memory = {k: v.reset_index(drop=True) for k, v in memory.items()}
        self._files = dict(files)

    @classmethod
    def write(cls, X: pd.DataFrame, folder: str | Path) -> SpilledTable:
        """``X`` with its non-categorical columns written to ``folder``."""
        memory = {c: X[c] for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
        numeric = [c for c in X.columns if c not in memory]
        files: dict[str, tuple[Path, np.dtype[np.generic]]] = {}
        for j, name in enumerate(numeric):
            values = X[name].to_numpy()
            path = Path(folder) / f"{j}.{values.dtype.name}"
            values.tofile(path)
            files[name] = (path, values.dtype)
        return cls(len(X), list(X.columns), memory, files)

    @property
    def columns(self) -> pd.Index:
        return pd.Index(self._columns)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> pd.Series:
        """A categorical column (in memory); numeric columns are read with :meth:`take`."""
        if name not in self._memory:
            raise KeyError(f"{name!r} is on disk: read its rows with take()")
        return self._memory[name]

    def remove_files(self) -> None:
        """Delete the numeric columns' files (the table cannot be read afterwards)."""
        for path, _ in self._files.values():
            path.unlink(missing_ok=True)

    def take(self, rows: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """``.iloc[rows]`` (of ``columns`` only, if given), with a fresh RangeIndex."""
        names = self._columns if columns is None else [c for c in self._columns
                                                      if c in set(columns)]
        out: dict[str, object] = {}
        for name in names:
            if name in self._memory:
                out[name] = self._memory[name].iloc[rows].reset_index(drop=True)
            else:
                path, dtype = self._files[name]
                mapped = np.memmap(path, dtype=dtype, mode="r", shape=(self._n,))
                out[name] = np.array(mapped[rows])  # a copy; the map closes below
                del mapped
        return pd.DataFrame(out, copy=False)


def take_rows(X: pd.DataFrame | SpilledTable, rows: np.ndarray,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``X.iloc[rows]`` (of ``columns`` only, if given) with a fresh RangeIndex, from an
    in-memory frame or a :class:`SpilledTable`; only the asked columns are copied."""
    if isinstance(X, SpilledTable):
        return X.take(rows, columns)
    part = X if columns is None else X[[c for c in X.columns if c in set(columns)]]
    return part.iloc[rows].reset_index(drop=True)
