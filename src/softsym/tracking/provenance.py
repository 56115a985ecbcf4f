"""Where a job's results come from, recorded on its parent run: the source commit and the input files."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parents[2]
MAX_TAG_CHARS = 5000  # MLflow keeps tag values up to 8000 characters; the full list is an artifact


@cache
def source_commit(source_dir: Path = SOURCE_DIR) -> dict[str, str]:
    """``mlflow.source.git.commit`` (MLflow's own tag, shown on the run page) and ``source_dirty`` (uncommitted
    changes), from ``git`` in the package's checkout; empty when it is not a git checkout or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source_dir), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "mlflow.source.name": str(source_dir), "mlflow.source.type": "LOCAL",
            "source_dirty": str(dirty).lower()}


def input_files(dataset) -> list[str]:
    """The files a job's splits were read from (in memory or streamed)."""
    summary = getattr(dataset, "summary", None)
    if summary is not None:
        return list(summary.files)
    plan = getattr(dataset, "plan", None)
    return [f.plan.path for f in plan.files] if plan is not None else []


def input_tags(files: list[str]) -> dict[str, str]:
    """``input_files`` (comma-separated, shortened past ``MAX_TAG_CHARS``) and ``input_n_files``."""
    listing = ",".join(files)
    if len(listing) > MAX_TAG_CHARS:
        listing = listing[:MAX_TAG_CHARS] + f"... ({len(files)} files: see inputs.txt)"
    return {"input_files": listing, "input_n_files": str(len(files))}
