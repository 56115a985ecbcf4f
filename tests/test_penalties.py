"""Soft symmetry penalties: zero for invariant functions, JVP = finite difference, λ=0 ≡ none."""

import pytest
import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models import MODELS
from softsym.penalties import PENALTIES, SymmetryPenalty, symmetry_violation
from softsym.physics import act, exp_generator, invariant_mass, jet_p4
from softsym.physics.symmetries import symmetry_generators


class JetMassTagger(nn.Module):
    """A function of Lorentz invariants only: log of the jet mass."""

    def forward(self, features, p4, mask):
        return torch.log(invariant_mass(jet_p4(p4, mask)) + 1.0).unsqueeze(-1)


class JetEnergyTagger(nn.Module):
    """Not invariant: log of the jet energy (changes under boosts), but rotation-invariant about the axis."""

    def forward(self, features, p4, mask):
        return torch.log(jet_p4(p4, mask)[:, :1])


@pytest.fixture
def batch(toy_jets):
    b = toy_jets.subset(slice(0, 64)).to_batch()
    return JetBatch(b.p4.double(), b.mask, b.labels, b.scalars.double())


@pytest.mark.parametrize("symmetry", ["rotation", "boost", "lorentz"])
@pytest.mark.parametrize("form", ["infinitesimal", "finite"])
def test_invariant_function_has_zero_penalty(batch, symmetry, form):
    _, value = SymmetryPenalty(symmetry, form, weight=1.0)(JetMassTagger(), batch)
    assert float(value) < 1e-12


@pytest.mark.parametrize("form", ["infinitesimal", "finite"])
def test_non_invariant_function_is_penalised(batch, form):
    _, boost = SymmetryPenalty("boost", form, weight=1.0)(JetEnergyTagger(), batch)
    _, rotation = SymmetryPenalty("rotation", form, weight=1.0)(JetEnergyTagger(), batch)
    assert float(boost) > 1e-3
    assert float(rotation) < 1e-12  # the jet energy is invariant under rotations about the jet axis


@pytest.mark.parametrize("symmetry", ["rotation", "boost", "lorentz"])
def test_jvp_penalty_matches_central_finite_difference(batch, symmetry):
    torch.manual_seed(0)
    model = MODELS.build("pfn", n_features=8, n_classes=2).double()
    _, jvp_value = SymmetryPenalty(symmetry, "infinitesimal")(model, batch)
    gens, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    eps = 1e-7  # small enough that no ReLU kink lies inside [x - eps, x + eps]
    total = torch.zeros(())

    def f(p4):
        from softsym.models import logits_from_p4

        return logits_from_p4(model, p4, batch.mask, batch.scalars)

    for a in range(gens.shape[1]):
        plus = act(exp_generator(gens[:, a], torch.full((len(batch),), eps, dtype=torch.float64)), batch.p4)
        minus = act(exp_generator(gens[:, a], torch.full((len(batch),), -eps, dtype=torch.float64)), batch.p4)
        total = total + ((f(plus) - f(minus)) / (2 * eps)).pow(2).sum(-1).mean()
    assert float(jvp_value.detach()) == pytest.approx(float(total), rel=1e-6)


def test_penalty_gradients_reach_parameters(batch):
    model = MODELS.build("pfn", n_features=8, n_classes=2).double()
    _, value = SymmetryPenalty("lorentz", "infinitesimal", weight=1.0)(model, batch)
    value.backward()
    first_layer = model.phi[0].weight.grad
    assert first_layer is not None and torch.isfinite(first_layer).all() and float(first_layer.abs().sum()) > 0
    assert model.head[-1].bias.grad is None  # a constant shift of the output never breaks a symmetry


SMALL_AND_NARROW = dict(phi_sizes=[16, 16], latent_dim=8, head_sizes=[16])
WIDE_LATENT = dict(phi_sizes=[20, 24], latent_dim=64, head_sizes=[40, 40])  # narrow layers inside Φ and F


def _generic_penalty(model, batch, symmetry):
    """The autograd path every other model takes: reverse-over-reverse through features and network."""
    from softsym.penalties import generator_derivatives

    generators, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    logits, derivatives = generator_derivatives(model, batch, generators, mode="reverse")
    return logits, derivatives.square().sum((0, 2)).mean()


def _gradients(model, logits, value, task_weight, penalty_weight):
    from softsym.training.metrics import task_loss

    model.zero_grad(set_to_none=True)
    loss = penalty_weight * value
    if task_weight:
        loss = loss + task_weight * task_loss(logits, labels_for(logits))
    loss.backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


