"""The ``labctl`` command line.

Exit codes: 0 completed, 1 failed, 2 bad input (nothing ran, no file
written), 130 aborted (Ctrl-C / SIGTERM / SIGHUP, cell left in its safe state).

Errors are one line; ``labctl --debug COMMAND ...`` adds the traceback (a
failed run's traceback is also kept in its run file).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from labctl import __version__, registry
from labctl.jsonable import to_jsonable
from labctl.logsetup import configure_logging, debug_enabled
from labctl.numbers import parse_number
from labctl.params import ParameterError, parse_assignments
from labctl.stopkeys import stop_on_signals
from labctl.watchdog import read_deadline

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ABORTED = 130


def _console() -> Console:
    return Console(stderr=True, highlight=False)


def _fail_usage(exc: Exception) -> None:
    """Bad input: one ``error:`` line (scripts grep for it), exit 2, nothing ran."""
    message = " ".join(str(exc).split("\n"))
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


class _LabctlGroup(click.Group):
    """Any error a command did not handle is one line (exit code 1); the
    traceback only with ``labctl --debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("aborted", err=True)
            sys.exit(EXIT_ABORTED)
        except Exception as exc:
            if debug_enabled():
                traceback.print_exc()
            text = " ".join(str(exc).split())
            click.echo(f"error: {type(exc).__name__}: {text}" if text else f"error: {type(exc).__name__}", err=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=_LabctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labctl")
@click.option("--debug", is_flag=True, help="show tracebacks and debug logging on the terminal")
def main(debug: bool) -> None:
    """Run electrochemistry protocols on instruments or simulators."""
    configure_logging(debug)


@main.command("run")
@click.argument("protocol_name", metavar="PROTOCOL")
@click.option("--instrument", "-i", default="sim", show_default=True, help="instrument name; 'sim' = physics simulator")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="protocol parameter (lab units)")
@click.option(
    "--sim", "sim", multiple=True, metavar="NAME=VALUE", help="simulated-cell truth (see 'labctl sim-params')"
)
@click.option(
    "--out",
    "out_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="folder for the run file",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object {file, status, results}")
@click.option("--speed", default="max", show_default=True, help="simulation speed: max, or N x real time")
@click.option("--cell-id", default="", help="cell identifier recorded in the run file")
@click.option("--operator", default="", help="operator recorded in the run file")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@click.option("--lab", "lab_path", envvar="LABCTL_LAB", type=click.Path(dir_okay=False), help="lab file (TOML)")
@click.option("--save", is_flag=True, help="leads: store R and L as the channel's calibration (next to the lab file)")
def run_command(
    protocol_name: str,
    instrument: str,
    params: tuple[str, ...],
    sim: tuple[str, ...],
    out_dir: str,
    as_json: bool,
    speed: str,
    cell_id: str,
    operator: str,
    quiet: bool,
    lab_path: str | None,
    save: bool,
) -> None:
    """Run PROTOCOL on an instrument, writing one HDF5 run file.

    Protocol parameters are given in lab units with -p (see 'labctl protocols
    PROTOCOL'); a simulated cell's truth with --sim (see 'labctl sim-params').
    Ctrl-C aborts cleanly: the cell is put in its safe state and the file
    records the run as aborted.
    """
    from labctl import calibration
    from labctl.runner import prepare_run

    try:
        lab = _load_lab(lab_path) if lab_path else None
        save_key = calibration.check_save(protocol_name, lab, instrument) if save else None
        prepared = prepare_run(
            protocol_name,
            params=parse_assignments(params, "-p"),
            instrument=instrument,
            sim=parse_assignments(sim, "--sim"),
            speed=speed,
            out_dir=Path(out_dir),
            cell_id=cell_id,
            operator=operator,
            lab=lab,
        )
    except (ParameterError, ValueError) as exc:
        _fail_usage(exc)
        return

    from labctl.progress import ProgressDisplay

    console = _console()
    display = ProgressDisplay(console, enabled=not quiet)
    outcome = prepared.execute(display, install_signal_handlers=True)
    if outcome.error_detail and debug_enabled():
        click.echo(outcome.error_detail.rstrip(), err=True)
    payload = {
        "file": str(prepared.path),
        "status": outcome.status.value,
        "results": to_jsonable(outcome.results),
    }
    if outcome.error:
        payload["error"] = outcome.error
    if save_key is not None and lab is not None and outcome.status.value == "completed":
        try:
            payload["calibration"] = str(calibration.save_from_results(lab, save_key, outcome.results, prepared.path))
        except ValueError as exc:
            payload["error"] = str(exc)
    if as_json:
        click.echo(json.dumps(payload))
    else:
        _print_outcome(console, payload)
    if outcome.status.value == "completed" and "error" not in payload:
        return
    sys.exit(EXIT_ABORTED if outcome.status.value == "aborted" else EXIT_FAILED)


