"""How a run ended, and whether a RUNNING run is still alive.

A job ended by an exception marks its runs FAILED, or KILLED when a signal or Ctrl-C ended it
(``end_run``). A job killed without a chance to clean up (SIGKILL, out of memory, a lost node) leaves its
runs RUNNING: the ``host``/``pid`` tags written at job start (``process_tags``) and the job's time limit let
a report list such runs as failed (``stale_run_reason``, ``reported_status``)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


# A RUNNING parent run older than this (or than its own ``max_job_hours`` tag) is taken as dead.
STALE_AFTER_HOURS = 72.0


def end_run(client: MlflowClient, run_id: str, exc: BaseException) -> None:
    """Mark a run ended by ``exc``: KILLED for a signal or Ctrl-C (``KeyboardInterrupt``), FAILED otherwise,
    with the exception as the ``error`` tag. A store that fails now is logged, not raised over ``exc``."""
    status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    try:
        client.set_tag(run_id, "error", f"{type(exc).__name__}: {exc}"[:4000])
        client.set_terminated(run_id, RunStatus.to_string(status))
    except Exception as err:  # noqa: BLE001 - the job is ending with exc; do not hide it
        log.error("could not mark run %s %s: %s", run_id, RunStatus.to_string(status), err)


def process_tags(max_job_hours: float | None = None) -> dict[str, str]:
    """Where the job runs (``host``, ``pid``) and how long it may take: how a report tells a job killed
    without a chance to clean up (SIGKILL, out of memory, a lost node) from one still running."""
    tags = {"host": socket.gethostname(), "pid": str(os.getpid())}
    if max_job_hours:
        tags["max_job_hours"] = f"{max_job_hours:g}"
    return tags


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie, ended but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def stale_run_reason(run, *, now_ms: float | None = None, host: str | None = None) -> str | None:
    """Why a RUNNING run is dead (its process on this host is gone, or it has run longer than its
    ``max_job_hours`` tag, else ``STALE_AFTER_HOURS``); None for a run that may still be running."""
    if run.info.status != "RUNNING":
        return None
    tags = run.data.tags
    host = host or socket.gethostname()
    pid = tags.get("pid", "")
    if tags.get("host") == host and pid.isdigit() and not process_alive(int(pid)):
        return (f"stale RUNNING run: its process {pid} on {host} is gone (ended without cleaning up: "
                f"SIGKILL, out of memory or a crash of the machine)")
    try:
        limit = float(tags.get("max_job_hours") or STALE_AFTER_HOURS)
    except ValueError:
        limit = STALE_AFTER_HOURS
    hours = ((time.time() * 1000 if now_ms is None else now_ms) - run.info.start_time) / 3.6e6
    if hours > limit:
        return f"stale RUNNING run: started {hours:.1f} h ago, longer than a job may take (max_job_hours={limit:g})"
    return None


def reported_status(run, *, now_ms: float | None = None) -> tuple[str, str]:
    """(status, error) of a run as a report lists it: a stale RUNNING run is FAILED, with the reason."""
    error = run.data.tags.get("error", "")
    reason = stale_run_reason(run, now_ms=now_ms)
    if reason is None:
        return run.info.status, error
    return "FAILED", f"{reason}; {error}" if error else reason
