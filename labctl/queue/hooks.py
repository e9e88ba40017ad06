"""What a worker plugs in: ETA by dry run, and alerts for what a technician must hear about.

The worker (``labctl.queue.worker``) knows neither the simulator nor SMTP; it takes an
``estimator(job) -> seconds`` and an ``on_event(QueueEvent)`` hook. This module builds both
from the lab file, so ``queue run`` and ``queue worker`` behave the same on every PC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from labctl.alerts import Alert, Alerter
from labctl.config import LabConfig
from labctl.queue.estimate import Estimator
from labctl.queue.jobs import Job, JobState
from labctl.queue.worker import QueueEvent

#: Worker event kinds -> the lab file's alert events (``[alerts] on = [...]``).
_FINISHED_ALERTS = {JobState.FAILED: "failed"}


def job_estimator(lab: LabConfig | None) -> Callable[[Job], float]:
    """``estimator(job)``: the job's expected cell seconds from a dry run on the simulator
    (cached per recipe); raises ValueError with the reason when it cannot be known."""
    estimator = Estimator(lab=lab)

    def expected_seconds(job: Job) -> float:
        estimate = estimator.estimate(job)
        if estimate.duration is None:
            raise ValueError(estimate.reason)
        return estimate.duration

    return expected_seconds


def alert_for(event: QueueEvent) -> Alert | None:
    """The alert a worker event deserves, or None (a completed job is not news)."""
    job = event.job
    if event.kind == "queue_complete":
        return Alert("queue_done", channel=event.channel or "", reason=event.message)
    if job is None:
        return None
    if event.kind == "finished":
        name = _FINISHED_ALERTS.get(job.state)
        return None if name is None else Alert.for_job(name, job)
    if event.kind == "interrupted":
        return Alert.for_job("interrupted", job, reason=event.message)
    if event.kind == "held":
        return dataclasses.replace(Alert.for_job("held", job, reason=event.message), channel=event.channel or "")
    return None


def alert_hook(lab: LabConfig | None) -> Callable[[QueueEvent], None] | None:
    """``on_event`` sending the lab file's alerts in the background (a slow mail server must not
    hold up the worker); None when the lab file configures no destination."""
    if lab is None or (lab.alerts.email is None and lab.alerts.webhook is None):
        return None
    alerter = Alerter(lab.alerts)

    def on_event(event: QueueEvent) -> None:
        alert = alert_for(event)
        if alert is not None:
            alerter.notify_in_background(alert)

    return on_event
