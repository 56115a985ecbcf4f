"""Running shard tasks, in this process or in a pool of spawned worker processes, with one progress bar.

Each shard is produced under its own lock (``shards.shard_lock``): a shard that another generation of the
same config is making right now is put off until the other shards are done, then waited for and reused, so
two jobs that share a cache make every shard once.

Shutting down: a SIGTERM to this process (when nobody else handles it) or any exception while the pool runs
terminates the workers; a worker that gets SIGTERM mid-shard unwinds, removing its temporary file and lock.
Workers also die with their parent: on Linux the kernel sends them SIGTERM when it dies
(``PR_SET_PDEATHSIG``), and everywhere a watchdog thread and a check between event batches notice that the
parent is gone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from softsym.data.pythia.config import ShardStats, ShardTask
from softsym.data.pythia.events import generate_shard
from softsym.data.pythia.shards import shard_lock

GENERATED, REUSED, BUSY = "generated", "reused", "busy"
_WATCH_SECONDS = 0.5   # how often a worker checks that its parent is alive
_GRACE_SECONDS = 10.0  # how long a terminated worker may take to unwind before it is killed
_PR_SET_PDEATHSIG = 1


def produce_shard(task: ShardTask, report: Callable[[int], None], *, wait: bool) -> tuple[str, ShardStats | None]:
    """Generate ``task``'s shard under its lock: (GENERATED, stats), (REUSED, None) when another process made
    it meanwhile, or (BUSY, None) when another process is making it and ``wait`` is False."""
    with shard_lock(task.path, wait=wait) as held:
        if not held:
            return BUSY, None
        if task.path.exists():
            return REUSED, None
        return GENERATED, generate_shard(task, report=report)


def run_tasks(tasks: list[ShardTask], *, n_workers: int, progress: bool) -> list[ShardStats | None]:
    """Produce every task's shard: its stats, or None where another generation made it (reused)."""
    from tqdm.auto import tqdm

    n_jets = sum(t.n_jets for t in tasks)
    with tqdm(total=n_jets, unit="jet", desc="pythia jets", disable=not progress, smoothing=0.1) as bar, \
            _sigterm_raises():
        if n_workers == 1 or len(tasks) == 1:
            return _run_here(tasks, bar)
        return _run_pool(tasks, min(n_workers, len(tasks)), bar)


def _run_here(tasks: list[ShardTask], bar) -> list[ShardStats | None]:
    outcomes: dict[int, tuple[str, ShardStats | None]] = {}
    for wait in (False, True):  # shards another process is making come last, waited for
        for i, task in enumerate(tasks):
            if outcomes.get(i, (BUSY,))[0] == BUSY:
                outcomes[i] = produce_shard(task, bar.update, wait=wait)
                if outcomes[i][0] == REUSED:
                    bar.update(task.n_jets)
    return [outcomes[i][1] for i in range(len(tasks))]


def _run_pool(tasks: list[ShardTask], n_workers: int, bar) -> list[ShardStats | None]:
    # spawn, not fork: Pythia and FastJet state must be built inside each worker, and forking a parent
    # that may hold torch/OpenMP threads is unsafe.
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=n_workers, mp_context=context,
                                                  initializer=_init_worker, initargs=(reports, os.getpid()))
    try:
        # a busy shard goes back to the end of the queue, waited for: the free ones are made first
        futures = {pool.submit(_worker_produce_shard, task, False): i for i, task in enumerate(tasks)}
        results: dict[int, ShardStats | None] = {}
        while futures:
            done, _ = concurrent.futures.wait(futures, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
            _drain(reports, bar)
            for future in done:
                i = futures.pop(future)
                status, stats = future.result()  # re-raises a worker's error here
                if status == BUSY:
                    futures[pool.submit(_worker_produce_shard, tasks[i], True)] = i
                    continue
                if status == REUSED:
                    bar.update(tasks[i].n_jets)
                results[i] = stats
        _drain(reports, bar)
    except BaseException:
        _terminate(pool)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(tasks))]


def _terminate(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stop the pool now: SIGTERM to every worker (each removes its temporary), SIGKILL to those still alive
    after the grace period."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + _GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def _drain(reports, bar) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            bar.update(reports.get_nowait())


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While generating, SIGTERM raises SystemExit in the main thread (so the pool is shut down and temporary
    files go) unless the program handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --- inside a worker ---

class _Terminated(BaseException):
    """SIGTERM (or the parent's death) while a shard is being made: unwind, then exit."""


_worker_reports = None
_parent_pid: int | None = None
_busy = False


def _init_worker(reports, parent_pid: int) -> None:
    global _worker_reports, _parent_pid
    _worker_reports, _parent_pid = reports, parent_pid
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # the kernel sends SIGTERM to this worker when the parent dies
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before this worker could ask
        os._exit(128 + signal.SIGTERM)
    threading.Thread(target=_watch_parent, name="softsym-parent-watchdog", daemon=True).start()


def _on_sigterm(signum, frame) -> None:
    if _busy:
        raise _Terminated()
    os._exit(128 + signum)  # idle: nothing to clean up


def _watch_parent() -> None:
    while os.getppid() == _parent_pid:
        time.sleep(_WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # unwinds the main thread between two Python steps
    time.sleep(_GRACE_SECONDS)  # stuck in C++ all this time: leave the temporary to the next run's cleanup
    os._exit(128 + signal.SIGTERM)


def _report(n: int) -> None:
    """Tell the parent of new jets, between event batches; and stop there if the parent is gone."""
    _worker_reports.put(n)
    if os.getppid() != _parent_pid:
        raise _Terminated()


def _worker_produce_shard(task: ShardTask, wait: bool) -> tuple[str, ShardStats | None]:
    global _busy
    _busy = True
    try:
        return produce_shard(task, _report, wait=wait)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)  # the temporary and the lock were removed while unwinding
    finally:
        _busy = False
