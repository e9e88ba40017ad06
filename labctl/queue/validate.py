"""Checking a job before it is queued, with the very code ``labctl run`` uses.

A job that could not start in the morning must be refused tonight: ``check_spec`` runs
``prepare_run`` (protocol, parameters, simulated truth, cell, the channel's lab-file safety
limits, the channel's capabilities) against a throw-away output folder. Nothing is run and
no instrument is connected; the run file is only named, never created.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from labctl.config import LabConfig
from labctl.params import ParameterError
from labctl.queue.errors import InvalidJobSpec
from labctl.queue.jobparams import instrument_for, is_sim_channel, split_params
from labctl.queue.jobs import JobSpec


def known_channels(lab: LabConfig | None) -> list[str]:
    """Measuring channels of a lab file as typed on the command line (``NAME`` or ``NAME:CH``)."""
    if lab is None:
        return []
    names = []
    for instrument in lab.instruments.values():
        if instrument.kind == "chamber":
            continue
        for channel in instrument.channels.values():
            single = len(instrument.channels) == 1
            names.append(instrument.name if single else f"{instrument.name}:{channel.name}")
    return names


def check_channel(channel: str | None, lab: LabConfig | None) -> None:
    """A named channel must be simulated (``simN``) or a measuring channel of the lab file."""
    if channel is None or is_sim_channel(channel):
        return
    known = known_channels(lab)
    if lab is not None:
        try:
            lab.channel(channel)
            return
        except (ValueError, KeyError):
            pass
    allowed = ", ".join(["sim1…sim9999", *known])
    where = "" if lab is not None else " (no lab file given: only simulated channels)"
    raise InvalidJobSpec(f"channel: unknown channel {channel!r}{where}; allowed: {allowed}")


def check_spec(spec: JobSpec, lab: LabConfig | None) -> None:
    """Raise InvalidJobSpec (one line naming the field) unless the job could start as given."""
    from labctl.runner import prepare_run

    check_channel(spec.channel, lab)
    params, sim = split_params(spec.params)
    with tempfile.TemporaryDirectory(prefix="labctl-queue-check-") as scratch:
        try:
            prepared = prepare_run(
                spec.protocol,
                params=params,
                instrument=instrument_for(spec.channel),
                sim=sim,
                speed="max",
                out_dir=Path(scratch),
                cell_id=spec.cell.id,
                lab=lab,
            )
        except ParameterError as exc:
            raise InvalidJobSpec(_parameter_message(exc)) from None
        except ValueError as exc:
            raise InvalidJobSpec(" ".join(str(exc).split())) from None
        close = getattr(prepared.channel, "close", None)
        if callable(close):
            close()


def _parameter_message(exc: ParameterError) -> str:
    return " ".join(str(exc).split())
