"""Pruning and quantisation: identities at the trivial settings, sizes, and the caller's model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softsym.analysis import compressibility, evaluate_auc, magnitude_prune, model_bits, quantize_weights
from softsym.data.synthetic import synthetic_jets
from softsym.models.pfn import PFN


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    arrays = synthetic_jets(40, max_particles=12, seed=5)
    model = PFN(8, 2, phi_sizes=[16], latent_dim=8, head_sizes=[16])
    return model, [arrays.subset(np.arange(0, 50)).to_batch(), arrays.subset(np.arange(50, 80)).to_batch()]


def test_trivial_settings_reproduce_the_auc(setup):
    model, batches = setup
    auc = evaluate_auc(model, batches)
    pruned, masks = magnitude_prune(model, 0.0)
    assert evaluate_auc(pruned, batches) == auc
    assert all(m.all() for m in masks.values())
    assert evaluate_auc(quantize_weights(model, 16), batches) == pytest.approx(auc, abs=1e-3)
    assert evaluate_auc(quantize_weights(model, 16, per_channel=True), batches) == pytest.approx(auc, abs=1e-3)


def test_pruning_and_quantisation_do_what_they_say(setup):
    model, _ = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, masks = magnitude_prune(model, 0.7)
    weights = [p for n, p in pruned.named_parameters() if p.dim() >= 2]
    n_w = sum(p.numel() for p in weights)
    assert sum(int((p == 0).sum()) for p in weights) == round(0.7 * n_w)
    kept = torch.cat([p.detach().abs().reshape(-1)[p.detach().reshape(-1) != 0] for p in weights])
    dropped = torch.cat([q.detach().abs().reshape(-1)[~m.reshape(-1)]
                         for (n, q), m in zip([(n, q) for n, q in model.named_parameters() if q.dim() >= 2],
                                              masks.values(), strict=True)])
    assert float(kept.min()) >= float(dropped.max())  # the smallest magnitudes went, globally
    q4 = quantize_weights(model, 4)
    for (_n, p), (_, q) in zip(model.named_parameters(), q4.named_parameters(), strict=True):
        if p.dim() >= 2:
            assert len(torch.unique(q)) <= 15
        else:
            assert torch.equal(p, q)  # biases stay float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    n = sum(p.numel() for p in model.parameters())
    assert model_bits(model) == 32 * n
    assert model_bits(model, bits=8) < model_bits(model) < model_bits(model, sparsity=0.0, bits=None) + 1
    assert model_bits(model, sparsity=0.9) < model_bits(model, sparsity=0.5)


def test_compressibility_metrics_and_smallest_size(setup):
    model, batches = setup
    seen = []
    res = compressibility(model, batches, sparsities=(0.0, 0.5, 0.9), bits=(8, 4), combine=True,
                          finetune=lambda m, masks: seen.append(len(masks)))
    metrics = res.metrics()
    for key in ("prune_auc_at_0", "prune_auc_at_0.5", "prune_auc_at_0.9", "quant_auc_8bit", "quant_auc_4bit",
                "compressed_bits"):
        assert key in metrics
    assert metrics["prune_auc_at_0"] == res.auc
    assert seen and all(s > 0 for s in seen)  # the fine-tune hook ran on the pruned copies
    assert res.compressed_bits <= res.original_bits
    assert res.aucs[res.compressed_config] >= (1 - res.tolerance) * res.auc
    smaller = [label for label, bits in res.sizes.items() if bits < res.compressed_bits]
    assert all(res.aucs[label] < (1 - res.tolerance) * res.auc for label in smaller)
    import tempfile
    from pathlib import Path

    from softsym.analysis.plots import plot_compression

    with tempfile.TemporaryDirectory() as d:
        assert plot_compression(res, Path(d) / "c.png").stat().st_size > 0


def test_masked_finetune_keeps_the_sparsity(setup):
    from softsym.analysis import masked_finetune
    from softsym.data.loaders import InMemoryLoader

    model, _ = setup
    arrays = synthetic_jets(16, max_particles=12, seed=6)
    hook = masked_finetune(InMemoryLoader(arrays, batch_size=16, shuffle=True), InMemoryLoader(arrays, batch_size=32),
                           epochs=1, lr=1e-2)
    pruned, masks = magnitude_prune(model, 0.8)
    before = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    hook(pruned, masks)
    named = dict(pruned.named_parameters())
    assert all(bool((named[n][~m] == 0).all()) for n, m in masks.items())
    assert any(not torch.equal(before[n], p) for n, p in named.items())  # it did train


def _rescaled(model, seed: int):
    """A copy with every rescalable hidden unit's incoming weights × c_i and outgoing × 1/c_i (c_i > 0)."""
    import copy

    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a, b in (("phi.0", "phi.2"), ("phi.2", "phi.4"), ("phi.4", "head.0"), ("head.0", "head.2")):
            c = torch.exp(3 * torch.rand(mods[a].out_features, generator=g, dtype=torch.float64) - 1.5).to(
                mods[a].weight.dtype)
            mods[a].weight.mul_(c[:, None])
            mods[a].bias.mul_(c)
            mods[b].weight.div_(c[None, :])
    return out


