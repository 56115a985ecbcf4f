"""Every option checked before any work: the checker on configs composed in-process (fast), and the wording of
Hydra's refusals of unknown keys and config choices. The command-line side (exit 2, no MLflow run) is in
tests/test_cli.py."""

from __future__ import annotations

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from softsym.cli import CONFIG_DIR, config_groups
from softsym.config.check import ConfigError, check_config
from softsym.config.overrides import composition_error_message
from tests.test_configs import GROUPS, configs, group_options, overrides_for


def problems(*overrides: str) -> str:
    """The checker's message for the config the overrides compose to ('' when it passes)."""
    with configs():
        cfg = compose("config", overrides=list(overrides))
    try:
        check_config(OmegaConf.to_container(cfg, resolve=True), overrides, groups=config_groups())
    except ConfigError as err:
        return str(err)
    return ""


BAD = [
    # (overrides, what the message must name)
    (["train.epochs=0"], ["train.epochs=0", "integer >= 1"]),
    (["train.epochs=two"], ["train.epochs='two'", "integer >= 1"]),
    (["penalty.lambda=abc"], ["penalty.lambda='abc'", "number >= 0"]),
    (["penalty.lambda=-1"], ["penalty.lambda=-1", "number >= 0"]),
    (["train.lr=abc"], ["train.lr='abc'", "number > 0"]),
    (["data.max_particles=abc"], ["data.max_particles='abc'", "integer >= 1"]),
    (["train.batch_size=0"], ["train.batch_size=0", "integer >= 1"]),
    (["stages=[dta]"], ["stages=['dta']", "'data'", "'train'"]),
    (["model.size=smal"], ["model.size='smal'", "did you mean small"]),
    (["data=jetclass"], ["data.paths=???", "required", "data.paths=["]),
    (["data=root", "data.paths=[a.root]"], ["data.tree=???", "required"]),
    (["+train.epoch=3"], ["unknown option train.epoch=3", "did you mean train.epochs"]),
    (["penalty=rotation", "penalty.form=finit"], ["penalty.form='finit'", "did you mean finite"]),
    (["penalty=rotation", "+penalty.max_angel=1.0"], ["penalty.max_angel", "penalty.max_angle"]),
    (["train.strategy=dpp"], ["train.strategy='dpp'", "ddp"]),
    (["train.device=gpu"], ["train.device='gpu'", "cuda"]),
    (["data.stream=sometimes"], ["data.stream='sometimes'", "auto"]),
    (["data.splits=[0.5,0.5,0.5]"], ["data.splits", "adding up to 1"]),
    (["data.pt_max=100"], ["data.pt_max=100", "data.pt_min"]),
    (["stages=[complexity]"], ["stages=['complexity']", "train.checkpoint"]),
    (["stages=[robustness]", "train.checkpoint=/nonexistent/model.pt"], ["train.checkpoint", "no such file"]),
    (["robustness.perturbations.rotation.strengths=[]"], ["robustness.perturbations.rotation.strengths=[]"]),
    (["+robustness.perturbations.rotation.radius=1"], ["robustness.perturbations.rotation.radius",
                                                       "perturbation rotation"]),
    (["+robustness.perturbations.rotaton.strengths=[0.0]"], ["rotaton", "did you mean rotation"]),
    (["distill.robustness=[rotaton]"], ["distill.robustness", "rotaton"]),
    (["distill.student.name=mpl"], ["distill.student.name='mpl'", "mlp"]),
    (["+model.sizes.small.latent=8"], ["model.sizes.small.latent", "latent_dim"]),
    (["complexity.hessian.method=lanzcos"], ["complexity.hessian.method='lanzcos'", "lanczos"]),
    (["distill.alpha=2"], ["distill.alpha=2", "<= 1"]),
    (["threads=0"], ["threads=0", "integer >= 1 or null"]),
]


@pytest.mark.parametrize("overrides,named", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_option_is_named_with_its_value_and_what_is_expected(overrides, named):
    message = problems(*overrides)
    for words in named:
        assert words in message, (words, message)
    assert "\n" not in message


def test_several_bad_options_are_named_in_one_paragraph():
    message = problems("train.epochs=0", "train.lr=abc")
    assert message.startswith("2 bad options") and "train.epochs=0" in message and "train.lr='abc'" in message


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_passes_the_checker(group):
    for option in group_options(group):
        assert problems(*overrides_for(group, option)) == "", (group, option)


@pytest.mark.parametrize("overrides", [
    ["+data.branches.part_px=px", "data=root", "data.paths=[a.root]", "data.tree=jets"],
    ["++train.epochs=3"], ["penalty.lambda=1"], ["stages=[data]"], ["data.stream=true"], ["train.device=cuda:1"],
    ["robustness.perturbations.pgd.steps=2"], ["train.grad_clip=null"], ["model=transformer", "model.size=paper"],
])
def test_valid_overrides_pass(overrides):
    assert problems(*overrides) == ""


def _composition_error(*overrides: str) -> Exception:
    with configs(), pytest.raises(ConfigCompositionException) as caught:
        compose("config", overrides=list(overrides))
    return caught.value


def test_an_override_of_a_key_no_config_has_names_close_matches():
    message = composition_error_message(_composition_error("train.epoch=3"), ["train.epoch=3"], CONFIG_DIR)
    assert message.startswith("unknown option train.epoch=3") and "did you mean train.epochs" in message
    assert "+train.epoch" not in message  # Hydra's advice would add a key that nothing reads
    message = composition_error_message(_composition_error("data=jetclass", "data.path=[a]"),
                                        ["data=jetclass", "data.path=[a]"], CONFIG_DIR)
    assert "data.path=[a]" in message and "data.paths" in message


def test_a_new_key_of_an_open_mapping_is_shown_how_to_add_it():
    overrides = ["data=root", "data.paths=[a.root]", "data.tree=t", "data.branches.part_px=px"]
    message = composition_error_message(_composition_error(*overrides), overrides, CONFIG_DIR)
    assert "+data.branches.part_px=px" in message


def test_an_unknown_config_choice_lists_the_choices():
    message = composition_error_message(_composition_error("model=pffn"), ["model=pffn"], CONFIG_DIR)
    assert "model=pffn" in message and "'transformer'" in message and "did you mean pfn" in message


def test_other_exceptions_are_not_taken_for_bad_options():
    assert composition_error_message(RuntimeError("boom"), [], CONFIG_DIR) is None
