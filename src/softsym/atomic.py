"""Atomic writes: write to a temporary name beside the target, rename on success, remove it on any failure.

A killed job never leaves a half-written file under the real name, and a failed write (a full disk, a bad
object) leaves no temporary holding the space it took."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class AtomicWriteError(OSError):
    """A write that failed, naming the target path and the cause (e.g. ENOSPC)."""


def temporary_name(path: Path) -> Path:
    """The hidden temporary beside ``path`` (same filesystem, so the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, AtomicWriteError):
            cause = errno.errorcode.get(exc.errno, "") if exc.errno else ""
            raise AtomicWriteError(exc.errno or 0, f"could not write {path}: {cause + ': ' if cause else ''}"
                                   f"{exc.strerror or exc}") from exc
        if _disk_full(exc):
            raise AtomicWriteError(errno.ENOSPC, f"could not write {path}: ENOSPC: no space left on the "
                                   f"device ({exc})") from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    """torch's zip writer reports a full disk as a RuntimeError ("unexpected pos ..."); look for the cause."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(exc, RuntimeError) and "unexpected pos" in str(exc)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` then rename onto ``path``: the one atomic writer for checkpoints, shards and reports."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))
