"""labctl steps -> a BTS step file (the program a Neware channel runs by itself).

The BTS server runs a *step file* (an XML document the BTS client's step editor
writes) on a channel. Its layout, as public step-file writers produce it
(``NewareStep`` in open battery-automation projects; Neware's step editor
files): ``<root><config type="Step File" …><Head_Info/><Whole_Prt/></config>
<Step_Info Num="N"><Step1 Step_ID="1" Step_Type="…"><Limit><Main>…</Main>
[<Other>…</Other>]</Limit><Record><Main><Time Value="…"/></Main></Record>
</Step1>…</Step_Info></root>``.

Step types used: 1 CC charge, 2 CC discharge, 3 CV charge, 19 CV discharge,
4 rest, 5 cycle (``Other/Start_Step``, ``Other/Cycle_Count``), 6 end. Units in
``Main``: ``Curr`` and ``Stop_Curr`` in mA, ``Volt`` and ``Stop_Volt`` in 0.1 mV,
``Time`` in ms (the same scalings those writers apply: ×1000, ×10000, ×1000).

What maps (labctl sign convention: + current charges a full cell):

* ``Rest(duration)`` -> type 4, ``Time``;
* ``ConstantCurrent(I)`` -> type 1 (I > 0) or 2, ``Curr`` = |I|, ``Stop_Volt`` =
  ``voltage_above`` (charge) or ``voltage_below`` (discharge), ``Time`` = ``max_time``;
* ``ConstantVoltage(V)`` -> type 3 (V at or above the last measured voltage) or 19,
  ``Volt`` = V, ``Curr`` = the channel's current limit, ``Stop_Curr`` =
  ``current_below``, ``Time`` = ``max_time``;
* ``cycles`` > 1 appends a type 5 step back to the first step.

Limits a step file cannot say (a charge limit, the opposite voltage bound, a
steadiness criterion) are checked by the driver on the downloaded records and
the test is stopped there (``unhandled_limits`` lists them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from labctl.steps import ConstantCurrent, ConstantVoltage, Rest, Step

REST, CC_CHG, CC_DCHG, CV_CHG, CYCLE, END, CV_DCHG = 4, 1, 2, 3, 5, 6, 19
KINDS = frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"})


class StepFileRefusal(ValueError):
    """A step the BTS program cannot express."""


@dataclass(frozen=True)
class BtsStep:
    """One step of a BTS step file (SI units; ``to_xml`` scales them)."""

    step_type: int
    current: float | None = None  # A (magnitude)
    voltage: float | None = None  # V (CV set point)
    stop_voltage: float | None = None  # V
    stop_current: float | None = None  # A
    time: float | None = None  # s
    start_step: int | None = None
    cycle_count: int | None = None

    def to_xml(self, step_id: int, record_period: float) -> str:
        main = []
        if self.current is not None:
            main.append(f'<Curr Value="{round(self.current * 1000, 6):g}"/>')
        if self.voltage is not None:
            main.append(f'<Volt Value="{round(self.voltage * 10000):d}"/>')
        if self.stop_voltage is not None:
            main.append(f'<Stop_Volt Value="{round(self.stop_voltage * 10000):d}"/>')
        if self.stop_current is not None:
            main.append(f'<Stop_Curr Value="{round(self.stop_current * 1000, 6):g}"/>')
        if self.time is not None:
            main.append(f'<Time Value="{round(self.time * 1000):d}"/>')
        limit = f"<Main>{''.join(main)}</Main>" if main else ""
        if self.step_type == CYCLE:
            limit += f'<Other><Start_Step Value="{self.start_step}"/><Cycle_Count Value="{self.cycle_count}"/></Other>'
        body = f"<Limit>{limit}</Limit>" if limit else ""
        if self.step_type not in (CYCLE, END):
            body += f'<Record><Main><Time Value="{round(record_period * 1000):d}"/></Main></Record>'
        return f'<Step{step_id} Step_ID="{step_id}" Step_Type="{self.step_type}">{body}</Step{step_id}>'


def bts_step(step: Step, *, max_current: float, last_voltage: float | None = None) -> BtsStep:
    """The BTS step for one labctl step; StepFileRefusal when it has none."""
    lim = step.effective_limits()
    time = lim.max_time
    if isinstance(step, Rest):
        return BtsStep(REST, time=time)
    if isinstance(step, ConstantCurrent):
        if step.current == 0:
            raise StepFileRefusal("a 0 A constant current is a rest: use Rest")
        charge = step.current > 0
        stop = lim.voltage_above if charge else lim.voltage_below
        if stop is None and time is None:
            raise StepFileRefusal("a BTS CC step needs a voltage cutoff in its direction or a time limit")
        return BtsStep(CC_CHG if charge else CC_DCHG, current=abs(step.current), stop_voltage=stop, time=time)
    if isinstance(step, ConstantVoltage):
        if step.vs_ocv:
            raise StepFileRefusal("a potential relative to OCV needs the OCV first (not in a step file)")
        if lim.current_below is None and time is None:
            raise StepFileRefusal("a BTS CV step needs a current cutoff or a time limit")
        charge = last_voltage is None or not math.isfinite(last_voltage) or step.voltage >= last_voltage
        return BtsStep(
            CV_CHG if charge else CV_DCHG,
            current=max_current,
            voltage=step.voltage,
            stop_current=lim.current_below,
            time=time,
        )
    raise StepFileRefusal(f"{step.kind} steps have no BTS step type here (allowed: {', '.join(sorted(KINDS))})")


def unhandled_limits(step: Step) -> list[str]:
    """The step's limits a step file does not carry (checked on the records instead)."""
    lim = step.effective_limits()
    out = []
    if lim.max_charge is not None:
        out.append("max_charge")
    if lim.current_above is not None:
        out.append("current_above")
    if lim.steady_slope is not None:
        out.append("steady_slope")
    if isinstance(step, ConstantCurrent):
        out.append("voltage_below" if step.current > 0 and lim.voltage_below is not None else "")
        out.append("voltage_above" if step.current < 0 and lim.voltage_above is not None else "")
    elif isinstance(step, Rest | ConstantVoltage):
        out += [n for n in ("voltage_above", "voltage_below") if getattr(lim, n) is not None]
    if isinstance(step, Rest | ConstantCurrent) and lim.current_below is not None:
        out.append("current_below")
    return [n for n in out if n]


def compile_steps(
    steps: Sequence[Step],
    *,
    record_period: float,
    max_current: float,
    cycles: int = 1,
    last_voltage: float | None = None,
    name: str = "labctl",
) -> str:
    """A complete BTS step file running ``steps`` (``cycles`` times) then ending."""
    if not steps:
        raise StepFileRefusal("no steps")
    if cycles < 1:
        raise StepFileRefusal("cycles must be 1 or more")
    program = [bts_step(s, max_current=max_current, last_voltage=last_voltage) for s in steps]
    if cycles > 1:
        program.append(BtsStep(CYCLE, start_step=1, cycle_count=cycles))
    program.append(BtsStep(END))
    body = "".join(s.to_xml(i, record_period) for i, s in enumerate(program, start=1))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<root><config type="Step File" version="17" client_version={quoteattr(name)}>'
        '<Head_Info><Operate Value="66"/><Scale Value="1"/><Start_Step Value="1" Hide_Ctrl_Step="0"/>'
        f'<Creator Value={quoteattr(name)}/><Remark Value=""/></Head_Info>'
        f'<Whole_Prt><Record><Main><Time Value="{round(record_period * 1000):d}"/></Main></Record></Whole_Prt>'
        f'</config><Step_Info Num="{len(program)}">{body}</Step_Info></root>'
    )