def _print_outcome(console: Console, payload: dict[str, Any]) -> None:
    status = payload["status"]
    colour = {"completed": "green", "aborted": "yellow"}.get(status, "red")
    console.print(f"[bold {colour}]{status}[/]  {escape(payload['file'])}")
    if payload.get("error"):
        # The reason can quote lab-file text (a resource): never read it as markup.
        console.print(f"[red]reason:[/] {escape(str(payload['error']))}", soft_wrap=True)
    if payload.get("calibration"):
        console.print(f"calibration saved: {escape(payload['calibration'])}")
    results = payload["results"]
    if results:
        table = Table(title="results", show_header=False, box=None)
        for key, value in results.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value)[:120]
            elif isinstance(value, float):
                value = f"{value:.6g}"
            table.add_row(key, str(value))
        Console(highlight=False).print(table)


@main.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def show_command(path: str, as_json: bool) -> None:
    """Print a run file's metadata, steps and results (also while it is written).

    Run files are read as untrusted input: a file refused by the checks gets
    one line naming the field (exit 2); one that cannot be read, exit 1.
    """
    from labctl.storage import RunFileError, describe_run

    try:
        with read_deadline(path):
            summary = describe_run(Path(path))
    except RunFileError as exc:
        _fail_usage(exc)
        return
    except OSError as exc:
        click.echo(f"error: cannot read {path}: {_one_line(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(to_jsonable(summary)))
        return
    from labctl.progress import print_summary

    console = Console(highlight=False)
    print_summary(console, summary)
    if summary.get("note"):
        console.print(f"note: {escape(summary['note'])}")


@main.command("recover")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def recover_command(path: str) -> None:
    """Close the file of a run whose writer was killed, so any HDF5 tool opens it.

    The file is marked interrupted (with the reason) and gets its per-step
    records. Only done when the writer is certainly gone (its process is gone
    on this host, or no heartbeat for many minutes); a file already closed is
    left alone. Exit 2 for a file that is not a labctl run file.
    """
    from labctl.storage import RunFileError, recover_run

    try:
        with read_deadline(path):
            recovery = recover_run(Path(path))
    except RunFileError as exc:
        _fail_usage(exc)
        return
    except (RuntimeError, OSError, ValueError) as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(recovery.summary)


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


@main.command("analyze", context_settings={"ignore_unknown_options": False})
@click.argument("target")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="analysis parameter (lab units)")
@click.option("--temperatures", default=None, help="arrhenius: °C per file, in file order (comma-separated)")
@click.option(
    "--form",
    type=click.Choice(["sigma", "sigmaT", "vtf"]),
    default="sigma",
    show_default=True,
    help="arrhenius: the form fitted",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def analyze_command(
    target: str, files: tuple[str, ...], params: tuple[str, ...], temperatures: str | None, form: str, as_json: bool
) -> None:
    """Re-run a protocol's analysis on a run file, or analyse imported spectra.

    \b
    labctl analyze RUN.h5 [-p method=tangent]      replay the stored run's analysis
    labctl analyze SPECTRUM.z -p thickness=500 -p area=0.5
    labctl analyze arrhenius F1 F2 ... --temperatures 140,150,... -p thickness=2100 -p area=0.503
    """
    from labctl.analyze import (
        NothingToAnalyse,
        analyze_arrhenius_files,
        analyze_spectrum_file,
        is_run_file,
        replay_run,
    )

    try:
        given = parse_assignments(params, "-p")
        if target == "arrhenius":
            if len(files) < 2:
                raise ParameterError("files", "arrhenius needs at least two spectrum files")
            temps = None
            if temperatures is not None:
                try:
                    temps = [float(parse_number(t)) for t in temperatures.split(",") if t.strip()]
                except ValueError:
                    raise ParameterError("temperatures", f"cannot read {temperatures!r} as °C values") from None
            report = analyze_arrhenius_files([Path(f) for f in files], temps, given, form=form)
        else:
            path = Path(target)
            if not path.is_file():
                raise ParameterError("FILE", f"{target} is not a file (or use 'labctl analyze arrhenius FILES...')")
            if files:
                raise ParameterError("FILE", "give one file (several spectra: 'labctl analyze arrhenius FILES...')")
            with read_deadline(target):
                report = replay_run(path, given) if is_run_file(path) else analyze_spectrum_file(path, given)
    except (ParameterError, ValueError) as exc:
        _fail_usage(exc)
        return
    except NothingToAnalyse as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except OSError as exc:
        click.echo(f"error: cannot read {target}: {_one_line(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(to_jsonable(report)))
        return
    console = Console(highlight=False)
    results = report.get("results", {})
    title = escape(f"analysis of {report.get('file', ', '.join(report.get('files', [])))}")
    table = Table("result", "value", title=title)
    for key, value in results.items():
        if key == "warnings":
            continue  # printed in full below the table
        if isinstance(value, (dict, list)):
            text = json.dumps(to_jsonable(value))[:160]
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        table.add_row(escape(str(key)), escape(text))
    console.print(table)
    from labctl.analyze import headline

    for line in headline(results):
        console.print(escape(line))
    if report.get("note"):
        console.print(f"note: {escape(report['note'])}")


@main.command("protocols")
@click.argument("name", required=False)
def protocols_command(name: str | None) -> None:
    """List the protocols, or show one protocol's parameters."""
    console = Console(highlight=False)
    if name is None:
        table = Table("protocol", "cell", "title")
        for proto_name in registry.available_protocols():
            proto = registry.get_protocol(proto_name)
            table.add_row(proto.name, proto.cell_type, proto.title)
        console.print(table)
        return
    try:
        proto = registry.get_protocol(name)
    except ParameterError as exc:
        _fail_usage(exc)
        return
    console.print(f"[bold]{proto.name}[/] v{proto.version}: {proto.title} (cell: {proto.cell_type})")
    if proto.description:
        console.print(proto.description)
    table = Table("parameter", "unit", "default", "allowed", "meaning")
    for p in (p for p in proto.params if not p.internal):
        table.add_row(p.name, p.unit, p.describe_default(), p.allowed, p.help)
    console.print(table)


def _load_lab(path: str):
    from labctl.config import load_lab

    return load_lab(Path(path))


@main.group("instruments")
def instruments_group() -> None:
    """Configured instruments (from the lab file)."""


@instruments_group.command("list")
@click.option(
    "--lab", "lab_path", envvar="LABCTL_LAB", required=True, type=click.Path(dir_okay=False), help="lab file (TOML)"
)
@click.option("--json", "as_json", is_flag=True)
def instruments_list(lab_path: str, as_json: bool) -> None:
    """Instruments, channels and safety limits in the lab file."""
    from labctl.config import LabConfigError

    try:
        lab = _load_lab(lab_path)
    except LabConfigError as exc:
        _fail_usage(exc)
        return
    rows = []
    for inst in lab.instruments.values():
        for ch in inst.channels.values():
            s = ch.safety
            rows.append(
                {
                    "instrument": inst.name,
                    "channel": ch.name,
                    "driver": inst.driver,
                    "kind": inst.kind,
                    "resource": inst.resource,
                    "max_current_mA": None if s.max_current is None else s.max_current * 1e3,
                    "voltage_window_V": [s.voltage_min, s.voltage_max],
                    "max_temperature_C": s.max_temperature,
                    "chamber": ch.chamber,
                    "cell": ch.cell,
                }
            )
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("instrument", "driver", "kind", "resource", "max |I| / mA", "V window", "max T / °C", "chamber")
    for r in rows:
        name = (
            r["instrument"]
            if len(lab.instruments[r["instrument"]].channels) == 1
            else f"{r['instrument']}:{r['channel']}"
        )
        lo, hi = r["voltage_window_V"]
        table.add_row(
            name,
            r["driver"],
            r["kind"],
            escape(r["resource"]),  # lab-file text, not markup
            "-" if r["max_current_mA"] is None else f"{r['max_current_mA']:g}",
            "-"
            if lo is None and hi is None
            else f"{lo if lo is not None else '-inf'} .. {hi if hi is not None else 'inf'}",
            "-" if r["max_temperature_C"] is None else f"{r['max_temperature_C']:g}",
            r["chamber"] or "",
        )
    Console(highlight=False).print(table)


@instruments_group.command("drivers")
@click.argument("driver", required=False)
def instruments_drivers(driver: str | None) -> None:
    """The drivers a lab file can name, or one driver's options (keys, defaults, allowed values)."""
    console = Console(highlight=False)
    if driver is None:
        table = Table("driver", "kind")
        for name in sorted(registry.DRIVERS):
            table.add_row(name, registry.KINDS[name])
        console.print(table)
        return
    try:
        options_class = registry.driver_options(driver)
    except ValueError as exc:
        _fail_usage(exc)
        return
    table = Table("option", "default", "allowed", "meaning", title=f"{driver} options (lab file: options = {{ … }})")
    for key, default, allowed, meaning in options_class.describe():
        table.add_row(key, escape(default), escape(allowed), escape(meaning))
    console.print(table)


@instruments_group.command("identify")
@click.argument("name")
@click.option(
    "--lab", "lab_path", envvar="LABCTL_LAB", required=True, type=click.Path(dir_okay=False), help="lab file (TOML)"
)
@click.option("--json", "as_json", is_flag=True)
def instruments_identify(name: str, lab_path: str, as_json: bool) -> None:
    """Connect to NAME and print its model, serial and firmware."""
    from labctl.channel import InstrumentError
    from labctl.config import LabConfigError
    from labctl.instruments import build_instrument

    try:
        lab = _load_lab(lab_path)
        config, channel = lab.channel(name)
        instrument = build_instrument(config, channel.name)
    except (LabConfigError, ParameterError, ValueError) as exc:
        _fail_usage(exc)
        return
    try:
        instrument.open()
        info = instrument.identify().as_dict()
    except (InstrumentError, OSError) as exc:
        click.echo(f"error: {name}: {' '.join(str(exc).split())}", err=True)
        sys.exit(EXIT_FAILED)
    except ValueError as exc:  # the driver cannot use the resource as written: a lab-file mistake
        _fail_usage(ValueError(f"{lab.path}: instruments.{config.name}.resource: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            instrument.close()
    if as_json:
        click.echo(json.dumps(info))
        return
    for key, value in info.items():
        click.echo(f"{key:10s} {value}")


@instruments_group.command("safe")
@click.argument("name")
@click.option(
    "--lab", "lab_path", envvar="LABCTL_LAB", required=True, type=click.Path(dir_okay=False), help="lab file (TOML)"
)
def instruments_safe(name: str, lab_path: str) -> None:
    """Apply the safe state to NAME (instrument[:channel]) and its chamber by hand:
    output off / cell off, chamber standby (what the guardian does after a crash)."""
    from labctl.channel import InstrumentError
    from labctl.config import LabConfigError
    from labctl.guardian import guarded_instruments, make_safe

    try:
        lab = _load_lab(lab_path)
        targets = guarded_instruments(lab, name)
    except (LabConfigError, ParameterError, ValueError) as exc:
        _fail_usage(exc)
        return
    failed = False
    for target in targets:
        try:
            click.echo(make_safe(target.config(), target.channel))
        except (InstrumentError, OSError) as exc:
            click.echo(f"error: {target.label()}: {' '.join(str(exc).split())}", err=True)
            failed = True
        except (ParameterError, ValueError) as exc:
            _fail_usage(exc)
    if failed:
        sys.exit(EXIT_FAILED)


def _option_value(text: str) -> int | float | bool | str:
    """Command-line option values: numbers (strict grammar) and true/false as such,
    the rest as text, so ``1_0`` reaches the emulator as the text it is, not as 10."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for integer in (True, False):
        try:
            return parse_number(text, integer=integer)
        except ValueError:
            pass
    return text


def _port(text: str) -> int:
    try:
        port = parse_number(text, integer=True)
    except ValueError:
        raise ParameterError("port", f"cannot read {text!r} (allowed: a whole number from 0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise ParameterError("port", f"{port} is out of range (allowed: a whole number from 0 to 65535)")
    return int(port)


@main.command("sim-server")
@click.option("--model", required=True, help="instrument to emulate (see drivers/registry.py)")
@click.option("--port", "port_text", default="0", show_default=True, help="TCP port (0 = any free port)")
@click.option("--sim", "sim", multiple=True, metavar="NAME=VALUE", help="simulated-cell truth")
@click.option(
    "--speed", "speed_text", default="1", show_default=True, help="emulated time runs N x real time (0.001 to 1e7)"
)
@click.option(
    "--cell", "cell_type", default="auto", show_default=True, help="cell type (ss, li_li, li_ss, li_cu, full)"
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="emulator option, e.g. chamber=espec (an LCR emulator with a chamber on the same cell)",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND[@WHEN]",
    help="inject a fault (repeatable): KIND no-reply|garbled|drop-link|instrument-error|compliance, "
    "WHEN once (default)|always|N (the N-th reply)|t=DURATION (cell time, e.g. t=30s, t=2min)",
)
def sim_server_command(
    model: str,
    port_text: str,
    sim: tuple[str, ...],
    speed_text: str,
    cell_type: str,
    options: tuple[str, ...],
    faults: tuple[str, ...],
) -> None:
    """Serve a wire-level emulator of an instrument, backed by the cell physics.

    Point the real driver (or any client) at the printed resource. Ctrl-C stops it.

    Faults (--fault KIND[@WHEN], repeatable) test a client's error handling:

    \b
      no-reply          a reply is swallowed (the client must time out)
      garbled           a reply arrives corrupted
      drop-link         the connection is closed (a pseudo-terminal stays silent
                        until the emulator is restarted)
      instrument-error  the instrument reports an error of its own (error queue
                        entry, MethodSCRIPT runtime error, controller alarm)
      compliance        the source hits its limit / a reading overloads
                        (SMUs, MethodSCRIPT potentiostats, LCR meter)

    \b
      @once             the next reply (default; an instrument fault: as soon
                        as it can take effect, e.g. compliance once the output is on)
      @always           every reply
      @N                the N-th reply the emulator sends (a MethodSCRIPT data
                        line is a reply), counted from its start
      @t=DURATION       the first reply at or after this cell time, units ms, s
                        (default), min, h: @t=30s, @t=1.5h

    Example: --fault garbled@12 --fault drop-link@t=10min
    """
    from drivers.sim import SimParams
    from drivers.sim.wire.faults import FaultPlan, install
    from labctl.registry import emulator_factory
    from labctl.speed import parse_speed_factor

    try:
        plans = [FaultPlan.parse(text) for text in faults]
        params = SimParams.from_strings(parse_assignments(sim, "--sim"))
        factory = emulator_factory(model)
        speed = parse_speed_factor(speed_text)
        port = _port(port_text)
        extra = {name: _option_value(value) for name, value in parse_assignments(options, "--option").items()}
    except (ParameterError, ValueError) as exc:
        _fail_usage(exc)
        return
    try:
        server = factory(params, port=port, speed=speed, cell_type=cell_type, **extra)
    except TypeError as exc:
        _fail_usage(ValueError(f"emulator {model!r}: {exc}"))
        return
    except ValueError as exc:
        _fail_usage(exc)
        return
    try:
        install(server, plans, model)
    except ValueError as exc:
        server.stop()
        _fail_usage(exc)
        return
    try:  # a Ctrl-C as soon as the resource is printed must still stop cleanly
        stop_on_signals()
        click.echo(f"{model} emulator at {server.resource} (speed {speed:g}x); Ctrl-C to stop", err=True)
        for plan in plans:
            click.echo(f"fault armed: {plan.describe()}", err=True)
        click.echo(server.resource)
        chamber = getattr(server, "chamber", None)
        if chamber is not None:
            click.echo(f"chamber emulator on the same cell at {chamber.resource}", err=True)
            click.echo(chamber.resource)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command("sim-params")
def sim_params_command() -> None:
    """List the simulated cell's truth parameters (set with --sim NAME=VALUE)."""
    from drivers.sim import SimParams

    table = Table("name", "unit", "default", "allowed", "meaning")
    for spec in SimParams.specs():
        table.add_row(spec.name, spec.unit, spec.describe_default(), spec.allowed, spec.help)
    Console(highlight=False).print(table)


from labctl.queue.cli import queue_group  # noqa: E402 - the queue commands live with the queue

main.add_command(queue_group)
from labctl.export import export_command  # noqa: E402 - report and export live in their own modules
from labctl.report.command import report_command  # noqa: E402

main.add_command(report_command)
main.add_command(export_command)

from labctl.gui_cli import gui_command  # noqa: E402 - imports gui only when run

main.add_command(gui_command)


if __name__ == "__main__":
    main()
