"""The Hydra configs, composed in-process: every option of every group composes and builds what it selects,
and the overrides the README shows still compose."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from softsym.cli import CONFIG_DIR, stage_plan
from softsym.data.sources import DATA_SOURCES, source_options
from softsym.distill import build_student
from softsym.models import MODELS
from softsym.physics import N_KINEMATIC
from softsym.registry import UnknownNameError
from softsym.stages import STAGE_ORDER, STAGES
from softsym.stages.options import (
    fit_config,
    hessian_operator_options,
    hessian_options,
    measured_symmetry,
    penalty,
    perturbation_scans,
)
from softsym.training import FitConfig

GROUPS = ("data", "model", "penalty", "train", "complexity", "robustness", "distill", "experiment", "hparams_search",
          "arm")
# What a file-based data source needs on the command line (`paths: ???`, and `tree: ???` for data=root).
FILE_OVERRIDES = {"jetclass": ["data.paths=[jets.root]"], "root": ["data.paths=[jets.root]", "data.tree=jets"]}


@contextmanager
def configs() -> Iterator[None]:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def group_options(group: str) -> list[str]:
    with configs():
        return GlobalHydra.instance().config_loader().get_group_options(group)


def composed(*overrides: str) -> DictConfig:
    with configs():
        return compose("config", overrides=list(overrides))


def overrides_for(group: str, option: str) -> list[str]:
    return [f"{group}={option}", *(FILE_OVERRIDES.get(option, []) if group == "data" else [])]


def build_selection(cfg: DictConfig) -> None:
    """Everything the stages build from a config, short of reading or generating data."""
    assert stage_plan(cfg) == [s for s in STAGE_ORDER if s in cfg.stages]
    assert all(s in STAGES for s in cfg.stages)

    settings = OmegaConf.to_container(cfg.data, resolve=True)
    source = DATA_SOURCES.get(cfg.data.source)
    inspect.signature(source).bind(**source_options(cfg.data.source, settings), progress=False)

    n_features = N_KINEMATIC + 1
    for size, sizes in cfg.model.sizes.items():
        model = MODELS.build(cfg.model.name, n_features=n_features, n_classes=len(cfg.data.classes),
                             **OmegaConf.to_container(sizes, resolve=True))
        assert model.n_params > 0, size

    built = penalty(cfg.penalty)
    if cfg.penalty.name == "none":
        assert built is None
    else:
        assert built.weight == float(cfg.penalty["lambda"])
    assert measured_symmetry(cfg.penalty) in ("rotation", "boost", "lorentz")

    assert isinstance(fit_config(cfg.train, seed=cfg.seed, progress=False), FitConfig)
    options = hessian_options(cfg, progress=False)
    assert options.seed == cfg.seed and options.k == cfg.complexity.hessian.k
    assert set(hessian_operator_options(cfg)) == {"dtype", "hvp", "cache_graph"}

    scans = perturbation_scans(cfg)
    assert [s.name for s in scans] == list(cfg.robustness.perturbations)
    assert {s.name for s in perturbation_scans(cfg, names=cfg.distill.robustness)} == set(cfg.distill.robustness)

    d = cfg.distill
    student = build_student(d.student.name, n_features=n_features, n_classes=len(cfg.data.classes), seed=d.seed,
                            **OmegaConf.to_container(d.student.sizes[d.student.name], resolve=True))
    assert student.n_params > 0
    assert isinstance(fit_config(d, seed=d.seed, progress=False), FitConfig)


def test_every_group_has_the_options_the_design_names():
    expected = {"data": {"pythia", "jetclass", "root"}, "penalty": {"none", "gc", "rotation", "boost", "lorentz"},
                "model": {"pfn", "particlenet", "transformer", "mlp", "lorentz_invariant"},
                "experiment": {"paper", "smoke", "full"},
                "hparams_search": {"lambda_sweep", "learning_curve", "learning_curve_full"},
                "arm": {"baseline", "lorentz_matched", "lorentz_strong", "gc", "weight_decay"}}
    for group, names in expected.items():
        assert set(group_options(group)) == names, group


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes_and_builds(group):
    options = group_options(group)
    assert options, group
    for option in options:
        cfg = composed(*overrides_for(group, option))
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        build_selection(cfg)


def test_symmetry_penalties_share_one_base_and_the_name_is_the_symmetry():
    for name in ("rotation", "boost", "lorentz"):
        p = composed(f"penalty={name}").penalty
        assert p.name == name and "symmetry" not in p
        assert {"form", "lambda", "max_angle", "max_rapidity", "batch_fraction"} <= set(p)
        assert measured_symmetry(p) == name and penalty(p).symmetry == name
    gc = composed("penalty=gc").penalty
    assert "form" not in gc and measured_symmetry(gc) == "lorentz"
    assert measured_symmetry(composed("penalty=none").penalty) == "lorentz"


def test_data_configs_share_their_common_keys():
    jetclass = composed(*overrides_for("data", "jetclass")).data
    root = composed(*overrides_for("data", "root")).data
    pythia = composed("data=pythia").data
    assert root.tree == "jets" and dict(root.branches) == {} and jetclass.tree == "tree"
    assert jetclass.branches is None and pythia.stream is False and jetclass.stream == "auto"
    shared = ("classes", "max_particles", "max_jets_per_class", "splits", "memory_budget_gb", "loader_workers")
    assert all(jetclass[k] == root[k] == pythia[k] for k in shared)
    with pytest.raises(Exception, match="tree"):  # data=root: the tree must be named
        OmegaConf.to_container(composed("data=root", "data.paths=[a.root]").data, throw_on_missing=True)


README_COMMANDS = [
    ["stages=[data,train]", "model=pfn", "penalty=lorentz", "penalty.lambda=0.3"],
    ["penalty=rotation", "penalty.form=finite", "penalty.max_angle=0.5"],
    ["stages=[data,train]", "data=jetclass", "data.paths=[/data/JetClass/val_5M/*.root]"],
    ["stages=[data,train]", "data=root", "data.paths=[my.root]", "data.tree=jets", "+data.branches.part_px=px",
     "+data.branches.part_py=py", "+data.branches.part_pz=pz", "+data.branches.part_energy=e",
     "+data.branches.label_QCD=is_qcd", "+data.branches.label_Tbqq=is_top"],
    ["stages=[complexity,robustness]", "train.checkpoint=outputs/model.pt"],
    ["train.resume=true"],
    ["penalty=none"], ["penalty=lorentz", "seed=2"],
    ["experiment=paper", "hparams_search=lambda_sweep"],
    ["experiment=smoke", "stages=[data]", "mlflow.experiment_name=smoke-data"],
    ["train.strategy=ddp"],
    ["distill.penalty={name: rotation, form: infinitesimal, lambda: 0.1}"],
]


@pytest.mark.parametrize("overrides", README_COMMANDS, ids=lambda o: " ".join(o)[:60])
def test_the_readme_commands_compose(overrides):
    cfg = composed(*overrides)
    build_selection(cfg)
    if cfg.distill.penalty:
        assert penalty(cfg.distill.penalty).symmetry == "rotation"


def test_an_unknown_stage_is_named_with_the_choices():
    with pytest.raises(ValueError, match="unknown \\['trian'\\]"):
        stage_plan(composed("stages=[data,trian]"))
    with pytest.raises(UnknownNameError, match="did you mean 'train'"):
        STAGES.get("trian")
