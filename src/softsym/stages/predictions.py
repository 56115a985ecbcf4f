"""Per-jet predictions of a stage: ``predictions/<name>.<format>`` in the job's output directory, logged as
artifacts (``predictions/``) of the stage run that writes them (the train stage: the test split and each
evaluation set)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from softsym.data.jets import JetArrays, JetBatch
from softsym.data.splits import JetSplits, StreamingSplits
from softsym.stages.context import StageContext
from softsym.training.predictions import batch_observables, jet_observables, prediction_columns, write_predictions

log = logging.getLogger(__name__)


def split_jets(dataset: JetSplits, split: str, *, batch_size: int = 4096) -> JetArrays | Iterable[JetBatch]:
    """The jets of ``split`` in prediction order: in memory (observers included), or as the streamed batches."""
    if isinstance(dataset, StreamingSplits):
        return dataset.loader(split, batch_size=batch_size)
    return dataset.arrays(split)


def save_predictions(ctx: StageContext, name: str, labels: np.ndarray, probs: np.ndarray,
                     jets: JetArrays | Iterable[JetBatch], class_names) -> Path | None:
    """Write the predictions ``(labels, probs)`` of the jets ``jets`` (in the same order) as
    ``predictions/<name>`` and log them; None when ``predictions.format=none``."""
    fmt = str(ctx.cfg.predictions.format)
    if fmt == "none":
        return None
    if isinstance(jets, JetArrays):
        if not np.array_equal(jets.labels, labels):
            raise ValueError(f"predictions {name}: the labels do not follow the jets' order")
        observables = jet_observables(jets)
    else:
        if ctx.cfg.data.get("observers"):
            log.warning("predictions %s: data.observers are not written for streamed data (data.stream); the jet "
                        "observables are computed from the constituents", name)
        observables = batch_observables(jets)
    columns = prediction_columns(labels, probs, class_names, observables)
    path = write_predictions(ctx.run_dir / "predictions" / name, columns, fmt)
    ctx.tracker.log_artifact(path, "predictions")
    log.info("predictions %s: %d jets -> %s", name, len(labels), path)
    return path
