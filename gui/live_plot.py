"""PLACEHOLDER live curve (helper "guilive" builds the real min/max decimator here).

Same API as the real one: accumulate with ``append``, render with ``refresh``. This stand-in
keeps at most ``MAX_POINTS`` points (it thins by 2 when full), so memory stays bounded and
pyqtgraph never gets the whole curve; it does not keep spikes the way a min/max decimator does.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

MAX_POINTS = 4000


class LiveCurve:
    def __init__(self, plot_item: pg.PlotItem, pen: object = None, name: str | None = None) -> None:
        self._item = plot_item.plot([], [], pen=pen if pen is not None else pg.mkPen(width=1, cosmetic=True), name=name)
        self._item.setClipToView(True)
        self._x = np.empty(0)
        self._y = np.empty(0)
        self._dirty = False

    def append(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x = np.concatenate([self._x, np.asarray(x, float)])
        self._y = np.concatenate([self._y, np.asarray(y, float)])
        while len(self._x) > MAX_POINTS:
            self._x, self._y = self._x[::2], self._y[::2]
        self._dirty = True

    def refresh(self) -> None:
        if self._dirty:
            self._item.setData(self._x, self._y)
            self._dirty = False

    def clear(self) -> None:
        self._x = np.empty(0)
        self._y = np.empty(0)
        self._item.setData([], [])
        self._dirty = False

    @property
    def n_points(self) -> int:
        return len(self._x)
