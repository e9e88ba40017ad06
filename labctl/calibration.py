"""Per-channel lead calibration: where it is kept, and r_leads defaults from it.

The ``leads`` protocol measures R and L of a channel's leads and holder on a short. Its
result is kept in a **calibration file next to the lab file** (``lab.toml`` →
``lab.calibration.toml``), one table per channel::

    # written by 'labctl run leads --save'
    [leads."pstat:1"]
    r_ohm = 0.2113
    r_stderr_ohm = 0.0004
    l_h = 1.08e-07
    l_stderr_h = 9e-10
    measured = "2026-12-04T13:05:52+00:00"
    run = "runs/20261204-130552_leads_37543f40b08b.h5"

Why a separate file and not the lab file itself: the lab file is written by people (with
comments and their own layout) and sets safety limits; a program rewriting it on every
calibration would sooner or later lose a comment or a limit. The calibration file is
written only by labctl, whole, atomically (temporary file, fsync, rename), so a crash
leaves the old calibration or the new one, never half of either. A calibration typed by
hand into the lab file (``leads = { r_ohm = …, measured = … }`` in a channel's table) is
read too; when both exist, the one with the later ``measured`` wins (the file on a tie).

Channel keys are ``INSTRUMENT:CHANNEL`` as in the lab file, or ``sim`` for the simulator
(so a dry run can exercise the same path). ``eis``, ``arrhenius`` and ``transference`` on a
channel take ``r_leads`` from its calibration when ``-p r_leads`` is not given, and record
where it came from in ``r_leads_source``: ``parameter``, ``calibration FILE (measured
DATE)`` or ``none (0 ohm assumed)``.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from labctl.config import LabConfig, LabConfigError, _read_text, _Where, parse_leads
from labctl.params import ParameterError
from labctl.protocol import Protocol

SUFFIX = ".calibration.toml"
SIM_KEY = "sim"


@dataclass(frozen=True)
class LeadCalibration:
    """One channel's leads: R (Ω), L (H) with standard errors, when and by which run."""

    channel: str
    r_ohm: float
    source_file: Path
    l_h: float | None = None
    r_stderr_ohm: float | None = None
    l_stderr_h: float | None = None
    measured: str = ""
    run: str = ""

    def describe(self) -> str:
        when = f" (measured {self.measured})" if self.measured else " (measurement date not recorded)"
        return f"calibration {self.source_file}{when}"

    def table(self) -> dict[str, Any]:
        out: dict[str, Any] = {"r_ohm": self.r_ohm}
        for key in ("r_stderr_ohm", "l_h", "l_stderr_h"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.measured:
            out["measured"] = self.measured
        if self.run:
            out["run"] = self.run
        return out


def calibration_path(lab_path: Path) -> Path:
    """``lab.toml`` → ``lab.calibration.toml`` in the same folder."""
    return lab_path.with_name(lab_path.stem + SUFFIX)


def channel_key(lab: LabConfig | None, instrument: str) -> str:
    """The calibration key of ``--instrument``: ``sim``, or ``INSTRUMENT:CHANNEL``."""
    if instrument == SIM_KEY:
        return SIM_KEY
    if lab is None:
        raise ParameterError("instrument", f"unknown instrument {instrument!r}: give --lab lab.toml")
    inst, channel = lab.channel(instrument)
    return f"{inst.name}:{channel.name}"


def _calibration(key: str, table: Mapping[str, Any], source: Path) -> LeadCalibration:
    return LeadCalibration(
        channel=key,
        r_ohm=float(table["r_ohm"]),
        source_file=source,
        l_h=table.get("l_h"),
        r_stderr_ohm=table.get("r_stderr_ohm"),
        l_stderr_h=table.get("l_stderr_h"),
        measured=str(table.get("measured", "")),
        run=str(table.get("run", "")),
    )


def load_file(path: Path) -> dict[str, LeadCalibration]:
    """Every channel's calibration in a calibration file ({} when there is none).

    A damaged file is an error naming the file and key (LabConfigError), never ignored:
    silently measuring without the lead correction would shift every σ.
    """
    if not path.exists():
        return {}
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(f"{path}: not valid TOML: {exc}") from None
    root = _Where(path)
    unknown = sorted(set(data) - {"leads"})
    if unknown:
        raise root.error(f"unknown section [{unknown[0]}] (allowed: leads)")
    tables = data.get("leads", {})
    if not isinstance(tables, dict):
        raise (root / "leads").error('expected a table of channels like [leads."pstat:1"]')
    return {key: _calibration(key, parse_leads(root / "leads" / key, t), path) for key, t in tables.items()}


def lead_calibration(lab: LabConfig, instrument: str) -> LeadCalibration | None:
    """The channel's calibration: the calibration file's or the lab file's, the later measured."""
    key = channel_key(lab, instrument)
    found = []
    stored = load_file(calibration_path(lab.path)).get(key)
    if stored is not None:
        found.append(stored)
    if key != SIM_KEY:
        _, channel = lab.channel(instrument)
        if channel.leads is not None:
            found.append(_calibration(key, channel.leads, lab.path))
    if not found:
        return None
    return max(found, key=lambda c: (_when(c.measured), c.source_file != lab.path))


def _when(text: str) -> datetime:
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def apply_r_leads_default(
    protocol: Protocol, params: Mapping[str, str], lab: LabConfig | None, instrument: str
) -> dict[str, str]:
    """``params`` with r_leads from the channel's calibration when not given, and
    ``r_leads_source`` saying where r_leads came from (protocols without r_leads: unchanged)."""
    names = {p.name for p in protocol.params}
    out = dict(params)
    if not {"r_leads", "r_leads_source"} <= names:
        return out
    if "r_leads_source" in params:
        raise ParameterError("r_leads_source", "is filled in by labctl (give -p r_leads to set the resistance)")
    if "r_leads" in params:
        out["r_leads_source"] = "parameter"
        return out
    calibration = lead_calibration(lab, instrument) if lab is not None else None
    if calibration is None:
        out["r_leads_source"] = "none (0 ohm assumed)"
        return out
    out["r_leads"] = repr(calibration.r_ohm)
    out["r_leads_source"] = calibration.describe()
    return out


# --------------------------------------------------------------------------- saving


def check_save(protocol_name: str, lab: LabConfig | None, instrument: str) -> str:
    """Refuse ``--save`` before anything runs when it cannot be honoured; the channel key."""
    if protocol_name != "leads":
        raise ParameterError("save", f"only the 'leads' protocol stores a calibration, not {protocol_name!r}")
    if lab is None:
        raise ParameterError("save", "needs --lab: the calibration is stored next to the lab file")
    key = channel_key(lab, instrument)
    load_file(calibration_path(lab.path))  # a damaged file is found now, not after the run
    return key


def save_from_results(lab: LabConfig, key: str, results: Mapping[str, Any], run_file: Path) -> Path:
    """Store a valid ``leads`` result as channel ``key``'s calibration; the file written.

    ValueError (nothing written) when the result is invalid.
    """
    if not results.get("valid"):
        raise ValueError(f"calibration not saved: {results.get('reason') or 'the result is not valid'}")
    r = float(results["r_ohm"])
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"calibration not saved: r_ohm = {r!r} is not a resistance")
    path = calibration_path(lab.path)
    calibration = LeadCalibration(
        channel=key,
        r_ohm=r,
        source_file=path,
        l_h=_float(results.get("l_h")),
        r_stderr_ohm=_float(results.get("r_stderr_ohm")),
        l_stderr_h=_float(results.get("l_stderr_h")),
        measured=datetime.now(UTC).isoformat(timespec="seconds"),
        run=str(run_file),
    )
    write_file(path, {**load_file(path), key: calibration})
    return path


def _float(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def write_file(path: Path, calibrations: Mapping[str, LeadCalibration]) -> None:
    """Write the whole calibration file atomically (temporary file, fsync, rename)."""
    header = "# Lead calibrations, written by 'labctl run leads --save'. One table per channel.\n\n"
    text = header + tomli_w.dumps({"leads": {key: calibrations[key].table() for key in sorted(calibrations)}})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