def test_a_rescaled_copy_compresses_the_same():
    from softsym.analysis.rescaling import balance_relu_units, rescalable_pairs

    torch.manual_seed(1)
    arrays = synthetic_jets(60, max_particles=12, seed=8)
    batches = [arrays.subset(np.arange(0, 70)).to_batch(), arrays.subset(np.arange(70, 120)).to_batch()]
    batches = [type(b)(b.p4.double(), b.mask, b.labels, b.scalars.double()) for b in batches]
    model = PFN(8, 2, phi_sizes=[16, 16], latent_dim=8, head_sizes=[16]).double()
    from softsym.analysis import jet_task_loss

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):  # a trained tagger: scores without ties, so AUCs compare exactly
        for batch in batches:
            opt.zero_grad()
            jet_task_loss(model, batch).backward()
            opt.step()
    copy_ = _rescaled(model, seed=3)
    assert evaluate_auc(copy_, batches) == pytest.approx(evaluate_auc(model, batches), abs=1e-12)  # same function
    assert rescalable_pairs(model, batches[0]) == [("phi.0", "phi.2"), ("phi.2", "phi.4"), ("phi.4", "head.0"),
                                                   ("head.0", "head.2")]
    a, b = balance_relu_units(model, batches[0]).model, balance_relu_units(copy_, batches[0]).model
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-8, atol=1e-12)  # one balanced point per orbit
    kw = dict(sparsities=(0.0, 0.5, 0.8, 0.9), bits=(8, 4), combine=True)
    ra, rb = compressibility(model, batches, **kw), compressibility(copy_, batches, **kw)
    assert ra.compressed_bits == rb.compressed_bits and ra.compressed_config == rb.compressed_config
    for label, auc in ra.aucs.items():
        assert rb.aucs[label] == pytest.approx(auc, abs=1e-9), label
    assert ra.balanced_units == 16 + 16 + 8 + 16
    # without balancing the ranking follows the arbitrary scales: the pruned copies differ
    ua, ub = compressibility(model, batches, balance=False, **kw), compressibility(copy_, batches, balance=False, **kw)
    assert any(abs(ua.aucs[k] - ub.aucs[k]) > 1e-6 for k in ua.aucs)


def test_compressed_bits_is_selected_on_the_selection_set(setup):
    model, batches = setup
    select = [synthetic_jets(30, max_particles=12, seed=9).to_batch()]
    res = compressibility(model, batches, select_batches=select, sparsities=(0.0, 0.5, 0.9, 0.95), bits=(8, 4, 2),
                          combine=True)
    assert res.select_aucs["original"] == pytest.approx(evaluate_auc(model, select), abs=1e-9)
    assert res.auc == pytest.approx(evaluate_auc(model, batches), abs=1e-9)  # trimmed, cached features: same AUC
    chosen = res.compressed_config
    assert res.select_aucs[chosen] >= (1 - res.tolerance) * res.select_aucs["original"]
    smaller = [label for label, bits in res.sizes.items() if bits < res.compressed_bits]
    assert all(res.select_aucs[label] < (1 - res.tolerance) * res.select_aucs["original"] for label in smaller)
    m = res.metrics()
    assert m["compressed_auc"] == res.aucs[chosen] and m["compressed_auc_select"] == res.select_aucs[chosen]
    assert m["prune_auc_at_0.5"] == res.prune_auc[0.5] == res.aucs["prune0.5"]  # reported on the evaluation set
