"""The model zoo: padding and permutation invariance, exact Lorentz invariance of the reference model, the
plain-torch kNN against brute force, and every penalty form through every model (the JVP path included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from softsym.data.jets import JetBatch
from softsym.data.synthetic import synthetic_jets
from softsym.models import MODELS, logits_from_p4
from softsym.models.graph import knn_graph, node_jet_index, to_padded
from softsym.models.inputs import MODEL_INPUTS, ParticleInputs, jet_frame_rotation
from softsym.penalties import SymmetryPenalty
from softsym.penalties.symmetry import generator_derivatives, infinitesimal_penalty
from softsym.physics import N_KINEMATIC, compute_features
from softsym.physics.lorentz import boost_generator, rotation_generator
from softsym.physics.symmetries import symmetry_generators

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"
# Tiny architectures: the tests check structure, not performance.
TINY = {
    "pfn": dict(phi_sizes=[16], latent_dim=8, head_sizes=[16]),
    "mlp": dict(n_particles=8, hidden_sizes=[16]),
    "particlenet": dict(k=3, block_channels=[[16, 16], [16, 16]], head_sizes=[16], dropout=0.0),
    "transformer": dict(embed_dim=16, n_heads=2, n_blocks=1, n_class_blocks=1, ffn_dim=16, embed_sizes=[16],
                        pair_embed_sizes=[8], dropout=0.0),
    "lorentz_invariant": dict(hidden_dim=16, n_layers=2, head_sizes=[16]),
}
# The flat MLP reads particles in (pT) order by design, so it is only required to ignore padding.
SET_MODELS = ["pfn", "particlenet", "transformer", "lorentz_invariant"]

N_FEATURES = N_KINEMATIC + 1  # kinematic features + charge, as synthetic_jets gives


@pytest.fixture(scope="module")
def batch():
    return synthetic_jets(6, max_particles=12, seed=3).to_batch()


def tiny_model(name: str, n_features: int, n_classes: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return MODELS.build(name, n_features=n_features, n_classes=n_classes, **TINY[name]).eval()


def eval_logits(model, batch):
    with torch.no_grad():
        return logits_from_p4(model, batch.p4, batch.mask, batch.scalars)


def test_every_registered_model_is_tested_and_configured():
    assert set(TINY) == set(MODELS)
    for name in MODELS:
        config = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
        assert config["name"] == name and config["size"] in config["sizes"]
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            n_params = {size: MODELS.build(name, n_features=N_FEATURES, n_classes=2, **kwargs).n_params
                        for size, kwargs in config["sizes"].items()}
        assert 0 < n_params["small"] < n_params["paper"], (name, n_params)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("n_classes", [2, 5])
def test_output_shape(name, n_classes, batch):
    model = tiny_model(name, N_FEATURES, n_classes)
    assert eval_logits(model, batch).shape == (len(batch), 1 if n_classes == 2 else n_classes)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_never_changes_the_output(name, batch):
    features = compute_features(batch.p4, batch.mask, batch.scalars)
    model = tiny_model(name, features.shape[-1])
    with torch.no_grad():
        reference = model(features, batch.p4, batch.mask)
        # garbage in every padded slot, plus extra padded slots
        g = torch.Generator().manual_seed(0)
        pad = ~batch.mask.unsqueeze(-1)
        garbage_p4 = torch.where(pad, 1e3 * torch.randn(batch.p4.shape, generator=g), batch.p4)
        garbage_features = torch.where(pad, 1e3 * torch.randn(features.shape, generator=g), features)
        extra = 5
        wider_mask = torch.cat([batch.mask, batch.mask.new_zeros(len(batch), extra)], dim=1)
        wider_p4 = torch.cat([garbage_p4, 1e3 * torch.randn(len(batch), extra, 4, generator=g)], dim=1)
        wider_features = torch.cat([garbage_features, 1e3 * torch.randn(len(batch), extra, features.shape[-1],
                                                                  generator=g)], dim=1)
        torch.testing.assert_close(model(garbage_features, garbage_p4, batch.mask), reference, rtol=0, atol=1e-6)
        torch.testing.assert_close(model(wider_features, wider_p4, wider_mask), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SET_MODELS)
def test_output_does_not_depend_on_particle_order(name, batch):
    model = tiny_model(name, N_FEATURES)
    order = torch.argsort(torch.rand(batch.mask.shape, generator=torch.Generator().manual_seed(1)), dim=1)
    shuffled = JetBatch(
        p4=batch.p4.gather(1, order.unsqueeze(-1).expand_as(batch.p4)),
        mask=batch.mask.gather(1, order),
        labels=batch.labels,
        scalars=batch.scalars.gather(1, order.unsqueeze(-1).expand_as(batch.scalars)),
    )
    assert not torch.equal(shuffled.mask, batch.mask)  # real particles did move between slots
    torch.testing.assert_close(eval_logits(model, shuffled), eval_logits(model, batch), rtol=1e-5, atol=1e-5)


def relative_violation(model, batch, symmetry: str) -> float:
    """Infinitesimal penalty divided by the same quantity when each particle gets the generator's tangent
    with its own random sign: a transformation of the same size per particle that is no symmetry of the jet.
    About 0.1–10 for a model without the symmetry, 0 for an exactly invariant one."""
    with torch.no_grad():
        _, violation = infinitesimal_penalty(model, batch, symmetry)
    generators, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    tangents = torch.einsum("bajk,bpk->abpj", generators, batch.p4)
    signs = torch.randint(0, 2, (*tangents.shape[:3], 1), generator=torch.Generator().manual_seed(2)) * 2 - 1
    n_gen = tangents.shape[0]
    _, response = torch.func.jvp(
        lambda p4: logits_from_p4(model, p4, batch.mask.repeat(n_gen, 1), batch.scalars.repeat(n_gen, 1, 1)),
        (batch.p4.repeat(n_gen, 1, 1),), ((signs * tangents).flatten(0, 1),))
    local = response.pow(2).sum(-1).sum() / len(batch)
    return float(violation / local.detach())


def test_lorentz_invariant_model_has_no_lorentz_violation(batch):
    model = tiny_model("lorentz_invariant", N_FEATURES)
    for symmetry in ("lorentz", "rotation", "boost"):
        assert relative_violation(model, batch, symmetry) <= 1e-6, symmetry


@pytest.mark.parametrize("name", ["pfn", "particlenet", "transformer"])
def test_other_models_violate_lorentz_symmetry(name, batch):
    assert relative_violation(tiny_model(name, N_FEATURES), batch, "lorentz") > 1e-2


def brute_force_knn(coords, mask, k):
    """(neighbour, centre) pairs in the node numbering of ``coords[mask]``, by sorting exact float64 distances."""
    node = (mask.flatten().cumsum(0) - 1).view(mask.shape)
    edges = set()
    for b in range(mask.shape[0]):
        real = mask[b].nonzero()[:, 0].tolist()
        for i in real:
            others = [j for j in real if j != i]
            dist = [float((coords[b, i].double() - coords[b, j].double()).pow(2).sum()) for j in others]
            nearest = [others[n] for n in sorted(range(len(others)), key=dist.__getitem__)[:k]]
            edges |= {(int(node[b, j]), int(node[b, i])) for j in nearest}
    return edges


@pytest.mark.parametrize("dim", [2, 16])
def test_knn_matches_brute_force(dim):
    g = torch.Generator().manual_seed(dim)
    batch, n_slots, k = 7, 20, 5
    coords = torch.randn(batch, n_slots, dim, generator=g)
    mask = torch.rand(batch, n_slots, generator=g) < 0.6
    mask[0] = False                  # an empty jet
    mask[1] = False
    mask[1, 7] = True                # one particle: no neighbours
    mask[2] = False
    mask[2, [0, 5, 9]] = True        # fewer than k + 1: all real neighbours
    coords = torch.where(mask.unsqueeze(-1), coords, 1e6)  # padded slots must never be chosen

    edge_index = knn_graph(coords, mask, k)
    edges = set(map(tuple, edge_index.T.tolist()))
    assert len(edges) == edge_index.shape[1]  # no duplicates
    assert edges == brute_force_knn(coords, mask, k)
    centre_jet = node_jet_index(mask)[edge_index[1]]
    assert torch.equal(centre_jet, node_jet_index(mask)[edge_index[0]])  # never across jets
    nodes = coords[mask]
    torch.testing.assert_close(to_padded(nodes, mask), torch.where(mask.unsqueeze(-1), coords, 0.0))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("form", ["infinitesimal", "finite"])
@pytest.mark.parametrize("symmetry", ["rotation", "boost", "lorentz"])
def test_every_penalty_runs_through_every_model(name, form, symmetry, batch):
    model = tiny_model(name, N_FEATURES).train()
    penalty = SymmetryPenalty(symmetry, form, weight=1.0)
    logits, value = penalty(model, batch, rng=torch.Generator().manual_seed(0))
    assert logits.shape == (len(batch), 1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], batch.labels.float()) + value
    loss.backward()
    assert torch.isfinite(value)
    if name != "lorentz_invariant":
        assert value > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("symmetry", ["rotation", "lorentz"])
def test_forward_mode_jvp_through_every_model(name, symmetry, batch):
    """torch.func.jvp through the model (PyG EdgeConv, attention) equals the reverse-mode derivative, and
    the penalty built on it back-propagates to finite parameter gradients. In float64, so that rounding in
    the reverse-mode contraction ∇f · (G x) (large terms cancelling for invariant models) stays negligible."""
    model = tiny_model(name, N_FEATURES).train().double()
    batch = JetBatch(batch.p4.double(), batch.mask, batch.labels, batch.scalars.double())
    generators, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    _, reverse = generator_derivatives(model, batch, generators, mode="reverse")
    logits, forward = generator_derivatives(model, batch, generators, mode="forward")
    torch.testing.assert_close(forward, reverse, rtol=1e-6, atol=1e-9)
    (logits.sum() + forward.pow(2).sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_empty_and_single_particle_jets_give_finite_logits_and_derivatives(name, batch):
    mask = batch.mask.clone()
    mask[0] = False      # empty
    mask[1, 1:] = False  # one particle
    degenerate = JetBatch(batch.p4, mask, batch.labels, batch.scalars)
    model = tiny_model(name, N_FEATURES, n_classes=3).train()  # several outputs: the penalty's JVP path
    logits, value = SymmetryPenalty("lorentz", "infinitesimal", weight=1.0)(model, degenerate)
    (logits.sum() + value).backward()
    assert torch.isfinite(logits).all() and torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- model.inputs

INPUT_MODELS = ["pfn", "mlp", "transformer"]


def test_jet_frame_turns_every_jet_axis_onto_z(batch):
    p4 = batch.p4.double()
    R = jet_frame_rotation(p4, batch.mask)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(R))
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(batch), dtype=torch.float64))
    jet = (p4 * batch.mask[..., None]).sum(1)[:, 1:]
    turned = torch.einsum("bij,bj->bi", R, jet)
    torch.testing.assert_close(turned[:, :2], torch.zeros_like(turned[:, :2]), atol=1e-9, rtol=0)
    torch.testing.assert_close(turned[:, 2], jet.norm(dim=-1))


@pytest.mark.parametrize("symmetry,expected", [("rotation", rotation_generator(3)), ("boost", boost_generator(3))])
def test_jet_axis_symmetries_act_as_z_generators_on_p4_jet(symmetry, expected, batch):
    inputs = ParticleInputs("p4_jet", N_FEATURES)
    gens, _ = symmetry_generators(symmetry, batch.p4.double(), batch.mask)
    hat = inputs.input_generators(gens, batch.p4.double(), batch.mask)
    assert hat.shape == (len(batch), 1, 5, 5)
    torch.testing.assert_close(hat[:, 0, :4, :4], expected.double().expand(len(batch), 4, 4), atol=1e-12, rtol=0)
    assert torch.all(hat[:, 0, 4:] == 0) and torch.all(hat[:, 0, :, 4:] == 0)  # the charge does not move


@pytest.mark.parametrize("name", INPUT_MODELS)
@pytest.mark.parametrize("inputs", MODEL_INPUTS)
def test_every_input_option_builds_ignores_padding_and_reloads(name, inputs, batch, tmp_path):
    from softsym.training import ModelSpec, load_trained_model, save_trained_model
    spec = ModelSpec(name, N_FEATURES, ("qcd", "top"), ("charge",), {**TINY[name], "inputs": inputs,
                                                                       "p4_scale": 50.0})
    torch.manual_seed(0)
    model = spec.build().eval()
    assert model.input_map.inputs == inputs
    assert model.input_map.n_inputs == (N_FEATURES if inputs == "features" else 5)
    logits = eval_logits(model, batch)
    assert logits.shape == (len(batch), 1) and torch.isfinite(logits).all()
    wider = JetBatch(torch.cat([batch.p4, torch.randn(len(batch), 3, 4)], 1),
                     torch.cat([batch.mask, torch.zeros(len(batch), 3, dtype=torch.bool)], 1), batch.labels,
                     torch.cat([batch.scalars, torch.randn(len(batch), 3, batch.scalars.shape[-1])], 1))
    torch.testing.assert_close(eval_logits(model, wider), logits, atol=1e-5, rtol=1e-5)
    save_trained_model(tmp_path / "model.pt", model, spec)
    reloaded, reloaded_spec = load_trained_model(tmp_path / "model.pt")
    assert reloaded_spec == spec and reloaded.input_map.p4_scale == 50.0
    torch.testing.assert_close(eval_logits(reloaded, batch), logits)


def test_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="model.inputs"):
        MODELS.build("pfn", n_features=N_FEATURES, n_classes=2, inputs="p3", **TINY["pfn"])


def test_input_gradients_of_a_4_vector_model_are_taken_at_its_inputs(batch):
    """‖∇_x f‖² for model.inputs=p4 is taken at x = (p / p4_scale, scalars): s²‖∇_p f‖² + ‖∇_scalars f‖²."""
    from softsym.models.gradients import jet_input_gradient_norms
    model = MODELS.build("pfn", n_features=N_FEATURES, n_classes=2, inputs="p4", p4_scale=50.0,
                         **TINY["pfn"]).eval().double()
    b = JetBatch(batch.p4.double(), batch.mask, batch.labels, batch.scalars.double())
    _, norms = jet_input_gradient_norms(model, b)
    p4 = b.p4.clone().requires_grad_(True)
    scalars = b.scalars.clone().requires_grad_(True)
    grad_p4, grad_s = torch.autograd.grad(logits_from_p4(model, p4, b.mask, scalars).sum(), (p4, scalars))
    real = b.mask[..., None].double()
    expected = ((50.0 * grad_p4) ** 2 * real).sum((1, 2)) + (grad_s**2 * real).sum((1, 2))
    torch.testing.assert_close(norms, expected)
