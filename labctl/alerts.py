"""Telling a person that the night's queue needs them: e-mail and a JSON webhook.

Alerts are raised when a job fails or is interrupted, when a channel is held, and when the
queue has run out of work (``labctl.alerts_config.ALERT_EVENTS``). Sending is best effort by
design: a mail server that is down must never stop the queue or leave a cell waiting, so
every sender returns a ``Delivery`` (accepted or not, with a one-line reason) instead of
raising, and ``Alerter.notify`` logs each refusal in one line. Secrets (passwords, tokens in
a webhook's path) never appear in a message: webhooks are named by scheme, host and port.

Only the standard library is used (smtplib, urllib), so alerts work on any lab PC.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from labctl.alerts_config import TEST_EVENT, AlertsConfig, EmailConfig, WebhookConfig
from labctl.queue.jobs import ChannelHold, Job

log = logging.getLogger("labctl.alerts")

#: Pause between a webhook's first attempt and its one retry (a restarting proxy, a blip).
WEBHOOK_RETRY_DELAY_S = 1.0

_HEADLINES = {
    "failed": "job {job_id} failed",
    "interrupted": "job {job_id} was interrupted",
    "held": "channel {channel} is held",
    "queue_done": "the queue is done",
    TEST_EVENT: "test alert",
}


@dataclass(frozen=True)
class Alert:
    """What happened, with everything a person needs to act on it from a phone."""

    event: str
    job_id: int | None = None
    protocol: str = ""
    channel: str = ""
    cell_id: str = ""
    state: str = ""
    reason: str = ""
    file: str = ""
    host: str = field(default_factory=lambda: os.uname().nodename if hasattr(os, "uname") else "")
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_job(cls, event: str, job: Job, reason: str | None = None, **details: Any) -> Alert:
        """The alert about ``job`` (its id, protocol, channel, cell, state, error and run file)."""
        return cls(
            event=event,
            job_id=job.id,
            protocol=job.protocol,
            channel=job.channel or job.requested_channel or "",
            cell_id=job.cell.id,
            state=job.state.value,
            reason=reason if reason is not None else (job.error or ""),
            file=job.file or "",
            details=details,
        )

    @classmethod
    def for_hold(cls, hold: ChannelHold, job: Job | None = None) -> Alert:
        """The alert that a channel takes no jobs until a technician acknowledges it."""
        if job is not None:
            return replace(cls.for_job("held", job, reason=hold.reason), channel=hold.channel)
        return cls(event="held", job_id=hold.job_id, channel=hold.channel, reason=hold.reason)

    @property
    def headline(self) -> str:
        return _HEADLINES.get(self.event, self.event).format(job_id=self.job_id, channel=self.channel or "?")

    @property
    def subject(self) -> str:
        what = f" ({self.protocol} on {self.channel}, cell {self.cell_id})" if self.protocol else ""
        return " ".join(f"[labctl] {self.headline}{what}".split())

    def text(self) -> str:
        """The body of an e-mail: one labelled line per known fact."""
        rows = [
            ("Event", self.event),
            ("Job", "" if self.job_id is None else str(self.job_id)),
            ("Protocol", self.protocol),
            ("Channel", self.channel),
            ("Cell", self.cell_id),
            ("State", self.state),
            ("Reason", self.reason),
            ("Run file", self.file),
            ("Host", self.host),
            ("Time (UTC)", self.time),
            *((str(k), str(v)) for k, v in self.details.items()),
        ]
        return "\n".join(f"{label}: {value}" for label, value in rows if value) + "\n"

    def as_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["details"] = dict(self.details)
        payload["summary"] = self.subject
        return payload


@dataclass(frozen=True)
class Delivery:
    """Whether one destination accepted an alert; ``detail`` is one line without secrets."""

    destination: str
    accepted: bool
    detail: str


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def email_destination(config: EmailConfig) -> str:
    return f"e-mail to {', '.join(config.to)} via {config.host}:{config.port}"


def webhook_destination(config: WebhookConfig) -> str:
    """The webhook without its path and query, which often hold the token."""
    parts = urlsplit(config.url)
    port = f":{parts.port}" if parts.port else ""
    return f"webhook {parts.scheme}://{parts.hostname}{port}"


def _credential(value: str | None, env_name: str | None, env: Mapping[str, str], what: str) -> str | None:
    if value is not None:
        return value
    if env_name is None:
        return None
    found = env.get(env_name)
    if not found:
        raise LookupError(f"environment variable {env_name} (the SMTP {what}) is not set")
    return found


def send_email(config: EmailConfig, alert: Alert, *, env: Mapping[str, str] | None = None) -> Delivery:
    """Send ``alert`` by SMTP (STARTTLS when configured, login when credentials are given)."""
    destination = email_destination(config)
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message.set_content(alert.text())
    try:
        env = os.environ if env is None else env
        username = _credential(config.username, config.username_env, env, "user name")
        password = _credential(config.password, config.password_env, env, "password")
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if username is not None:
                smtp.login(username, password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        return Delivery(destination, False, f"login refused (SMTP {exc.smtp_code})")
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return Delivery(destination, False, f"refused: SMTP {exc.smtp_code} {' '.join(reply.split())}")
    except (OSError, smtplib.SMTPException, LookupError, ssl.SSLError) as exc:
        return Delivery(destination, False, f"not sent: {_one_line(exc)}")
    if refused:
        return Delivery(destination, False, f"refused for {', '.join(sorted(refused))}")
    return Delivery(destination, True, "accepted")


def post_webhook(config: WebhookConfig, alert: Alert, *, retry_delay: float = WEBHOOK_RETRY_DELAY_S) -> Delivery:
    """POST ``alert`` as JSON; a failed first attempt is retried once. A 2xx reply is accepted."""
    destination = webhook_destination(config)
    body = json.dumps(alert.as_json()).encode()
    detail = ""
    for attempt in (1, 2):
        request = urllib.request.Request(
            config.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "labctl-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=config.timeout) as reply:
                return Delivery(destination, True, f"accepted (HTTP {reply.status})")
        except urllib.error.HTTPError as exc:
            detail = f"refused: HTTP {exc.code} {' '.join(str(exc.reason).split())}"
        except urllib.error.URLError as exc:
            detail = f"not sent: {_one_line(exc.reason if isinstance(exc.reason, BaseException) else exc)}"
        except (OSError, ValueError) as exc:
            detail = f"not sent: {_one_line(exc)}"
        detail = detail.replace(config.url, destination)  # never echo a token in the path
        if attempt == 1:
            time.sleep(retry_delay)
    return Delivery(destination, False, f"{detail} (after 2 attempts)")


class Alerter:
    """Sends alerts to every destination of the lab file's ``[alerts]``; never raises."""

    def __init__(
        self,
        config: AlertsConfig,
        *,
        env: Mapping[str, str] | None = None,
        retry_delay: float = WEBHOOK_RETRY_DELAY_S,
    ) -> None:
        self.config = config
        self.env = env
        self.retry_delay = retry_delay

    def wants(self, event: str) -> bool:
        return event == TEST_EVENT or event in self.config.on

    def send(self, alert: Alert) -> list[Delivery]:
        """Send to every configured destination, whatever ``on`` says (``test-alert``)."""
        email, webhook = self.config.email, self.config.webhook
        senders: list[tuple[str, Callable[[], Delivery]]] = []
        if email is not None:
            senders.append((email_destination(email), lambda: send_email(email, alert, env=self.env)))
        if webhook is not None:
            senders.append(
                (webhook_destination(webhook), lambda: post_webhook(webhook, alert, retry_delay=self.retry_delay))
            )
        return [self._guarded(destination, sender) for destination, sender in senders]

    def notify(self, alert: Alert) -> list[Delivery]:
        """Send ``alert`` if its event is wanted; each destination that did not accept it is
        logged in one line (the queue goes on either way)."""
        if not self.wants(alert.event):
            return []
        deliveries = self.send(alert)
        for delivery in deliveries:
            if not delivery.accepted:
                log.warning("alert %r not delivered to %s: %s", alert.headline, delivery.destination, delivery.detail)
        return deliveries

    def notify_in_background(self, alert: Alert) -> threading.Thread:
        """``notify`` in a daemon thread, for callers that must not wait on a slow server."""
        thread = threading.Thread(target=self.notify, args=(alert,), name="labctl-alert", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _guarded(destination: str, send: Callable[[], Delivery]) -> Delivery:
        try:
            return send()
        except Exception as exc:  # a sender bug must not stop the queue either
            return Delivery(destination, False, f"not sent: {type(exc).__name__}: {_one_line(exc)}")
