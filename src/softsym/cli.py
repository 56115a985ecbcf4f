"""The Hydra app ``softsym``: runs the configured stages in order, one MLflow parent run per job."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"

OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)  # paths.root: outputs go where the user works
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
    from softsym.config.job_key import config_hash, finished_run
    from softsym.stages import STAGES
    from softsym.stages.context import StageContext, job_device
    from softsym.tracking import CONFIG_HASH_TAG, MlflowTracker, NullTracker, Tracker, check_reachable, flatten
    from softsym.tracking.provenance import input_files, input_tags, source_commit
    from softsym.training.distributed import from_rank_zero, init_distributed

    stages = stage_plan(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.model.name}-{cfg.penalty.name}-l{cfg.penalty['lambda']}-s{cfg.seed}"
    digest = config_hash(resolved)
    rank = 0
    if cfg.train.strategy == "ddp":
        rank, _ = init_distributed(job_device(cfg))
        if rank != 0:  # the other ranks help train; analyses after training run once, on rank 0
            stages = [s for s in stages if s in ("data", "train")]
    elif cfg.train.strategy != "single":
        raise ValueError(f"train.strategy={cfg.train.strategy!r}: expected 'single' or 'ddp'")
    if not cfg.get("rerun", False):
        done = None
        if rank == 0:  # only rank 0 touches the store (parallel SQLite schema creation collides)
            check_reachable(cfg.mlflow.tracking_uri, cfg.mlflow.connect_timeout)
            done = finished_run(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, digest, source_commit())
        done = from_rank_zero(done)
        if done is not None:
            log.info("job %s skipped: this configuration finished in run %s of experiment %s (config_hash %s); "
                     "rerun=true runs it again", run_name, done, cfg.mlflow.experiment_name, digest)
            return
    tracker: Tracker = NullTracker() if rank else MlflowTracker(
        cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, connect_timeout=cfg.mlflow.connect_timeout,
        spool_dir=run_dir, max_job_hours=cfg.mlflow.get("max_job_hours"))
    ctx = StageContext(cfg=cfg, tracker=tracker, run_dir=run_dir)
    tags = {**job_tags(cfg, stages), CONFIG_HASH_TAG: digest, **source_commit()}
    with tracker.job(run_name=run_name, tags=tags, params=flatten(resolved),
                     config_yaml=OmegaConf.to_yaml(resolved)) as parent_id:
        inputs_recorded = False
        for name in stages:
            log.info("stage %s", name)
            with tracker.stage(name):
                STAGES.get(name)(ctx)
            if not inputs_recorded and "dataset" in ctx.outputs:  # the input files, on the parent run
                files = input_files(ctx.outputs["dataset"])
                tracker.set_tags(input_tags(files))
                tracker.log_text("\n".join(files) + "\n", "inputs.txt", run_id=parent_id)
                inputs_recorded = True


def config_groups() -> list[str]:
    """The config groups (``data``, ``model``, ``hydra/launcher``, ...): what ``+group=option`` appends."""
    return sorted(str(d.relative_to(CONFIG_DIR)) for d in CONFIG_DIR.rglob("*") if d.is_dir())


def check_job_config(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Every option of the job checked (``softsym.config.check``) before any work and any MLflow run
    (``overrides``: the job's own; by default the running Hydra job's)."""
    from omegaconf.errors import OmegaConfBaseException

    from softsym.config.check import ConfigError, check_config

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError([f"{getattr(exc, 'full_key', None) or 'config'}: {getattr(exc, 'msg', exc)}"]) from None
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    check_config(resolved, overrides, groups=config_groups())


def check_sweep_jobs(job_configs: list[tuple[list[str], DictConfig]]) -> list[str]:
    """Each job of a sweep (its overrides, its composed config with or without the ``hydra`` node) checked
    before the first one starts: one line per bad job, empty when every job is good."""
    from softsym.config.check import ConfigError

    bad = []
    for number, (overrides, cfg) in enumerate(job_configs):
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        task_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]  # the job's own
        try:
            check_job_config(task, task_overrides)
        except ConfigError as exc:
            bad.append(f"job #{number} ({' '.join(overrides)}): {exc}")
    return bad


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def app(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    from softsym.config.check import ConfigError
    from softsym.data.errors import DataError
    from softsym.registry import UnknownNameError
    from softsym.tracking import TrackingError
    from softsym.tracking.interrupts import JobInterrupted, interrupt_on_signals
    from softsym.training.loop import CheckpointError

    try:
        check_job_config(cfg)
        if cfg.threads:
            import torch

            torch.set_num_threads(int(cfg.threads))
        with interrupt_on_signals():  # SIGTERM/SIGINT: the runs end KILLED, what was logged is flushed
            run_job(cfg, run_dir)
    except (ConfigError, CheckpointError, DataError, TrackingError, UnknownNameError, FileNotFoundError) as exc:
        # A bad input is the user's to fix: one clear paragraph, no traceback.
        log.error("%s", exc)
        print(f"softsym: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except JobInterrupted as exc:
        log.error("job %s: its MLflow runs are marked KILLED", exc)
        print(f"softsym: {exc}; the job's MLflow runs are marked KILLED", file=sys.stderr)
        sys.exit(exc.exit_code)


def main() -> None:
    # Hydra prints its own errors (an override of a key that does not exist, a config that does not exist) and
    # exits 1; raised to us instead, they are bad options: one paragraph with close matches, exit 2.
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except Exception as exc:
        from softsym.config.overrides import composition_error_message

        message = composition_error_message(exc, sys.argv[1:], CONFIG_DIR)
        if message is None:
            if full_error:
                raise
            traceback.print_exc()
            sys.exit(1)
        print(f"softsym: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
