"""A trained model as one file: weights plus everything needed to rebuild it (architecture, classes, inputs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from softsym.models import MODELS, JetModel
from softsym.training.loop import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_features: int
    class_names: tuple[str, ...]
    scalar_names: tuple[str, ...] = ()
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def build(self) -> JetModel:
        return MODELS.build(self.name, n_features=self.n_features, n_classes=len(self.class_names),
                            **self.hyperparameters)


def save_trained_model(path: Path, model: torch.nn.Module, spec: ModelSpec) -> None:
    save_checkpoint({"spec": asdict(spec), "state_dict": model.state_dict()}, path)


def load_trained_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[JetModel, ModelSpec]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trained model {path} does not exist (train.checkpoint expects a model.pt "
                                f"written by the train stage)")
    state = load_checkpoint(path, required=("spec", "state_dict"), map_location=device, advice=(
        "train.checkpoint expects a model.pt written by the train stage: train the model again or point "
        "train.checkpoint at another model.pt"))
    raw = state["spec"]
    spec = ModelSpec(raw["name"], raw["n_features"], tuple(raw["class_names"]), tuple(raw["scalar_names"]),
                     dict(raw["hyperparameters"]))
    model = spec.build().to(device)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, spec
