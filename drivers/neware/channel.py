"""A Neware BTS channel as a labctl Channel: each step runs on the cycler itself.

The driver is a client of the BTS server on the cycler's Windows PC (XML over
TCP, ``drivers.neware.bts``). For every labctl step it writes a one-step BTS
step file (``drivers.neware.stepfile``), starts it on its channel, and then
polls: ``inquire`` for the channel state, ``download`` for the records from the
next sequence number it has not yet seen. The cycler applies the cutoffs
itself, so a step ends where the cell crosses its limit, not at a poll.

Times are the instrument's: a record's ``testtime`` (s since the test started,
on the cycler's clock) placed on the run clock at the moment the start was
requested. A dropped link loses nothing: the cycler keeps running and
recording, the driver reconnects (``reconnect_attempts`` × ``reconnect_wait``)
and downloads the gap by sequence number. A run file therefore fills live (at
each poll) and completely.

Ends of a run on this channel, each with its reason: the channel in
``protect`` (a BTS alarm: the cycler stopped the output) -> InstrumentError;
no reply within ``timeout`` -> InstrumentTimeout; a reply that does not parse
-> GarbledReply; the link lost beyond the reconnections -> InstrumentError.
Safe state = ``stop`` on this channel (output off), reconnecting once if needed.
Other channels of the same cycler are other labctl channels with their own
connection, untouched by any of this.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from drivers.kit.pacing import empty_block, wait_until
from drivers.neware.bts import CHUNK, Address, BtsLink, records
from drivers.neware.options import NewareOptions
from drivers.neware.stepfile import (
    CC_DCHG,
    CV_DCHG,
    KINDS,
    StepFileRefusal,
    bts_step,
    compile_steps,
    unhandled_limits,
)
from labctl.channel import (
    Capabilities,
    Channel,
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentInfo,
    StepContext,
    StepOutcome,
    StepRun,
    with_one_reconnect,
)
from labctl.clock import Clock, ScaledClock
from labctl.limits import LimitWatcher
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Rest, Step, empty_samples

log = logging.getLogger(__name__)

#: A record this close to a step file's voltage cutoff (V) / current cutoff (relative) ended the step there.
VOLTAGE_TOLERANCE = 5e-3
CURRENT_TOLERANCE = 0.05


def _float(row: Mapping[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError):
        raise GarbledReply(f"Neware: record without a numeric {key!r}: {dict(row)!r}") from None


class NewareChannel(Channel):
    """One BTS channel (``DEVID-SUBDEVID-CHLID``) on a BTS server."""

    name = "neware"

    def __init__(self, resource: str, options: NewareOptions, clock: Clock) -> None:
        self.resource = resource
        self.options = options
        self._clock = ScaledClock(options.clock_speed) if options.clock_speed is not None else clock
        self.link = BtsLink(resource, options.timeout)
        self.capabilities = Capabilities(
            step_kinds=KINDS,
            max_current=options.max_current,
            voltage_range=(options.voltage_min, options.voltage_max),
        )
        self._address: Address | None = None
        self._devinfo: dict[str, str] = {}
        self._stopping = False
        self._last_voltage: float | None = None
        self._dir = Path(options.step_dir) if options.step_dir else Path(tempfile.mkdtemp(prefix="labctl-neware-"))
        self._files = 0
        #: Reconnections made after dropped links (for tests and the log).
        self.reconnects = 0

    @property
    def clock(self) -> Clock:
        return self._clock

    # --- connection ---------------------------------------------------------------------
    def open(self) -> None:
        self.link.connect()
        user, password = escape(self.options.username), escape(self.options.password)
        reply = self.link.command(
            f"<cmd>connect</cmd><username>{user}</username><password>{password}</password><type>bfgs</type>"
        )
        if (reply.findtext("result") or "").strip().lower() != "ok":
            raise InstrumentError(f"Neware: the BTS server refused the login of {self.options.username!r}")
        if self._address is None:
            self._address = self._find_address()

    def _find_address(self) -> Address:
        wanted = self.options.address
        rows = records(self.link.command("<cmd>getdevinfo</cmd>"), "middle")
        known = []
        for row in rows:
            try:
                key = (int(row["devid"]), int(row["subdevid"]), int(row["Channelid"]))
            except (KeyError, ValueError):
                raise GarbledReply(f"Neware: getdevinfo row does not parse: {row!r}") from None
            known.append("-".join(map(str, key)))
            if key == wanted:
                self._devinfo = row
                return Address(int(row.get("devtype", "0") or 0), *key, ip=row.get("ip", ""))
        raise InstrumentError(
            f"Neware: channel {self.options.channel} is not on this BTS server (channels: {', '.join(known) or 'none'})"
        )

    def close(self) -> None:
        self.link.close()

    def _reopen(self) -> None:
        self.link.close()
        self.open()

    def _ensure_open(self) -> Address:
        if not self.link.connected or self._address is None:
            self.open()
        assert self._address is not None
        return self._address

    def identify(self) -> InstrumentInfo:
        address = self._ensure_open()
        return InstrumentInfo(
            driver="neware",
            model=f"Neware BTS (devtype {address.devtype})",
            resource=self.resource,
            extra={"address": address.name, "ip": address.ip},
        )

    # --- commands --------------------------------------------------------------------------
    def _one(self, cmd: str, tag: str, inner: str = "true", extra: str = "") -> dict[str, str]:
        address = self._ensure_open()
        body = f'<cmd>{cmd}</cmd><list count="1"><{tag} {address.attrs()}{extra}>{inner}</{tag}></list>'
        rows = records(self.link.command(body))
        if len(rows) != 1:
            raise GarbledReply(f"Neware: {cmd} answered {len(rows)} channels for one")
        return rows[0]

    def inquire(self) -> dict[str, str]:
        return self._one("inquire", "inquire", extra=' aux="0" barcode="1"')

    def download(self, start: int) -> list[dict[str, str]]:
        """Records from sequence number ``start`` (1-based) of the latest test, all of them."""
        address = self._ensure_open()
        out: list[dict[str, str]] = []
        while True:
            body = (
                f'<cmd>download</cmd><download devtype="{address.devtype}" devid="{address.devid}" '
                f'subdevid="{address.subdevid}" chlid="{address.chlid}" auxid="0" testid="0" '
                f'startpos="{start + len(out)}" count="{CHUNK}"/>'
            )
            rows = records(self.link.command(body))
            out += rows
            if len(rows) < CHUNK:
                return out

    def _stop_test(self) -> None:
        self._stopping = True
        row = self._one("stop", "stop")
        if row.get("stop", "").lower() not in ("ok", "true"):
            # a channel with nothing running may refuse a stop: that is off too
            state = self.inquire().get("workstatus", "")
            if state in ("working", "pause"):
                raise InstrumentError(f"Neware: the BTS refused to stop channel {self.options.channel} ({state})")

    def _start(self, path: str) -> None:
        """Start the step file; a link lost before the reply is recovered by asking
        the channel whether a new test is running (never starting a test twice)."""
        before = self.inquire().get("testid", "")
        try:
            row = self._one("start", "start", inner=escape(path), extra=' barcode="labctl"')
        except ConnectionLost as exc:
            log.warning("Neware %s: %s; reconnecting to see whether the test started", self.options.channel, exc)
            self._reopen()
            self.reconnects += 1
            now = self.inquire()
            if now.get("testid", "") != before and now.get("workstatus") in ("working", "finish"):
                return
            row = self._one("start", "start", inner=escape(path), extra=' barcode="labctl"')
        if row.get("start", "").lower() != "ok":
            state = self.inquire().get("workstatus", "?")
            raise InstrumentError(
                f"Neware: the BTS refused to start channel {self.options.channel} (channel {state}; step file {path})"
            )

    # --- steps -------------------------------------------------------------------------------
    def _write_step_file(self, step: Step, record_period: float) -> tuple[Path, str]:
        try:
            text = compile_steps(
                [step],
                record_period=record_period,
                max_current=self.options.max_current,
                last_voltage=self._last_voltage,
            )
        except StepFileRefusal as exc:
            raise InstrumentError(f"Neware: {step.kind} cannot run on the cycler: {exc}") from None
        self._files += 1
        name = f"labctl-{self.options.channel}-{self._files:05d}.xml"
        local = self._dir / name
        local.write_text(text, encoding="utf-8")
        remote = self.options.remote_step_dir or str(self._dir)
        sep = "\\" if "\\" in remote and "/" not in remote else "/"
        return local, remote.rstrip("\\/") + sep + name

    def _samples(self, rows: list[dict[str, str]], t0: float, q_sign: float) -> np.ndarray:
        """Records -> samples; the capacity is taken as a magnitude and signed by the
        step's direction (cyclers report it positive for charge and discharge)."""
        block = empty_samples(len(rows))
        if rows:
            block["t"] = [t0 + _float(r, "testtime") for r in rows]
            block["E"] = [_float(r, "volt") for r in rows]
            block["I"] = [_float(r, "current") for r in rows]
            block["Q"] = [q_sign * abs(_float(r, "cap")) * 3.6 for r in rows]  # mAh -> C
        return block

    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        return self._run(step, ctx)

    def _run(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        try:
            program = bts_step(step, max_current=self.options.max_current, last_voltage=self._last_voltage)
        except StepFileRefusal as exc:
            raise InstrumentError(f"Neware: {step.kind} cannot run on the cycler: {exc}") from None
        record_period = self.options.record_period or step.sample_period
        poll = self.options.poll_period or max(step.sample_period, 1.0)
        local, path = self._write_step_file(step, record_period)
        try:
            q_sign = -1.0 if program.step_type in (CC_DCHG, CV_DCHG) else 1.0
            return (yield from self._follow(step, ctx, path, poll, q_sign))
        finally:
            local.unlink(missing_ok=True)  # kept while its test runs, then removed

    def _follow(
        self, step: Step, ctx: StepContext, path: str, poll: float, q_sign: float
    ) -> Generator[np.ndarray, None, StepOutcome]:
        """Start the step file's test and follow it to its end."""
        self._ensure_open()
        t0 = ctx.run_time()
        self._stopping = False
        self._start(path)
        watch_host = bool(unhandled_limits(step))
        watcher = LimitWatcher(step.effective_limits(), t0)
        next_seq = 1
        next_poll = t0
        last: np.ndarray | None = None
        while True:
            next_poll += poll
            if not (yield from wait_until(ctx, next_poll, empty_block())):
                return StepOutcome(EndReason.ABORTED, "interrupted")
            status, rows = yield from self._poll(ctx, next_seq)
            next_seq += len(rows)
            block = self._samples(rows, t0, q_sign)
            if len(block):
                last = block[-1]
                self._last_voltage = float(last["E"])
            hit = watcher.check(block) if watch_host else None
            if hit is not None and status.get("workstatus") == "working":
                _, reason = hit
                self._stop_test()
                # everything the cell went through until the stop is kept (it happened)
                _, tail = yield from self._poll(ctx, next_seq)
                yield np.concatenate([block, self._samples(tail, t0, q_sign)])
                return StepOutcome(reason, f"{reason.value} (checked by labctl on the cycler's records)")
            if len(block):
                yield block
            state = status.get("workstatus", "")
            if state == "protect":
                alarm = status.get("alarm") or "protection"
                raise InstrumentError(
                    f"Neware channel {self.options.channel}: alarm ({alarm}); the cycler stopped the test"
                )
            if state in ("finish", "stop"):
                if state == "stop" and not self._stopping:
                    raise InstrumentError(
                        f"Neware channel {self.options.channel}: the test was stopped at the cycler, not by labctl"
                    )
                return self._outcome(step, last, hit)
            if state not in ("working", "pause"):
                raise InstrumentError(f"Neware channel {self.options.channel}: unexpected state {state!r}")

    def _outcome(self, step: Step, program_stop: np.ndarray | None, hit: tuple[int, EndReason] | None) -> StepOutcome:
        if hit is not None:
            return StepOutcome(hit[1], hit[1].value)
        if isinstance(step, Rest):
            return StepOutcome(EndReason.COMPLETED, "rest completed")
        lim = step.effective_limits()
        if program_stop is not None:
            e, i = float(program_stop["E"]), abs(float(program_stop["I"]))
            if isinstance(step, ConstantCurrent):
                stop = lim.voltage_above if step.current > 0 else lim.voltage_below
                if stop is not None and math.isclose(e, stop, abs_tol=VOLTAGE_TOLERANCE):
                    reason = EndReason.VOLTAGE_ABOVE if step.current > 0 else EndReason.VOLTAGE_BELOW
                    return StepOutcome(reason, f"{reason.value} at {e:.4f} V (cycler cutoff)")
            cv = isinstance(step, ConstantVoltage) and lim.current_below is not None
            if cv and i <= lim.current_below * (1 + CURRENT_TOLERANCE):  # type: ignore[operator]
                return StepOutcome(EndReason.CURRENT_BELOW, f"current_below at {i:.3e} A (cycler cutoff)")
        return StepOutcome(EndReason.TIME, "time (cycler step time)")

    def _poll(
        self, ctx: StepContext, next_seq: int
    ) -> Generator[np.ndarray, None, tuple[dict[str, str], list[dict[str, str]]]]:
        """State, then every record from ``next_seq``; reconnects after a dropped link
        (the cycler kept recording: the records of the gap come with this download)."""
        attempts = self.options.reconnect_attempts
        for attempt in range(attempts + 1):
            try:
                status = self.inquire()
                return status, self.download(next_seq)
            except ConnectionLost as exc:
                if attempt == attempts:
                    raise InstrumentError(
                        f"Neware channel {self.options.channel}: link lost, {attempts} reconnections failed: {exc}"
                    ) from exc
                log.warning("Neware %s: %s; reconnecting", self.options.channel, exc)
                wait = ctx.run_time() + self.options.reconnect_wait
                if not (yield from wait_until(ctx, wait, empty_block())):
                    raise InstrumentError("Neware: interrupted while reconnecting") from exc
                try:
                    self._reopen()
                    self.reconnects += 1
                except ConnectionLost as again:
                    log.warning("Neware %s: reconnection failed: %s", self.options.channel, again)
        raise AssertionError("unreachable")

    # --- safety ------------------------------------------------------------------------------
    def hold(self) -> None:
        """A cycler channel holds by stopping its test (output off); the engine
        continues the step afterwards as a new test with what is left of it."""
        self.safe_state()

    def safe_state(self) -> None:
        with_one_reconnect(
            self._stop_test,
            self._reopen,
            instrument=f"Neware {self.options.channel}",
            goal="stop the channel",
        )


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> NewareChannel:
    """The driver factory named in ``labctl.registry`` (connects on ``open``)."""
    from labctl.clock import RealClock

    return NewareChannel(resource, NewareOptions.parse(options), clock or RealClock())
