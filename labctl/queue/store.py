"""The job store's interface: what a runner, a multi-PC worker, the CLI and a GUI may do.

Two backends implement it (SQLite embedded, PostgreSQL for several PCs) and one test suite
runs against both. Every method that changes something is one transaction: it happens
entirely or not at all, and every watcher hears about it once it is committed.

Who calls what:

- CLI / GUI: ``add``, ``add_batch``, ``get``, ``list_jobs``, ``move``, ``cancel``, ``pause``,
  ``resume``, ``retry``, ``hold``, ``ack``, ``holds``, ``clear_finished``, ``watch``.
- Worker (one per instrument PC): ``claim_next`` for the channels of its lab file, then
  ``heartbeat`` (which hands back a pending pause/resume/cancel request), ``report_paused`` /
  ``report_resumed`` once the cell is on hold / running again, and ``finish``.
- Supervisor / a restarted worker: ``recover_worker`` (its running jobs become
  ``interrupted`` and their channels are held: a cell is never re-run behind anyone's back).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

from labctl.queue.jobs import Change, ChannelHold, Job, JobSpec, JobState, Request

#: Decides whether a channel can run an "any channel" job: ``fits(channel, job)``.
ChannelFit = Callable[[str, Job], bool]


def fits_protocols(capabilities: Mapping[str, Collection[str]]) -> ChannelFit:
    """A ChannelFit from each channel's set of protocol names it can run."""

    def fits(channel: str, job: Job) -> bool:
        return job.protocol in capabilities.get(channel, ())

    return fits


class Watcher(ABC):
    """Change notifications from one store, for ``queue list --follow`` and GUIs."""

    @abstractmethod
    def wait(self, timeout: float) -> Change | None:
        """Block until a mutation committed since the last call (or since the watcher was made)
        is visible, or ``timeout`` seconds passed (then None)."""

    @abstractmethod
    def close(self) -> None: ...

    def changes(self, idle_timeout: float) -> Iterator[Change]:
        """Yield changes as they come; stop after ``idle_timeout`` seconds without one
        (``queue list --follow`` loops over this and redraws)."""
        while (change := self.wait(idle_timeout)) is not None:
            yield change

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobStore(ABC):
    """Persistent jobs, channel holds and requests. Times are epoch seconds (``now``
    defaults to the wall clock; tests pass their own)."""

    # ---- adding and reading -------------------------------------------------------------

    @abstractmethod
    def add(self, spec: JobSpec, *, now: float | None = None) -> Job:
        """Queue one job at the tail of its channel's queue."""

    @abstractmethod
    def add_batch(self, specs: Sequence[JobSpec], *, now: float | None = None) -> list[Job]:
        """Queue several jobs atomically: all of them, or (on any bad spec) none. ``after`` may
        name other jobs of the batch by their ``key``."""

    @abstractmethod
    def get(self, job_id: int) -> Job:
        """The job, or JobNotFound."""

    @abstractmethod
    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        channel: str | None = None,
        worker: str | None = None,
    ) -> list[Job]:
        """Jobs in queue order (position, then id). ``channel`` matches where a job runs or,
        before it is claimed, where it was asked to run."""

    @abstractmethod
    def holds(self) -> list[ChannelHold]:
        """Channels that take no jobs until acknowledged."""

    # ---- the worker's side ---------------------------------------------------------------

    @abstractmethod
    def claim_next(
        self,
        worker: str,
        channels: Iterable[str],
        *,
        fits: ChannelFit | None = None,
        now: float | None = None,
    ) -> Job | None:
        """Claim the next runnable job for one of ``channels`` and mark it running for ``worker``.

        A channel is free when it is not held and has no active job. Its queue is strict FIFO:
        only its first queued job may start, and it waits (together with the channel) for its
        not-before time and its dependencies. A free channel with no queued job of its own takes
        the oldest "any channel" job that ``fits`` it (all fit when ``fits`` is None). Among
        several free channels, the job earliest in queue order wins. Returns None when nothing
        can start now."""

    @abstractmethod
    def heartbeat(
        self,
        job_id: int,
        worker: str,
        *,
        fraction: float | None = None,
        step: str | None = None,
        eta: float | None = None,
        now: float | None = None,
    ) -> Request | None:
        """Record progress and liveness; returns the request waiting for the worker, if any."""

    @abstractmethod
    def attach_file(self, job_id: int, worker: str, file: str) -> Job:
        """Record the run file of an active job as soon as it is chosen, so that a job whose
        process dies still points at its (interrupted) file."""

    @abstractmethod
    def report_paused(self, job_id: int, worker: str, *, now: float | None = None) -> Job:
        """The worker has put the cell on hold (pausing → paused)."""

    @abstractmethod
    def report_resumed(self, job_id: int, worker: str, *, now: float | None = None) -> Job:
        """The worker has resumed the cell (paused/pausing → running)."""

    @abstractmethod
    def finish(
        self,
        job_id: int,
        worker: str,
        state: JobState,
        *,
        results: Mapping[str, Any] | None = None,
        file: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Job:
        """End an active job (completed, failed, aborted, cancelled) and apply its on-failure
        policy when it failed: ``stop`` holds the channel, ``continue`` does nothing, ``retry``
        queues a linked copy first in the channel's queue (once: a failed retry continues).
        Jobs that depended on a job that did not complete are cancelled with the reason."""

    @abstractmethod
    def silent_workers(self, *, since: float) -> list[str]:
        """Workers holding an active job whose last heartbeat is older than ``since``: what a
        supervisor checks (with its own knowledge of whether the process is gone) before
        ``recover_worker``. Silence alone never moves a job: a slow step is not a dead worker."""

    @abstractmethod
    def recover_worker(self, worker: str, *, reason: str = "", now: float | None = None) -> list[Job]:
        """The worker died: its active jobs become interrupted (never re-run) and their channels
        are held. Returns the interrupted jobs."""

    # ---- the technician's side -------------------------------------------------------------

    @abstractmethod
    def cancel(self, job_id: int, *, now: float | None = None) -> Job:
        """A queued job is cancelled at once; an active one gets a cancel request."""

    @abstractmethod
    def pause(self, job_id: int, *, now: float | None = None) -> Job:
        """Ask the worker to hold the cell (running → pausing)."""

    @abstractmethod
    def resume(self, job_id: int, *, now: float | None = None) -> Job:
        """Ask the worker to continue a paused (or pausing) job."""

    @abstractmethod
    def move(self, job_ids: Sequence[int], *, before: int | None = None) -> list[Job]:
        """Reorder queued jobs of one channel queue: put ``job_ids`` (in that order) just before
        job ``before``, or at the tail when ``before`` is None. Returns that queue in new order."""

    @abstractmethod
    def retry(self, job_id: int, *, now: float | None = None) -> Job:
        """Queue a new attempt of a job that did not complete, linked to it, first in the queue
        of the channel it ran on (or was asked for)."""

    @abstractmethod
    def hold(self, channel: str, reason: str, *, job_id: int | None = None, now: float | None = None) -> None:
        """Stop a channel taking jobs until ``ack``."""

    @abstractmethod
    def ack(self, channel: str) -> ChannelHold:
        """A technician has looked at the channel: it takes jobs again."""

    @abstractmethod
    def clear_finished(self, *, before: float | None = None) -> int:
        """Delete finished jobs (finished before ``before`` if given). Returns how many."""

    @abstractmethod
    def watch(self) -> Watcher:
        """A watcher of changes committed after this call."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
