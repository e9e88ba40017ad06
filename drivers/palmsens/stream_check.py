"""What a MethodSCRIPT loop must send, checked line by line: no silent data loss.

A serial link that drops or corrupts one line loses one sample or one
impedance point, and nothing else in the stream says so: the loop still ends
with its ``*`` and its end-code packet. The driver knows what each compiled
loop produces (``ScriptPlan``): a sample every ``sample_period`` of cell time
(``timer_get`` in every packet), or the sweep's list of frequencies, in order.
``StreamCheck`` compares what arrives with that:

* a time gap between two samples beyond 1.5 sample periods is
  ``round(gap / period) - 1`` lost samples (the instrument samples on a fixed
  grid; a late sample it could not time is flagged in its status instead);
* a last sample more than half a period short of the loop's last grid point
  (a sweep: more than 1.5 potential steps short of its end potential), when
  the loop ended by itself (code 0), is trailing loss. A lost *first*
  sample is not detectable by time (set-up commands run between loops) and is
  not claimed;
* an impedance point at a frequency other than the next expected one is the
  skipped points before it; a sweep that ends by itself with points missing
  lost its last ones; a frequency not on the list at all is a garbled stream.

What a loss means depends on the loop (the reasons are in docs/design-notes.md
§6): in an impedance sweep, or a loop whose end is decided by a potential or
current cutoff (on the instrument or on the host), the step's data cannot be
trusted (the lost line may be the very sample that met the cutoff, and a
spectrum with a hole is fitted as if complete), so ``LostData`` is raised:
the step ends ``instrument_fault`` and the run fails with the reason. In a loop
that only runs for a time or a charge (a long CA/CP hold, a rest) the samples
around the hole still describe the cell and the charge is integrated across
it, so the loss is a warning carried in the step's message, with the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drivers.palmsens.script import ScriptPlan
from labctl.channel import InstrumentError
from labctl.steps import VoltageSweep

#: A gap longer than this many sample periods has lost samples.
GAP_TOLERANCE = 1.5
#: An impedance point matches an expected frequency within this fraction of the log-spacing.
FREQUENCY_TOLERANCE = 0.25
#: Gaps quoted by time in a message (the count is always complete).
_QUOTED = 3

#: Limits that end a loop at a sample (the steadiness criterion is a fit over a window,
#: which one sample more or less does not decide, so it is not among them).
_CUTOFF_FIELDS = ("voltage_above", "voltage_below", "current_below", "current_above")


class LostData(InstrumentError):
    """Lines of a measurement loop were lost where the data cannot do without them."""


@dataclass
class StreamCheck:
    """The expected output of one script's main loop, and what is missing from it."""

    technique: str
    period: float | None  # cell s between samples (None: impedance)
    run_time: float | None  # cell s the loop runs when it ends by itself
    frequencies: tuple[float, ...]  # the sweep, in order (impedance)
    strict: bool  # a loss makes the data untrustworthy (raise), else a warning
    sweep_stop: float | None = None  # a potential sweep's end (V): its last sample is there
    sweep_step: float | None = None  # and its samples are this far apart (V)
    lost: int = 0
    gaps: list[str] = field(default_factory=list)
    _t_first: float | None = None
    _t_last: float | None = None
    _t_begin: float = 0.0
    _e_last: float | None = None
    _next: int = 0

    @classmethod
    def for_plan(cls, plan: ScriptPlan) -> StreamCheck:
        step = plan.step
        limits = step.effective_limits()
        cutoffs = any(getattr(limits, name, None) is not None for name in _CUTOFF_FIELDS)
        impedance = plan.impedance
        sweep = isinstance(step, VoltageSweep)
        return cls(
            technique=plan.technique,
            period=None if impedance else float(step.sample_period),
            run_time=plan.run_time,
            frequencies=plan.frequencies,
            strict=impedance or cutoffs,
            sweep_stop=float(step.stop) if sweep else None,
            sweep_step=abs(step.rate * step.sample_period) if sweep else None,
        )

    def loop_begins(self, t: float) -> None:
        """The main loop starts after script time ``t`` (the last sample of the
        open-circuit measurement before it; 0, the ``timer_start``, otherwise)."""
        self._t_begin = t

    # --- what arrives ------------------------------------------------------------------
    def sample(self, t: float, e: float | None = None) -> None:
        """A sample at script time ``t`` (the packet's ``timer_get``), potential ``e`` (V)."""
        self._e_last = e
        period = self.period
        assert period is not None
        if self._t_first is None:
            # Not checked against the loop's start: between loops an instrument runs set-up
            # commands (and an emulator at N× real time turns their wall milliseconds into
            # cell seconds), so a late first sample is not evidence of a lost one.
            self._t_first = t
        else:
            assert self._t_last is not None
            self._gap(self._t_last, t, period, "between samples")
        self._t_last = t

    def point(self, frequency: float) -> None:
        """An impedance point at ``frequency`` (Hz)."""
        expected = self.frequencies
        if not expected:
            return
        index = self._match(frequency)
        if index is None or index < self._next:
            raise LostData(
                f"{self.technique} sweep: a point at {frequency:.6g} Hz is not the next expected frequency "
                f"({self._expected_text()}): the stream is corrupt"
            )
        if index > self._next:
            skipped = expected[self._next : index]
            self._lose(len(skipped), "skipped " + ", ".join(f"{f:.6g} Hz" for f in skipped[:_QUOTED]))
        self._next = index + 1

    def end(self, natural: bool) -> None:
        """The loop's output is complete; ``natural``: it ended by itself (code 0)."""
        if not natural:
            return
        if self.frequencies:
            missing = self.frequencies[self._next :]
            if missing:
                self._lose(len(missing), "missing the last " + ", ".join(f"{f:.6g} Hz" for f in missing[:_QUOTED]))
            return
        if self.sweep_stop is not None and self.sweep_step and self._e_last is not None:
            short = abs(self.sweep_stop - self._e_last)
            if short > GAP_TOLERANCE * self.sweep_step:
                self._lose(
                    max(round(short / self.sweep_step), 1),
                    f"after the last sample: the sweep stopped at {self._e_last:.6g} V, its end is "
                    f"{self.sweep_stop:.6g} V",
                )
            return
        if self.period is None or self.run_time is None:
            return
        if self._t_first is None:
            if self.run_time >= self.period:
                self._lose(int(self.run_time // self.period) + 1, "no sample at all")
            return
        assert self._t_last is not None
        period = self.period
        # The loop's grid runs from its first sample. It began at that sample when the
        # instrument samples at the start of each interval, one period earlier when at
        # the end; either way its last sample is the last grid point within the run time.
        # Taking the earlier start when unsure can only miss a loss, never invent one.
        lead = self._t_first - self._t_begin
        start = self._t_first if lead < 0.5 * period else self._t_begin
        k_last = math.floor((start + self.run_time - self._t_first) / period + 1e-6)
        expected_last = self._t_first + max(k_last, 0) * period
        short = expected_last - self._t_last
        if short > 0.5 * period:
            self._lose(
                max(round(short / period), 1),
                f"after the last sample: it came at script time {self._t_last:.6g} s, the loop ran to "
                f"{expected_last:.6g} s",
            )

    # --- the verdict -------------------------------------------------------------------
    def summary(self) -> str:
        """The warning for the step's message ("" when nothing was lost)."""
        if not self.lost:
            return ""
        what = "impedance point" if self.frequencies else "sample"
        more = f", +{len(self.gaps) - _QUOTED} more gaps" if len(self.gaps) > _QUOTED else ""
        plural = "s" if self.lost != 1 else ""
        return f"data loss: {self.lost} {what}{plural} lost ({'; '.join(self.gaps[:_QUOTED])}{more})"

    # --- helpers -----------------------------------------------------------------------
    def _gap(self, t_from: float, t_to: float, period: float, where: str) -> None:
        span = t_to - t_from
        if span > GAP_TOLERANCE * period:
            count = max(round(span / period) - 1, 1)
            self._lose(count, f"{where}: {t_to - t_from:.6g} s gap at script time {t_from:.6g} s")

    def _lose(self, count: int, text: str) -> None:
        self.lost += count
        self.gaps.append(text)
        if self.strict:
            raise LostData(f"{self.technique} script lost data, so the step cannot be trusted: {self.summary()}")

    def _match(self, frequency: float) -> int | None:
        expected = self.frequencies
        if frequency <= 0 or not math.isfinite(frequency):
            return None
        logs = [math.log10(f) for f in expected]
        spacing = abs(logs[-1] - logs[0]) / (len(logs) - 1) if len(logs) > 1 else 0.01
        target = math.log10(frequency)
        best = min(range(len(logs)), key=lambda k: abs(logs[k] - target))
        return best if abs(logs[best] - target) <= FREQUENCY_TOLERANCE * spacing else None

    def _expected_text(self) -> str:
        if self._next >= len(self.frequencies):
            return "the sweep was complete"
        return f"expected {self.frequencies[self._next]:.6g} Hz"
