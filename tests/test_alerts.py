"""Alerts reach a local SMTP server (aiosmtpd) and a local HTTP server with the job's facts;
an unreachable server is one line and no exception; bad [alerts] config is exit 2, one line."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from labctl.alerts import Alert, Alerter, post_webhook, send_email
from labctl.alerts_cli import test_alert_command as alert_command
from labctl.alerts_config import ALERT_EVENTS, AlertsConfig, EmailConfig, WebhookConfig
from labctl.config import LabConfigError, load_lab
from labctl.queue import CellInfo, JobSpec, JobState, open_store

PASSWORD = "s3cret-Pa55"
TOKEN = "T0KEN-abc123"


def free_port() -> int:
    """A port nothing listens on (bound and released: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, str]] = []
        self.received = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.received.set()
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=data.password.decode() == PASSWORD, handled=False)  # False: answer 535
        return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail_first = 0  # answer this many requests with HTTP 503 first


@pytest.fixture
def http_server() -> Iterator[tuple[Hook, int]]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if hook.fail_first > 0:
                hook.fail_first -= 1
                self.send_response(503)
                self.end_headers()
                return
            hook.bodies.append(json.loads(body))
            hook.paths.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def failed_job(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real job from the store that failed on its channel, with its run file."""
    with open_store(tmp_path / "q.sqlite3") as store:
        job = store.add(JobSpec("cycling", CellInfo("MOF-17"), {"cycles": "2"}, channel="pstat:1"), now=0.0)
        store.claim_next("w1", ["pstat:1"], now=1.0)
        return store.finish(
            job.id, "w1", JobState.FAILED, error="voltage limit 6 V exceeded", file="/data/run-7.h5", now=2.0
        )


def email_config(port: int, **kw: Any) -> EmailConfig:
    return EmailConfig(host="127.0.0.1", port=port, sender="labctl@lab.test", to=("night@lab.test",), timeout=10, **kw)


def test_email_carries_the_jobs_facts(tmp_path: Path, smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_server
    job = failed_job(tmp_path)
    delivery = send_email(email_config(port), Alert.for_job("failed", job))
    assert delivery.accepted, delivery.detail
    assert mailbox.received.wait(30)
    message = mailbox.messages[0]
    assert mailbox.envelopes[0] == ("labctl@lab.test", ["night@lab.test"])
    assert f"job {job.id} failed" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    for fact in (
        f"Job: {job.id}",
        "Protocol: cycling",
        "Channel: pstat:1",
        "Cell: MOF-17",
        "State: failed",
        "Reason: voltage limit 6 V exceeded",
        "Run file: /data/run-7.h5",
    ):
        assert fact in body


def test_email_login_takes_credentials_from_the_environment(smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_server
    config = email_config(port, username_env="LAB_SMTP_USER", password_env="LAB_SMTP_PASS")
    ok = send_email(config, Alert("held", channel="pstat:2"), env={"LAB_SMTP_USER": "night", "LAB_SMTP_PASS": PASSWORD})
    assert ok.accepted, ok.detail
    assert mailbox.logins == [("night", PASSWORD)]
    wrong = send_email(config, Alert("held", channel="pstat:2"), env={"LAB_SMTP_USER": "night", "LAB_SMTP_PASS": "x"})
    assert not wrong.accepted and "login refused" in wrong.detail
    missing = send_email(config, Alert("held"), env={"LAB_SMTP_USER": "night"})
    assert not missing.accepted and "LAB_SMTP_PASS" in missing.detail and "not set" in missing.detail
    for delivery in (ok, wrong, missing):
        assert PASSWORD not in delivery.detail and PASSWORD not in delivery.destination


def test_webhook_posts_the_jobs_facts_as_json(tmp_path: Path, http_server: tuple[Hook, int]) -> None:
    hook, port = http_server
    job = failed_job(tmp_path)
    config = WebhookConfig(url=f"http://127.0.0.1:{port}/hooks/{TOKEN}", timeout=10)
    delivery = post_webhook(config, Alert.for_job("interrupted", job, reason="worker died"))
    assert delivery.accepted, delivery.detail
    assert TOKEN not in delivery.destination
    body = hook.bodies[0]
    assert hook.paths == [f"/hooks/{TOKEN}"]
    assert body["event"] == "interrupted" and body["job_id"] == job.id
    assert (body["protocol"], body["channel"], body["cell_id"]) == ("cycling", "pstat:1", "MOF-17")
    assert (body["state"], body["reason"], body["file"]) == ("failed", "worker died", "/data/run-7.h5")
    assert f"job {job.id} was interrupted" in body["summary"]


def test_webhook_is_retried_once(http_server: tuple[Hook, int]) -> None:
    hook, port = http_server
    config = WebhookConfig(url=f"http://127.0.0.1:{port}/h", timeout=10)
    hook.fail_first = 1
    assert post_webhook(config, Alert("queue_done"), retry_delay=0).accepted
    assert len(hook.bodies) == 1
    hook.fail_first = 2
    refused = post_webhook(config, Alert("queue_done"), retry_delay=0)
    assert not refused.accepted and "HTTP 503" in refused.detail and "2 attempts" in refused.detail
    assert len(hook.bodies) == 1


def test_unreachable_servers_are_one_logged_line_each_and_no_exception(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    config = AlertsConfig(
        email=email_config(port),
        webhook=WebhookConfig(url=f"http://127.0.0.1:{port}/hooks/{TOKEN}", timeout=5),
    )
    with caplog.at_level(logging.WARNING, logger="labctl.alerts"):
        deliveries = Alerter(config, retry_delay=0).notify(Alert("failed", job_id=3, protocol="eis", channel="a"))
    assert [d.accepted for d in deliveries] == [False, False]
    records = [r for r in caplog.records if r.name == "labctl.alerts"]
    assert len(records) == 2
    for record in records:
        line = record.getMessage()
        assert "\n" not in line and "not delivered" in line and "job 3 failed" in line
        assert TOKEN not in line
    assert "refused" in deliveries[0].detail.lower() or "errno" in deliveries[0].detail.lower()


def test_events_outside_on_are_not_sent(http_server: tuple[Hook, int]) -> None:
    hook, port = http_server
    alerter = Alerter(AlertsConfig(webhook=WebhookConfig(url=f"http://127.0.0.1:{port}/h"), on=frozenset({"held"})))
    assert alerter.notify(Alert("failed", job_id=1)) == []
    assert [d.accepted for d in alerter.notify(Alert("held", channel="b"))] == [True]
    assert [b["event"] for b in hook.bodies] == ["held"]


# ---- the lab file and test-alert -------------------------------------------------------


def write_lab(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(
        '[instruments.pstat]\ndriver = "emstat4"\nresource = "/dev/null"\n\n[alerts]\n' + alerts, encoding="utf-8"
    )
    return path


def test_lab_file_alerts_section_is_read(tmp_path: Path) -> None:
    lab = load_lab(
        write_lab(
            tmp_path,
            """
on = ["failed", "held"]
webhook = { url = "https://hooks.lab.test/x", timeout = 3 }

[alerts.email]
host = "smtp.lab.test"
starttls = true
from = "a@lab.test"
to = ["b@lab.test", "c@lab.test"]
username_env = "U"
password_env = "P"
""",
        )
    )
    assert lab.alerts.on == {"failed", "held"}
    assert lab.alerts.email is not None and lab.alerts.email.port == 587 and lab.alerts.email.starttls
    assert lab.alerts.email.to == ("b@lab.test", "c@lab.test")
    assert lab.alerts.webhook is not None and lab.alerts.webhook.timeout == 3.0
    assert load_lab(write_lab(tmp_path, "")).alerts.on == frozenset(ALERT_EVENTS)


@pytest.mark.parametrize(
    ("alerts", "key", "allowed"),
    [
        ('emial = { host = "h" }', "alerts.emial", "allowed: email, on, webhook"),
        ('on = ["failed", "exploded"]', "alerts.on", "allowed: failed, interrupted, held, queue_done"),
        ('email = { host = "h", from = "a@b.c", to = ["x@y.z"], port = 70000 }', "alerts.email.port", "65535"),
        ('email = { host = "h", from = "a@b.c", to = [] }', "alerts.email.to", "e-mail addresses"),
        ('email = { host = "h", from = "nobody", to = ["x@y.z"] }', "alerts.email.from", "e-mail address"),
        ('email = { from = "a@b.c", to = ["x@y.z"] }', "alerts.email.host", "missing"),
        (
            'email = { host = "h", from = "a@b.c", to = ["x@y.z"], password_env = "P" }',
            "alerts.email.username_env",
            "username",
        ),
        (
            'email = { host = "h", from = "a@b.c", to = ["x@y.z"], username_env = "9x" }',
            "alerts.email.username_env",
            "environment variable",
        ),
        ('email = { host = "h", from = "a@b.c", to = ["x@y.z"], starttls = "yes" }', "alerts.email.starttls", "true"),
        ('webhook = { url = "ftp://x/y" }', "alerts.webhook.url", "http"),
        ('webhook = { url = "http://x/y", timeout = 0 }', "alerts.webhook.timeout", "seconds"),
        ('webhook = { url = "http://x/y", retries = 3 }', "alerts.webhook.retries", "allowed: timeout, url"),
    ],
)
def test_bad_alert_config_is_exit_2_one_line_naming_the_key(
    tmp_path: Path, alerts: str, key: str, allowed: str
) -> None:
    path = write_lab(tmp_path, alerts)
    with pytest.raises(LabConfigError) as caught:
        load_lab(path)
    assert f"{path}: {key}:" in str(caught.value) and allowed in str(caught.value)
    result = CliRunner().invoke(alert_command, ["--lab", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_test_alert_reports_each_destination(
    tmp_path: Path, smtp_server: tuple[Mailbox, int], http_server: tuple[Hook, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, smtp_port = smtp_server
    hook, http_port = http_server
    monkeypatch.setenv("LAB_SMTP_USER", "night")
    monkeypatch.setenv("LAB_SMTP_PASS", PASSWORD)
    path = write_lab(
        tmp_path,
        f"""
webhook = {{ url = "http://127.0.0.1:{http_port}/hooks/{TOKEN}" }}

[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
from = "a@lab.test"
to = ["b@lab.test"]
username_env = "LAB_SMTP_USER"
password_env = "LAB_SMTP_PASS"
""",
    )
    result = CliRunner().invoke(alert_command, ["--lab", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("ok") for line in lines)
    assert f"127.0.0.1:{smtp_port}" in lines[0] and f"127.0.0.1:{http_port}" in lines[1]
    assert PASSWORD not in result.output and TOKEN not in result.output
    assert mailbox.received.wait(30) and "test alert" in mailbox.messages[0]["Subject"]
    assert hook.bodies[0]["event"] == "test"


def test_test_alert_says_which_destination_failed(tmp_path: Path, http_server: tuple[Hook, int]) -> None:
    _, http_port = http_server
    path = write_lab(
        tmp_path,
        f"""
email = {{ host = "127.0.0.1", port = {free_port()}, from = "a@lab.test", to = ["b@lab.test"], timeout = 5 }}
webhook = {{ url = "http://127.0.0.1:{http_port}/h" }}
""",
    )
    result = CliRunner().invoke(alert_command, ["--lab", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [d["accepted"] for d in report] == [False, True]
    assert report[0]["destination"].startswith("e-mail") and report[0]["detail"].startswith("not sent")


def test_test_alert_without_destinations_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(alert_command, ["--lab", str(write_lab(tmp_path, 'on = ["held"]'))])
    assert result.exit_code == 2 and "alerts" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_held_channel_alert_names_the_channel_and_the_reason(tmp_path: Path) -> None:
    job = failed_job(tmp_path)
    with open_store(tmp_path / "q.sqlite3") as store:
        store.hold("pstat:1", "cell may have changed after a crash", job_id=job.id, now=3.0)
        (hold,) = store.holds()
    alert = Alert.for_hold(hold, job)
    assert (alert.event, alert.channel, alert.job_id) == ("held", "pstat:1", job.id)
    assert alert.reason == "cell may have changed after a crash"
    assert "channel pstat:1 is held" in alert.subject and "Run file: /data/run-7.h5" in alert.text()
    bare = Alert.for_hold(hold)
    assert bare.job_id == job.id and "Reason: cell may have changed" in bare.text()


def test_starttls_required_but_not_offered_is_one_clear_line(smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_server
    delivery = send_email(email_config(port, starttls=True), Alert("queue_done"))
    assert not delivery.accepted and "STARTTLS" in delivery.detail and "\n" not in delivery.detail
    assert mailbox.messages == []  # nothing goes out in clear text when TLS was asked for
