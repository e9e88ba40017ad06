"""Following a run that another process writes (a queue job), through its SWMR run file.

The follower turns what the writer flushed since the last look into the same events the
engine publishes (StepStarted, Samples, SpectrumPoints), so the live view does not care who
runs the cell. It reads only new rows (bounded per look), twice a second.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from labctl.events import Samples, SpectrumPoints, StepStarted

#: Rows read per look at most: a follower that falls behind catches up over several looks.
MAX_ROWS_PER_LOOK = 50_000


class FileFollower:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._run: Any = None
        self._rows = 0
        self._spectra = 0
        self._steps = 0

    def poll(self) -> list[Any]:
        """New events since the last call ([] while the file cannot be read yet)."""
        from labctl.storage import open_run

        try:
            if self._run is None:
                if not self.path.exists():
                    return []
                self._run = open_run(self.path, timeout=0.2)
            else:
                self._run.refresh()
            run = self._run
            events: list[Any] = []
            steps = run.steps
            for rec in steps[self._steps :]:
                if rec.step is not None:
                    events.append(StepStarted(rec.index, rec.step, rec.t_start))
            self._steps = len(steps)
            n = run.n_samples
            if n > self._rows:
                stop = min(n, self._rows + MAX_ROWS_PER_LOOK)
                events.append(Samples(-1, run.samples(self._rows, stop)))
                self._rows = stop
            n_spec = run.n_spectra
            if n_spec > self._spectra:
                events.append(SpectrumPoints(-1, run.spectra(self._spectra, n_spec)))
                self._spectra = n_spec
            return events
        except Exception:
            self.close()
            return []

    def close(self) -> None:
        if self._run is not None:
            with contextlib.suppress(Exception):
                self._run.close()
        self._run = None
