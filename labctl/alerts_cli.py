"""``labctl queue test-alert --lab F``: send a test message to every configured destination.

A technician runs it once after editing the ``[alerts]`` section, before trusting a night
to it: each destination is listed with whether it accepted the message. Exit code 0 when
all accepted, 1 when one did not, 2 when the lab file is wrong or configures no alert.

Application layer (it reads the lab file); the lead registers ``test_alert_command`` under
the ``queue`` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from labctl.alerts import Alert, Alerter
from labctl.alerts_config import TEST_EVENT
from labctl.config import LabConfigError, load_lab

EXIT_NOT_DELIVERED = 1
EXIT_USAGE = 2


@click.command("test-alert")
@click.option(
    "--lab", "lab_path", envvar="LABCTL_LAB", required=True, type=click.Path(dir_okay=False), help="lab file (TOML)"
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of {destination, accepted, detail}")
def test_alert_command(lab_path: str, as_json: bool) -> None:
    """Send a test alert to every destination in the lab file's [alerts] section."""
    try:
        lab = load_lab(Path(lab_path))
    except LabConfigError as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(EXIT_USAGE)
    if not lab.alerts.configured:
        click.echo(f"error: {lab.path}: alerts: no destination configured (allowed: email, webhook)", err=True)
        sys.exit(EXIT_USAGE)
    alert = Alert(event=TEST_EVENT, reason=f"test of the alerts configured in {lab.path}")
    deliveries = Alerter(lab.alerts).send(alert)
    if as_json:
        click.echo(
            json.dumps([{"destination": d.destination, "accepted": d.accepted, "detail": d.detail} for d in deliveries])
        )
    else:
        for delivery in deliveries:
            mark = "ok    " if delivery.accepted else "FAILED"
            click.echo(f"{mark} {delivery.destination}: {delivery.detail}")
    if not all(d.accepted for d in deliveries):
        sys.exit(EXIT_NOT_DELIVERED)
