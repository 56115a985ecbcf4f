"""Running shard tasks, in this process or in a pool of spawned worker processes, with one progress bar."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import queue

from softsym.data.pythia.config import ShardStats, ShardTask
from softsym.data.pythia.events import generate_shard


def run_tasks(tasks: list[ShardTask], *, n_workers: int, progress: bool) -> list[ShardStats]:
    from tqdm.auto import tqdm

    n_jets = sum(t.n_jets for t in tasks)
    with tqdm(total=n_jets, unit="jet", desc="pythia jets", disable=not progress, smoothing=0.1) as bar:
        if n_workers == 1 or len(tasks) == 1:
            return [generate_shard(task, report=bar.update) for task in tasks]
        # spawn, not fork: Pythia and FastJet state must be built inside each worker, and forking a parent
        # that may hold torch/OpenMP threads is unsafe.
        context = multiprocessing.get_context("spawn")
        reports = context.Queue()
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(n_workers, len(tasks)), mp_context=context,
            initializer=_init_worker, initargs=(reports,),
        ) as pool:
            futures = [pool.submit(_worker_generate_shard, task) for task in tasks]
            try:
                pending = set(futures)
                while pending:
                    done, pending = concurrent.futures.wait(pending, timeout=0.2,
                                                            return_when=concurrent.futures.FIRST_COMPLETED)
                    _drain(reports, bar)
                    for future in done:
                        future.result()  # re-raise a worker's error here
                _drain(reports, bar)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            return [future.result() for future in futures]


def _drain(reports, bar) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            bar.update(reports.get_nowait())


_worker_reports = None


def _init_worker(reports) -> None:
    global _worker_reports
    _worker_reports = reports


def _worker_generate_shard(task: ShardTask) -> ShardStats:
    return generate_shard(task, report=_worker_reports.put)