def labels_for(logits):
    return (torch.arange(len(logits)) % 2).to(logits.dtype)


@pytest.mark.parametrize("symmetry", ["rotation", "boost", "lorentz"])
@pytest.mark.parametrize("sizes", [SMALL_AND_NARROW, WIDE_LATENT])
def test_hand_written_pfn_penalty_equals_autograd(batch, symmetry, sizes):
    """The PFN's exact fast path: same logits, penalty and parameter gradients as double backward."""
    from softsym.penalties.deep_sets import supports_deep_sets_penalty
    from softsym.penalties.symmetry import infinitesimal_penalty

    torch.manual_seed(1)
    model = MODELS.build("pfn", n_features=batch.scalars.shape[-1] + 7, n_classes=2, **sizes).double()
    assert supports_deep_sets_penalty(model)
    for task_weight, penalty_weight in [(1.0, 0.7), (0.0, 1.0), (1.0, 0.0)]:
        fast_logits, fast_value = infinitesimal_penalty(model, batch, symmetry)
        slow_logits, slow_value = _generic_penalty(model, batch, symmetry)
        assert torch.allclose(fast_logits, slow_logits, rtol=1e-12, atol=1e-12)
        assert float(fast_value) == pytest.approx(float(slow_value), rel=1e-10)
        fast = _gradients(model, fast_logits, fast_value, task_weight, penalty_weight)
        slow = _gradients(model, slow_logits, slow_value, task_weight, penalty_weight)
        for f, s in zip(fast, slow, strict=True):
            assert torch.allclose(f, s, rtol=1e-9, atol=1e-12), (task_weight, penalty_weight)


def test_hand_written_penalty_refuses_a_second_backward(batch):
    """Its backward reuses saved buffers: a retained graph must fail loudly, never give wrong numbers."""
    from softsym.penalties.symmetry import infinitesimal_penalty

    model = MODELS.build("pfn", n_features=8, n_classes=2).double()
    logits, value = infinitesimal_penalty(model, batch, "boost")
    (logits.sum() + value).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (logits.sum() + value).backward()


def test_fast_path_is_taken_only_where_it_is_exact():
    from softsym.penalties.deep_sets import supports_deep_sets_penalty

    assert supports_deep_sets_penalty(MODELS.build("pfn", n_features=8, n_classes=2))
    assert not supports_deep_sets_penalty(MODELS.build("pfn", n_features=8, n_classes=10))  # C outputs
    assert not supports_deep_sets_penalty(MODELS.build("particlenet", n_features=8, n_classes=2))
    with_dropout = MODELS.build("pfn", n_features=8, n_classes=2)
    with_dropout.head.insert(1, nn.Dropout(0.1))
    assert not supports_deep_sets_penalty(with_dropout)


def test_symmetry_violation_is_batch_size_weighted(batch):
    torch.manual_seed(0)
    model = MODELS.build("pfn", n_features=8, n_classes=2).double()
    whole = symmetry_violation(model, [batch], "boost")
    halves = [JetBatch(batch.p4[s], batch.mask[s], batch.labels[s], batch.scalars[s])
              for s in (slice(0, 40), slice(40, None))]
    assert symmetry_violation(model, halves, "boost") == pytest.approx(whole, rel=1e-10)


def test_bad_penalty_options_are_named():
    with pytest.raises(ValueError, match="penalty.form"):
        SymmetryPenalty("lorentz", "approximate")
    with pytest.raises(KeyError, match="unknown penalty"):
        PENALTIES.build("parity")
    assert PENALTIES.build("none") is None


@pytest.mark.parametrize("symmetry", ["rotation", "lorentz"])
def test_forward_and_reverse_mode_derivatives_agree(batch, symmetry):
    from softsym.penalties import generator_derivatives

    torch.manual_seed(0)
    model = MODELS.build("pfn", n_features=8, n_classes=2).double()
    gens, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    fwd_logits, fwd = generator_derivatives(model, batch, gens, mode="forward")
    rev_logits, rev = generator_derivatives(model, batch, gens, mode="reverse")
    assert torch.allclose(fwd_logits, rev_logits) and torch.allclose(fwd, rev, rtol=1e-10, atol=1e-12)


def test_finite_penalty_uses_the_same_dropout_masks_for_both_jets(batch):
    class Invariant(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, features, p4, mask):
            return self.drop(torch.log(invariant_mass(jet_p4(p4, mask)) + 1.0).unsqueeze(-1).expand(-1, 8))

    model = Invariant().train()
    _, value = SymmetryPenalty("lorentz", "finite", weight=1.0)(model, batch)
    assert float(value) < 1e-12
