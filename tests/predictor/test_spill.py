"""The snapshot tables' temporary folders: one left by a trainer killed outright is removed
when the next training starts; one a live trainer holds is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from predictor.spill import PREFIX, SpillFolder

# A trainer's spill folder, held until its stdin closes.
TRAINER = ("import sys; from predictor.spill import SpillFolder; f = SpillFolder(); "
           "open(f.name + '/0.float32', 'wb').close(); "
           "print(f.name, flush=True); sys.stdin.read(); f.cleanup()")


def _trainer(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen([sys.executable, "-c", TRAINER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp)})
    assert process.stdout is not None
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir() and folder.parent == tmp
    return process, folder


def test_a_killed_trainers_folder_goes_at_the_next_start(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed, stale = _trainer(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert stale.is_dir()  # SIGKILL: nothing removed it
    creating = tmp_path / f"{PREFIX}being-created"  # no lock yet: left alone
    creating.mkdir()

    alive, held = _trainer(tmp_path)  # the next training
    assert not stale.exists()
    ours = SpillFolder()  # one more, while that one trains
    assert held.is_dir() and (held / "0.float32").exists() and creating.is_dir()
    ours.cleanup()
    assert not Path(ours.name).exists()

    assert alive.stdin is not None
    alive.stdin.close()
    assert alive.wait() == 0
    assert not held.exists()  # its own cleanup
    assert [p.name for p in tmp_path.iterdir()] == [creating.name]
