"""What the terminal shows of logging, warnings and thread crashes.

By default one line each: the reason, never a traceback (a failed run's
traceback is kept in its run file). ``labctl --debug`` shows everything.
"""

from __future__ import annotations

import logging
import sys
import threading

_state = {"debug": False}


class OneLineFormatter(logging.Formatter):
    """``level: message`` on one line; exception and stack info left out."""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        return f"{record.levelname.lower()}: {message}"


def _one_line_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    text = " ".join(str(args.exc_value).split())
    print(f"error in {name}: {args.exc_type.__name__}: {text}", file=sys.stderr)


def configure_logging(debug: bool) -> None:
    """Route logging and Python warnings to stderr: one line each, or in
    full with tracebacks and DEBUG records when ``debug``."""
    _state["debug"] = debug
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_labctl", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._labctl = True  # type: ignore[attr-defined]
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
        threading.excepthook = threading.__excepthook__
    else:
        handler.setFormatter(OneLineFormatter())
        root.setLevel(logging.WARNING)
        threading.excepthook = _one_line_thread_excepthook
    root.addHandler(handler)
    logging.captureWarnings(True)  # warnings become one-line log records


def debug_enabled() -> bool:
    return _state["debug"]
