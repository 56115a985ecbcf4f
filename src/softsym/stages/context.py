"""What stages share within one job: the config, the tracker, and the outputs of earlier stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from softsym.progress import progress_mode
from softsym.stages.options import load_dataset
from softsym.tracking import Tracker
from softsym.training import load_trained_model, resolve_device
from softsym.training.distributed import local_device


def progress_enabled(setting: Any) -> bool:
    """Whether this job shows progress (``softsym.progress.progress_mode``: ``auto`` is off under CI)."""
    return progress_mode(setting) != "off"


def job_device(cfg: DictConfig) -> torch.device:
    """The device of this process: ``train.device``, one GPU per process under DDP."""
    device = resolve_device(cfg.train.device)
    return local_device(device) if cfg.train.strategy == "ddp" else device


@dataclass
class StageContext:
    cfg: DictConfig
    tracker: Tracker
    run_dir: Path
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> bool:
        return progress_enabled(self.cfg.progress)

    @property
    def device(self) -> torch.device:
        return job_device(self.cfg)

    def training_key(self) -> str:
        """A stable name for this training configuration: data, model, penalty, train settings, seed."""
        keep = {k: OmegaConf.to_container(self.cfg[k], resolve=True) for k in ("data", "model", "penalty", "train")}
        for volatile in ("resume", "checkpoint", "device", "eval_batch_size"):
            keep["train"].pop(volatile, None)
        keep["seed"] = self.cfg.seed
        digest = hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.cfg.model.name}-{self.cfg.penalty.name}-s{self.cfg.seed}-{digest}"

    def dataset(self):
        """The data stage's splits; loaded from the configured source if this job did not run the stage."""
        if "dataset" not in self.outputs:
            self.outputs["dataset"] = load_dataset(self.cfg, progress=self.progress)
        return self.outputs["dataset"]

    def trained_model(self):
        """(model, spec) from this job's train stage, or from ``train.checkpoint``."""
        if "model" not in self.outputs:
            if not self.cfg.train.checkpoint:
                raise ValueError("this stage needs a trained model: run the train stage in the same job "
                                 "(stages=[data,train,...]) or set train.checkpoint=<path to model.pt>")
            self.outputs["model"] = load_trained_model(self.cfg.train.checkpoint, self.device)
        return self.outputs["model"]
