"""The Hydra app ``softsym``: runs the configured stages in order, one MLflow parent run per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"

OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
log = logging.getLogger("softsym")


def stage_plan(cfg: DictConfig) -> list[str]:
    """The configured stages, checked against ``STAGES``, in pipeline order."""
    from softsym.stages import STAGE_ORDER, STAGES

    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages={stages}: unknown {unknown}; expected a subset of {list(STAGE_ORDER)}")
    return sorted(stages, key=STAGE_ORDER.index)


def job_tags(cfg: DictConfig, stages: list[str]) -> dict[str, str]:
    tags = {"penalty": cfg.penalty.name, "lambda": str(cfg.penalty["lambda"]), "model": cfg.model.name,
            "seed": str(cfg.seed), "data": cfg.data.source, "stages": ",".join(stages)}
    if "form" in cfg.penalty:  # symmetry penalties (and the unpenalised baseline) have a form; gc has none
        tags["form"] = cfg.penalty.form
    return tags


def run_job(cfg: DictConfig, run_dir: Path) -> None:
    from softsym.stages import STAGES
    from softsym.stages.context import StageContext, job_device
    from softsym.tracking import MlflowTracker, NullTracker, Tracker, flatten
    from softsym.training.distributed import init_distributed

    stages = stage_plan(cfg)
    rank = 0
    if cfg.train.strategy == "ddp":
        rank, _ = init_distributed(job_device(cfg))
        if rank != 0:  # the other ranks help train; analyses after training run once, on rank 0
            stages = [s for s in stages if s in ("data", "train")]
    elif cfg.train.strategy != "single":
        raise ValueError(f"train.strategy={cfg.train.strategy!r}: expected 'single' or 'ddp'")
    tracker: Tracker = NullTracker() if rank else MlflowTracker(
        cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, connect_timeout=cfg.mlflow.connect_timeout,
        spool_dir=run_dir)
    ctx = StageContext(cfg=cfg, tracker=tracker, run_dir=run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.model.name}-{cfg.penalty.name}-l{cfg.penalty['lambda']}-s{cfg.seed}"
    with tracker.job(run_name=run_name, tags=job_tags(cfg, stages), params=flatten(resolved),
                     config_yaml=OmegaConf.to_yaml(resolved)):
        for name in stages:
            log.info("stage %s", name)
            with tracker.stage(name):
                STAGES.get(name)(ctx)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def app(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.threads:
        import torch

        torch.set_num_threads(int(cfg.threads))
    from softsym.data.errors import DataError
    from softsym.registry import UnknownNameError
    from softsym.tracking import TrackingError

    try:
        run_job(cfg, run_dir)
    except (DataError, TrackingError, UnknownNameError, FileNotFoundError) as exc:
        # A bad input is the user's to fix: one clear paragraph, no traceback.
        log.error("%s", exc)
        print(f"softsym: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
