"""Writing shards: one ROOT file per shard in the JetClass schema, and the cache's provenance json.

Every file is written to a temporary name beside it (``softsym.atomic``) and renamed into place, so a file
with the final name is always complete. The temporary is exclusively locked while it is written: the OS
releases the lock when the writer dies, which tells a later run that the temporary is stale and may go,
while one still locked belongs to a live writer and is kept.

Each shard is also made under a lock of its own (``shard_lock``: a hidden ``.<shard>.lock`` file beside it,
removed by its holder), so that two generations sharing a cache never make the same shard twice: the second
waits for the first and reuses its shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np

from softsym.atomic import atomic_path
from softsym.data.pythia.config import ShardTask
from softsym.data.pythia.detector import KIND_BRANCHES

log = logging.getLogger(__name__)

_LABELS = {"qcd": (1.0, 0), "ttbar": (0.0, 1)}  # (label_QCD float32, label_Tbqq int32), as in JetClass
# Temporaries are hidden files with ".tmp" in their name: softsym.atomic's ".<name>.tmp-<pid>-<hex>", and
# ".<name>.<hex>.tmp" as earlier versions named them (left in caches by killed runs of those versions).
_TEMPORARY_GLOB = ".*.tmp*"
_LOCK_GLOB = ".*.lock"

_JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass",
                 "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")
_FLOAT_PARTICLE_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi",
                            "part_charge")


def concatenate_blocks(blocks: list[dict[str, np.ndarray]], n_jets: int) -> dict[str, np.ndarray]:
    """The first ``n_jets`` jets of the blocks, in generation order."""
    joined = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    n_particles = int(joined["jet_nparticles"][:n_jets].sum())
    return {name: values[:n_jets] if name.startswith("jet_") else values[:n_particles]
            for name, values in joined.items()}


def write_shard(task: ShardTask, arrays: dict[str, np.ndarray]) -> None:
    """One TTree ``tree`` in the JetClass schema: jagged ``part_*`` (one counter ``npart``), ``jet_*``
    float32, labels ``label_QCD`` (float32) and ``label_Tbqq`` (int32) as in JetClass."""
    import uproot

    n_jets = len(arrays["jet_pt"])
    particle_fields = {name.removeprefix("part_"): arrays[name].astype(np.float32)
                       for name in _FLOAT_PARTICLE_BRANCHES}
    particle_fields |= {name.removeprefix("part_"): arrays[name].astype(np.int32) for name in KIND_BRANCHES}
    label_qcd, label_tbqq = _LABELS[task.process]
    branches = {
        "part": ak.unflatten(ak.zip(particle_fields), arrays["jet_nparticles"]),
        **{name: arrays[name].astype(np.float32) for name in _JET_BRANCHES},
        "label_QCD": np.full(n_jets, label_qcd, np.float32),
        "label_Tbqq": np.full(n_jets, label_tbqq, np.int32),
    }
    with locked_temporary(task.path) as tmp:
        with uproot.recreate(tmp, compression=uproot.LZ4(1)) as file:
            file.mktree("tree", branches, title=f"softsym pythia {task.process} shard {task.index}")


@contextlib.contextmanager
def locked_temporary(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``, exclusively locked; renamed to ``path`` when the block succeeds.

    The lock is held on our own handle of the same file (uproot opens the path itself, in place) until after
    the rename; the temporary is removed on any failure (``softsym.atomic.atomic_path``).
    """
    lock = None
    try:
        with atomic_path(path) as tmp:
            lock = open(tmp, "xb")  # closed in the finally below, after the rename
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield tmp
            os.fsync(lock.fileno())
    finally:
        if lock is not None:
            lock.close()


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def shard_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the exclusive lock of shard ``path``: yields True once held, or False at once when another process
    holds it and ``wait`` is False.

    The holder removes the lock file before it lets go, so a finished cache holds no lock files; a process
    that was waiting on the removed file finds that the file it locked is no longer the one at the path, and
    locks the new one (the usual flock + unlink protocol). The OS drops the lock of a process that dies.
    """
    target = lock_path(path)
    while True:
        handle = open(target, "ab")  # noqa: SIM115 - held across the yield, closed below
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            yield False
            return
        except BaseException:
            handle.close()
            raise
        if _is_current(handle, target):
            break
        handle.close()
    try:
        yield True
    finally:
        target.unlink(missing_ok=True)  # still held: whoever locks the old file next sees it is gone
        handle.close()


def _is_current(handle, target: Path) -> bool:
    """Whether the open ``handle`` is the file now at ``target`` (not one removed since it was opened)."""
    try:
        current = os.stat(target)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def remove_stale_temporaries(cache_dir: Path) -> None:
    """Delete temporaries and shard locks left by killed writers (their lock is gone); leave those of live
    writers."""
    for lock in cache_dir.glob(_LOCK_GLOB):
        try:
            with open(lock, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _is_current(handle, lock):
                    lock.unlink(missing_ok=True)
        except BlockingIOError:
            continue  # a live generation holds it
        except (FileNotFoundError, PermissionError):
            continue
    for tmp in cache_dir.glob(_TEMPORARY_GLOB):
        try:
            with open(tmp, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                tmp.unlink(missing_ok=True)
                log.info("pythia: removed %s, left by an interrupted run", tmp.name)
        except BlockingIOError:
            continue  # another process is writing it right now
        except (FileNotFoundError, PermissionError):
            continue  # gone meanwhile, or a read-only cache that is not ours to clean


def write_json_atomically(path: Path, content: dict) -> None:
    with locked_temporary(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")
