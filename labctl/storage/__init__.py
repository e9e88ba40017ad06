"""The HDF5 run file: one file per run, written in SWMR mode while the run
goes (so it can be watched, and survives a crash up to the last flush), read
back by ``open_run``. The layout is described in ``labctl.storage.layout``.
"""

from labctl.storage.finalize import finalize_file
from labctl.storage.guard import RunFileError
from labctl.storage.reader import (
    Heartbeat,
    RunFile,
    StepRecord,
    describe_run,
    effective_status,
    format_description,
    open_run,
)
from labctl.storage.recover import Recovery, recover_file, recover_run
from labctl.storage.writer import RunFileWriter

__all__ = [
    "Heartbeat",
    "Recovery",
    "RunFile",
    "RunFileError",
    "RunFileWriter",
    "StepRecord",
    "describe_run",
    "effective_status",
    "finalize_file",
    "format_description",
    "open_run",
    "recover_file",
    "recover_run",
]
