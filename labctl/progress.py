"""Showing a run as it happens (rich), and a stored run's summary.

The display is one more consumer of the engine's event bus: it redraws at a
few hertz from whatever arrived, so it can never slow acquisition.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from labctl.engine import RunHandle
from labctl.events import (
    RunEnded,
    Samples,
    SpectrumPoints,
    StateChanged,
    StepEnded,
    StepStarted,
    Subscription,
)
from labctl.steps import Impedance

REFRESH_S = 0.2


def format_duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d {hours % 24:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


_PREFIXES = ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"))


def si(value: float, unit: str) -> str:
    """3 significant digits with an SI prefix: 0.0005 A -> '500 µA'."""
    if value != value:  # NaN
        return f"- {unit}"
    magnitude = abs(value)
    scale, prefix = _PREFIXES[0]
    for candidate, candidate_prefix in _PREFIXES:
        if magnitude >= candidate:
            scale, prefix = candidate, candidate_prefix
    if magnitude == 0:
        scale, prefix = 1.0, ""
    return f"{value / scale:.3g} {prefix}{unit}"


def _bar(fraction: float, width: int = 24) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


class ProgressDisplay:
    """Step, cell time, latest reading and data counts, redrawn ~5 times a second."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.step_text = "starting"
        self.step_index = -1
        self.step = None
        self.step_t0 = 0.0
        self.t_cell = 0.0
        self.rows = 0
        self.points = 0
        self.step_points = 0
        self.last: dict[str, float] = {}
        self.state = "running"
        self.finished_steps: list[str] = []

    def _apply(self, event: Any) -> bool:
        """Update from one event; True when the run ended."""
        if isinstance(event, StepStarted):
            self.step_index = event.index
            self.step = event.step
            self.step_t0 = event.t_start
            self.step_points = 0
            label = f" {event.step.label}" if event.step.label else ""
            self.step_text = f"step {event.index}: {event.step.kind}{label}"
        elif isinstance(event, Samples):
            self.rows += len(event.block)
            row = event.block[-1]
            self.t_cell = float(row["t"])
            self.last = {"E": float(row["E"]), "I": float(row["I"]), "Q": float(row["Q"]), "T": float(row["T"])}
        elif isinstance(event, SpectrumPoints):
            self.points += len(event.block)
            self.step_points += len(event.block)
            row = event.block[-1]
            self.t_cell = float(row["t"])
            self.last = {"f": float(row["freq"]), "Zre": float(row["z_re"]), "Zim": float(row["z_im"])}
        elif isinstance(event, StateChanged):
            self.state = event.new  # "pausing…" and "aborting…" show while the engine gets there
        elif isinstance(event, StepEnded):
            r = event.result
            self.finished_steps.append(
                f"step {r.index} {r.step.kind}: {r.end_reason.value} after {format_duration(r.duration)}"
            )
        elif isinstance(event, RunEnded):
            return True
        return False

    def render(self) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_row(Text(self.step_text, style="bold"), Text(f"cell time {format_duration(self.t_cell)}"))
        step = self.step
        if isinstance(step, Impedance):
            total = len(step.frequencies())
            grid.add_row(
                Text(f"{_bar(self.step_points / max(total, 1))} {self.step_points}/{total} frequencies"),
                Text(f"f = {self.last.get('f', float('nan')):.4g} Hz" if "f" in self.last else ""),
            )
        elif step is not None:
            grid.add_row(Text(self._step_progress(step)), Text(self._reading()))
        grid.add_row(
            Text(f"{self.rows} samples, {self.points} impedance points", style="dim"),
            Text(
                f"{self.state}…" if self.state in ("pausing", "aborting") else self.state,
                style="yellow" if self.state != "running" else "green",
            ),
        )
        return grid

    def _step_progress(self, step: Any) -> str:
        """Progress toward what will end the step: charge, time, or a voltage."""
        limits = step.effective_limits()
        elapsed = self.t_cell - self.step_t0
        charge = abs(self.last.get("Q", 0.0))
        if limits.max_charge:
            done, total = si(charge / 3600, "Ah"), si(limits.max_charge / 3600, "Ah")
            return f"{_bar(charge / limits.max_charge)} {done} / {total}"
        voltage_limits = [v for v in (limits.voltage_above, limits.voltage_below) if v is not None]
        if limits.max_time and not voltage_limits and not limits.steady_slope and not limits.current_below:
            return f"{_bar(elapsed / limits.max_time)} {format_duration(elapsed)} / {format_duration(limits.max_time)}"
        until = []
        if voltage_limits:
            until.append(" or ".join(f"E = {v:g} V" for v in voltage_limits))
        if limits.steady_slope:
            until.append("current steady")
        if limits.current_below:
            until.append(f"|I| < {si(limits.current_below, 'A')}")
        return f"{format_duration(elapsed)} in step" + (f", until {' or '.join(until)}" if until else "")

    def _reading(self) -> str:
        if "E" not in self.last:
            return ""
        text = f"E = {self.last['E']:.4f} V  I = {si(self.last['I'], 'A')}"
        temperature = self.last.get("T")
        if temperature is not None and temperature == temperature:
            text += f"  T = {temperature:.1f} °C"
        return text

    def watch(self, subscription: Subscription, handle: RunHandle) -> None:
        """Consume events until the run ends (KeyboardInterrupt propagates)."""
        if not self.enabled:
            handle.wait()
            return
        with Live(self.render(), console=self.console, refresh_per_second=5, transient=True) as live:
            done = False
            while not done:
                event = subscription.get(timeout=REFRESH_S)
                events = [event, *subscription.drain()] if event is not None else []
                for ev in events:
                    if self._apply(ev):
                        done = True
                live.update(self.render())
                if handle.wait(0) is not None and not events:
                    done = True
        for line in self.finished_steps[-20:]:
            self.console.print(f"  {line}", style="dim")


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Human-readable form of ``labctl.storage.describe_run``."""
    status = summary.get("status", "?")
    colour = {"completed": "green", "aborted": "yellow", "running": "cyan"}.get(status, "red")
    console.print(Text(str(summary.get("path", "")), style="bold"))
    detail = ""
    heartbeat = summary.get("heartbeat")
    if status == "interrupted" and heartbeat:
        detail = f"  (stored status '{summary.get('stored_status')}', last heartbeat {heartbeat['age_s']:.0f} s ago)"
    console.print(f"status: [bold {colour}]{status}[/]{detail}")
    head = Table(show_header=False, box=None)
    for key in ("protocol", "protocol_version", "run_id", "started_at", "ended_at", "operator", "error"):
        if summary.get(key):
            head.add_row(key, Text(str(summary[key])))  # Text: file contents are never markup
    for key in ("parameters", "cell", "instrument", "simulation"):
        if summary.get(key):
            head.add_row(key, Text(json.dumps(summary[key])[:300]))
    head.add_row("data", f"{summary.get('samples', 0)} samples, {summary.get('spectrum_points', 0)} impedance points")
    console.print(head)
    steps = Table("#", "step", "label", "end reason", "duration", "charge / C", "rows", "points")
    for step in summary.get("steps", []):
        steps.add_row(
            str(step.get("index")),
            Text(str(step.get("kind"))),
            Text(str(step.get("label") or "")),
            "(running)" if step.get("running") else Text(str(step.get("end_reason") or "")),
            format_duration(float(step.get("duration") or 0.0)),
            f"{float(step.get('charge') or 0.0):.4g}",
            str(step.get("rows", "")),
            str(step.get("spectrum_points", "")),
        )
    console.print(steps)
    results = summary.get("results") or {}
    if results:
        table = Table("result", "value", title="results")
        for key, value in results.items():
            if isinstance(value, (dict, list)):
                text = json.dumps(value)
            elif isinstance(value, float):
                text = f"{value:.6g}"
            else:
                text = str(value)
            table.add_row(Text(str(key)), Text(text[:160]))
        console.print(table)
