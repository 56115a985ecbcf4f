"""The fit loop: λ = 0 reproduces the unpenalised run; a killed and resumed run equals an uninterrupted one."""

import pytest
import torch

from softsym.data.loaders import InMemoryLoader
from softsym.models import MODELS
from softsym.penalties import SymmetryPenalty
from softsym.training import FitConfig, classification_metrics, fit, predict
from softsym.training.objective import penalised_objective

CFG = FitConfig(epochs=3, lr=3e-3, patience=10, seed=3, progress=False)


def _train(toy_jets, penalty, cfg=CFG, **kwargs):
    torch.manual_seed(cfg.seed)
    model = MODELS.build("pfn", n_features=8, n_classes=2, phi_sizes=[16], latent_dim=8, head_sizes=[16])
    train = InMemoryLoader(toy_jets.subset(slice(0, 192)), batch_size=32, shuffle=True, seed=cfg.seed)
    val = InMemoryLoader(toy_jets.subset(slice(192, None)), batch_size=64)
    result = fit(model, train, val, penalised_objective(penalty), cfg, **kwargs)
    return model, result


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_lambda_zero_reproduces_no_penalty_exactly(toy_jets):
    plain, _ = _train(toy_jets, None)
    zero, _ = _train(toy_jets, SymmetryPenalty("lorentz", "finite", weight=0.0))
    assert torch.equal(_weights(plain), _weights(zero))
    penalised, _ = _train(toy_jets, SymmetryPenalty("lorentz", "infinitesimal", weight=0.5))
    assert not torch.equal(_weights(plain), _weights(penalised))


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("penalty", [None, SymmetryPenalty("boost", "finite", weight=0.3)])
def test_killed_and_resumed_training_matches_uninterrupted(toy_jets, tmp_path, penalty):
    straight, straight_result = _train(toy_jets, penalty, checkpoint_path=tmp_path / "a.pt")

    def kill_after_first_epoch(epoch, metrics):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        _train(toy_jets, penalty, checkpoint_path=tmp_path / "b.pt", on_epoch_end=kill_after_first_epoch)
    resumed, resumed_result = _train(toy_jets, penalty, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert resumed_result.resumed_from_epoch == 0
    assert torch.equal(_weights(straight), _weights(resumed))
    assert resumed_result.history == straight_result.history
    loader = InMemoryLoader(toy_jets, batch_size=128)
    metrics = [classification_metrics(*predict(m, loader), ("QCD", "Tbqq")) for m in (straight, resumed)]
    assert metrics[0] == metrics[1]


def test_training_learns_the_toy_task(toy_jets):
    model, result = _train(toy_jets, None, FitConfig(epochs=6, lr=5e-3, seed=0, progress=False))
    metrics = classification_metrics(*predict(model, InMemoryLoader(toy_jets, batch_size=128)), ("QCD", "Tbqq"))
    assert metrics["test_auc"] > 0.8
    assert result.best_epoch >= 0 and len(result.history) <= 6


def test_multiclass_metrics_are_per_class_against_qcd():
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    probs = rng.dirichlet([1, 1, 1], 300)
    probs[labels == 1, 1] += 2
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(labels, probs, ("QCD", "Tbqq", "Wqq"))
    assert m["test_auc_Tbqq"] > 0.85 and 0.3 < m["test_auc_Wqq"] < 0.7
    assert {"test_rej50_Tbqq", "test_acc", "test_auc"} <= set(m)


def test_a_corrupt_checkpoint_on_resume_names_the_file_and_what_to_do(toy_jets, tmp_path):
    from softsym.training.loop import CheckpointError

    path = tmp_path / "last.pt"
    _train(toy_jets, None, FitConfig(epochs=1, seed=0, progress=False), checkpoint_path=path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short, a disk that failed
    with pytest.raises(CheckpointError) as caught:
        _train(toy_jets, None, checkpoint_path=path, resume=True)
    message = str(caught.value)
    assert str(path) in message and "corrupt" in message and "train.resume=false" in message and "delete" in message
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        _train(toy_jets, None, checkpoint_path=path, resume=True)


def test_a_corrupt_model_file_names_the_file(tmp_path):
    from softsym.training import load_trained_model
    from softsym.training.loop import CheckpointError

    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=str(path)):
        load_trained_model(path)
    torch.save({"weights": torch.zeros(2)}, path)  # a torch file, but not a softsym model
    with pytest.raises(CheckpointError, match="spec"):
        load_trained_model(path)


def test_resume_without_a_checkpoint_says_it_starts_afresh(toy_jets, tmp_path, caplog):
    path = tmp_path / "missing" / "last.pt"
    with caplog.at_level("WARNING", logger="softsym.training.loop"):
        _, result = _train(toy_jets, None, FitConfig(epochs=1, seed=0, progress=False), checkpoint_path=path,
                           resume=True)
    assert result.resumed_from_epoch is None and str(path) in result.resume_note
    assert "first epoch" in result.resume_note and str(path) in caplog.text
