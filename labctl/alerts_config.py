"""The lab file's ``[alerts]`` section: who is told when the night's queue needs a person.

Example::

    [alerts]
    on = ["failed", "interrupted", "held", "queue_done"]      # the default: all of them
    webhook = { url = "https://chat.example.org/hooks/…", timeout = 10 }   # seconds, retried once

    [alerts.email]
    host = "smtp.example.org"
    port = 587                                                # default 587 with starttls, else 25
    starttls = true
    from = "labctl@example.org"
    to = ["night@example.org"]
    username_env = "LABCTL_SMTP_USER"                         # names of environment variables
    password_env = "LABCTL_SMTP_PASSWORD"

Credentials are best given as the *names* of environment variables (``username_env``,
``password_env``), so the lab file can be shared; ``username``/``password`` in the file also
work. Validated at load like the rest of the lab file (every key known, every value of its
type, one-line errors naming the key), because an alert that silently goes nowhere is found
only on the morning after the night it was needed.

Core module: it knows nothing of the lab file's other sections; ``labctl.config`` calls
``parse_alerts`` with its key-path helper.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

#: What can raise an alert (``on = [...]``).
ALERT_EVENTS = ("failed", "interrupted", "held", "queue_done")
#: Sent by ``queue test-alert``, whatever ``on`` says.
TEST_EVENT = "test"

DEFAULT_TIMEOUT_S = 10.0
TIMEOUT_RANGE = (0.1, 300.0)

_ALERTS_KEYS = ("email", "on", "webhook")
_EMAIL_KEYS = (
    "from",
    "host",
    "password",
    "password_env",
    "port",
    "starttls",
    "timeout",
    "to",
    "username",
    "username_env",
)
_WEBHOOK_KEYS = ("timeout", "url")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]+")


class Where(Protocol):
    """A key path in the lab file that makes one-line errors (``labctl.config._Where``)."""

    def __truediv__(self, key: str) -> Where: ...

    def error(self, problem: str) -> ValueError: ...


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class WebhookConfig:
    url: str = field(repr=False)  # may carry a token in its path
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class AlertsConfig:
    email: EmailConfig | None = None
    webhook: WebhookConfig | None = None
    on: frozenset[str] = frozenset(ALERT_EVENTS)

    @property
    def configured(self) -> bool:
        return self.email is not None or self.webhook is not None


def _kind(value: Any) -> str:
    for kind, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _table(where: Where, value: Any, known: tuple[str, ...], example: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected a table like {example}, got {_kind(value)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise (where / unknown[0]).error(f"unknown key (allowed: {', '.join(sorted(known))})")
    return value


def _text(where: Where, value: Any, rule: re.Pattern[str] | None, allowed: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = repr(value) if isinstance(value, str) else _kind(value)
        raise where.error(f"expected {allowed}, got {got}")
    if rule is not None and not rule.fullmatch(value.strip()):
        raise where.error(f"{value!r} is not allowed (allowed: {allowed})")
    return value.strip()


def _required(where: Where, table: Mapping[str, Any], key: str, allowed: str) -> Any:
    if key not in table:
        raise (where / key).error(f"missing (expected {allowed})")
    return table[key]


def _timeout(where: Where, value: Any) -> float:
    low, high = TIMEOUT_RANGE
    allowed = f"seconds from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(f"expected {allowed}, got {value!r}")
    if not low <= value <= high:
        raise where.error(f"{value!r} is out of range (allowed: {allowed})")
    return float(value)


def _email(where: Where, value: Any) -> EmailConfig:
    table = _table(where, value, _EMAIL_KEYS, '{ host = "smtp.example.org", from = "…", to = ["…"] }')
    host = _text(where / "host", _required(where, table, "host", "the SMTP server's name"), _HOST, "a host name")
    starttls = table.get("starttls", False)
    if not isinstance(starttls, bool):
        raise (where / "starttls").error(f"expected true or false, got {_kind(starttls)}")
    port = table.get("port", 587 if starttls else 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise (where / "port").error(f"expected an integer from 1 to 65535, got {port!r}")
    address = "an e-mail address like night@example.org"
    sender = _text(where / "from", _required(where, table, "from", address), _ADDRESS, address)
    to_raw = _required(where, table, "to", f"an array of {address}es")
    if isinstance(to_raw, str):
        to_raw = [to_raw]
    if not isinstance(to_raw, list) or not to_raw:
        raise (where / "to").error(f"expected a non-empty array of e-mail addresses, got {_kind(to_raw)}")
    to = tuple(_text(where / "to", item, _ADDRESS, address) for item in to_raw)
    creds: dict[str, str | None] = {}
    for key in ("username", "password"):
        creds[key] = None if key not in table else _text(where / key, table[key], None, "a non-empty string")
        env_key = f"{key}_env"
        creds[env_key] = (
            None
            if env_key not in table
            else _text(where / env_key, table[env_key], _ENV_NAME, "an environment variable name like LABCTL_SMTP_USER")
        )
        if creds[key] is not None and creds[env_key] is not None:
            raise (where / env_key).error(f"give either {key} or {env_key}, not both")
    has_user = creds["username"] is not None or creds["username_env"] is not None
    has_password = creds["password"] is not None or creds["password_env"] is not None
    if has_password and not has_user:
        raise (where / "username_env").error("missing: a password needs a username (username or username_env)")
    return EmailConfig(
        host=host,
        port=port,
        sender=sender,
        to=to,
        starttls=starttls,
        username=creds["username"],
        password=creds["password"],
        username_env=creds["username_env"],
        password_env=creds["password_env"],
        timeout=_timeout(where / "timeout", table.get("timeout", DEFAULT_TIMEOUT_S)),
    )


def _webhook(where: Where, value: Any) -> WebhookConfig:
    table = _table(where, value, _WEBHOOK_KEYS, '{ url = "https://…", timeout = 10 }')
    allowed = "an http:// or https:// URL"
    url = _text(where / "url", _required(where, table, "url", allowed), None, allowed)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise (where / "url").error(f"not allowed (allowed: {allowed})")
    return WebhookConfig(url=url, timeout=_timeout(where / "timeout", table.get("timeout", DEFAULT_TIMEOUT_S)))


def _on(where: Where, value: Any) -> frozenset[str]:
    allowed = ", ".join(ALERT_EVENTS)
    if not isinstance(value, list):
        raise where.error(f"expected an array of events ({allowed}), got {_kind(value)}")
    for item in value:
        if item not in ALERT_EVENTS:
            raise where.error(f"{item!r} is not an alert event (allowed: {allowed})")
    return frozenset(value)


def parse_alerts(where: Where, value: Any) -> AlertsConfig:
    """The validated ``[alerts]`` table (absent: no alerts)."""
    if value is None:
        return AlertsConfig()
    table = _table(where, value, _ALERTS_KEYS, "[alerts] with email, webhook and on")
    return AlertsConfig(
        email=None if "email" not in table else _email(where / "email", table["email"]),
        webhook=None if "webhook" not in table else _webhook(where / "webhook", table["webhook"]),
        on=_on(where / "on", table["on"]) if "on" in table else frozenset(ALERT_EVENTS),
    )
