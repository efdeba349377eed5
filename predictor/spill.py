"""A snapshot table kept on local disk while training reads it in chunks.

A million shipments give ~6.7 million snapshots: ~0.6 GB of float32 feature columns. Each
booster's training matrix is built from the table chunk by chunk
(:class:`predictor.fitting.RowChunks`), so the table itself need not stay in memory for
that: :class:`SpilledTable` writes its numeric columns to a temporary folder (one
``.npy`` file a column) and reads back only the rows asked for, one column at a time
through a read-only memory map that is closed again at once. The pages read stay in the
operating system's file cache (which may drop them and read them again), not in the
process. The categorical columns (a byte or two a row) stay in memory.

:func:`take_rows` reads rows of either kind of table, so the same code serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


class SpilledTable:
    """``X``'s numeric columns on disk under ``folder`` (which must outlive the table),
    its categorical columns in memory; rows come back as a DataFrame equal to
    ``X.iloc[rows]`` (same columns, order and dtypes)."""

    def __init__(self, X: pd.DataFrame, folder: str | Path) -> None:
        self._folder = Path(folder)
        self._n = len(X)
        self._columns = list(X.columns)
        self._memory: dict[str, pd.Series] = {}
        self._files: dict[str, Path] = {}
        for j, name in enumerate(self._columns):
            col = X[name]
            if isinstance(col.dtype, pd.CategoricalDtype):
                self._memory[name] = col.reset_index(drop=True)
            else:
                path = self._folder / f"{j}.npy"
                np.save(path, col.to_numpy(), allow_pickle=False)
                self._files[name] = path

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

    def take(self, rows: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """``X.iloc[rows]`` (of ``columns`` only, if given), with a fresh RangeIndex."""
        names = self._columns if columns is None else [c for c in self._columns
                                                      if c in set(columns)]
        out: dict[str, object] = {}
        for name in names:
            if name in self._memory:
                out[name] = self._memory[name].iloc[rows].reset_index(drop=True)
            else:
                mapped = np.load(self._files[name], mmap_mode="r")
                out[name] = np.asarray(mapped[rows])  # a copy; the map closes below
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
