"""Ctrl-C and SIGTERM stop a long-running command, whatever its parent did to them.

A process started in the background by a non-interactive shell (``cmd &`` in a script,
``nohup``, some service managers) inherits SIGINT *ignored*, and Python keeps an inherited
ignore: such a ``labctl sim-server`` or ``queue list --follow`` could then only be killed.
Commands that wait for the user to stop them install their handlers explicitly instead.
(Commands that drive a cell use ``runner.AbortOnSignals``: there a signal requests a safe abort.)
"""

from __future__ import annotations

import signal


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (even if inherited ignored)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_keyboard_interrupt)
