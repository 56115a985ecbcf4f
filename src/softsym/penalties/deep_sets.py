"""The infinitesimal symmetry penalty of a ReLU Deep-Sets network (the PFN) with a hand-written backward.

For f(x) = F(Σ_i Φ(x_i)) with Φ and F made of Linear and ReLU layers and one output, ReLU's second
derivative vanishes almost everywhere, which makes the penalised gradient cheap and still exact:

- one adjoint pass a_l = ∂(Σ_b f_b)/∂s_l (s_l: pre-activations of layer l) gives ∇_x f, and through the
  closed-form feature Jacobian ∇_p f, hence every generator's derivative d_ab = ⟨∇_p f_b, G_ab p_b⟩;
- f is multilinear in the weights within an activation region, so ∂d_ab/∂W_l = Σ_i a_l,i ⊗ t_ab,l-1,i, where
  t is the tangent propagated forward with the primal ReLU masks, and the task loss's adjoint is ω_b a_l
  with ω_b = ∂L/∂f_b: the same adjoint serves the task loss and the penalty;
- t is linear in the feature tangent u_ab of generator a, so all generators together need one tangent
  pass, of ũ_b = Σ_a (∂L/∂d_ab) u_ab: the feature tangent of the single generator Σ_a (∂L/∂d_ab) G_ab.

The gradient of task + λ·penalty then takes a forward pass, the adjoint pass, one tangent pass and one
weight-gradient product per layer, ∂L/∂W_l = a_lᵀ (ω h_l-1 + t̃_l-1): four matrix products per layer
against three for the unpenalised step, whatever the number of generators. Double backward through
autograd, the generic path in ``symmetry.py``, takes six plus its bookkeeping. ``tests/test_penalties.py``
checks value and gradients against it.
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.models.pfn import PFN
from softsym.physics.features import FeatureJacobian, compute_features, feature_jacobian

Layers = tuple[tuple[nn.Linear, bool], ...]  # (linear layer, followed by a ReLU)


def _relu_mask(grad: torch.Tensor, activation: torch.Tensor, *, in_place: bool) -> torch.Tensor:
    """grad · [activation > 0] in one pass with ReLU's own backward kernel; in place avoids a fresh buffer
    (whose page faults cost as much as the pass itself on this CPU)."""
    if in_place:
        return torch.ops.aten.threshold_backward.grad_input(grad, activation, 0, grad_input=grad)
    return torch.ops.aten.threshold_backward(grad, activation, 0)


def relu_layers(sequence: nn.Sequential) -> Layers | None:
    """The (Linear, ReLU follows) pairs of a Linear/ReLU stack, or None if it holds any other module (or a
    Linear without bias)."""
    modules = list(sequence)
    if not all(isinstance(m, nn.ReLU) or (isinstance(m, nn.Linear) and m.bias is not None) for m in modules):
        return None
    return tuple((m, i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU))
                 for i, m in enumerate(modules) if isinstance(m, nn.Linear))


def supports_deep_sets_penalty(model: nn.Module) -> bool:
    """Whether ``deep_sets_penalty`` applies: a single-output PFN on relative features built of Linear and
    ReLU layers only."""
    return (isinstance(model, PFN) and model.n_outputs == 1 and not model.input_map.reads_p4
            and relu_layers(model.phi) is not None and relu_layers(model.head) is not None)


def _linear(x: torch.Tensor, layer: nn.Linear, bias: bool) -> torch.Tensor:
    return torch.addmm(layer.bias, x, layer.weight.t()) if bias else x @ layer.weight.t()


def _narrow(layer: nn.Linear) -> bool:
    """A layer with at most half as many inputs as outputs (the 8 particle features into Φ): MKL is 4-7x
    faster on the transposed products below for it (autograd's nn.Linear backward does not transpose)."""
    return 2 * layer.in_features <= layer.out_features


def _input_adjoint(adjoint: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    w = layer.weight
    return (w.t() @ adjoint.t()).t() if _narrow(layer) else adjoint @ w


def _weight_gradient(adjoint: torch.Tensor, inputs: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return (inputs.t() @ adjoint).t().contiguous() if _narrow(layer) else adjoint.t() @ inputs


class _DeepSetsPenalty(torch.autograd.Function):
    """(logits [B, 1], mean_b Σ_a d_ab²) of a ReLU Deep-Sets network, differentiable in its parameters."""

    @staticmethod
    def forward(ctx, features, jacobian: FeatureJacobian, generators, phi: Layers, head: Layers,
                *params):  # noqa: ARG004
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2] or jacobian.p4.requires_grad:
            raise RuntimeError("deep_sets_penalty differentiates the parameters only, not the jets")
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not zeros
        batch, particles, n_features = features.shape
        layers = phi + head
        # outputs[k]: layer k's activation; ReLU's derivative is [outputs[k] > 0]. Φ's last one is taken
        # times the particle mask, so the same test also zeroes padded particles.
        inputs, outputs = [], []
        h = features.reshape(-1, n_features)
        for k, (layer, relu) in enumerate(layers):
            if k == len(phi):  # the masked sum over particles
                outputs[-1] = h = h.view(batch, particles, -1).mul_(jacobian.mask.unsqueeze(-1).to(h.dtype))
                h = h.sum(1)
            inputs.append(h)
            h = _linear(h, layer, bias=True)
            outputs.append(h.relu_() if relu else None)
        logits = h
        adjoints = [None] * len(layers)
        a = torch.ones_like(logits)
        for k in reversed(range(len(layers))):
            if outputs[k] is not None:  # a broadcasts over particles after the sum: not in place there
                a = _relu_mask(a, outputs[k], in_place=a.shape == outputs[k].shape)
            adjoints[k] = a.view(-1, a.shape[-1])
            a = _input_adjoint(adjoints[k], layers[k][0])
            if k == len(phi):  # the sum's adjoint: every particle of the jet gets the jet's (broadcast)
                a = a.unsqueeze(1)
        # d_ab = ⟨∇_p f, G_ab p⟩ = ⟨G_ab, M_b⟩ with M_b = Σ_i ∇_{p_i} f ⊗ p_i: every generator at once
        grad_particle, grad_jet = jacobian.pull(a.reshape(batch, particles, n_features))
        moments = (torch.einsum("bpj,bpk->bjk", grad_particle, jacobian.p4)
                   + torch.einsum("bj,bk->bjk", grad_jet, jacobian.jet))
        derivatives = torch.einsum("bajk,bjk->ab", generators, moments)
        ctx.relu = [o is not None for o in outputs]  # None cannot go through save_for_backward
        ctx.jacobian = jacobian  # data only: no graph, so holding it on ctx makes no reference cycle
        ctx.save_for_backward(generators, derivatives, *inputs,
                              *[o for o in outputs if o is not None], *adjoints)
        ctx.phi, ctx.head = phi, head
        return logits, derivatives.square().sum(0).mean()

    @staticmethod
    def backward(ctx, grad_logits, grad_penalty):
        generators, derivatives, *saved = ctx.saved_tensors
        jacobian = ctx.jacobian
        layers = ctx.phi + ctx.head
        n_layers, n_phi, n_relu = len(layers), len(ctx.phi), sum(ctx.relu)
        inputs, adjoints = saved[:n_layers], saved[n_layers + n_relu:]
        relu_outputs = iter(saved[n_layers:n_layers + n_relu])
        outputs = [next(relu_outputs) if relu else None for relu in ctx.relu]
        batch, particles, n_features = *jacobian.mask.shape, jacobian.n_features
        task_loss_used = grad_logits is not None
        if not task_loss_used:
            grad_logits = derivatives.new_zeros(batch, 1)
        if grad_penalty is None:
            grad_penalty = derivatives.new_zeros(())
        # t̃: the feature tangent of the one generator Σ_a (∂L/∂d_ab) G_ab per jet
        combined = torch.einsum("ab,bajk->bjk", derivatives * (2 * grad_penalty / batch), generators)
        t = jacobian.push(torch.einsum("bjk,bpk->bpj", combined, jacobian.p4)).reshape(-1, n_features)
        row_grad_logits = grad_logits.view(batch, 1, 1).expand(batch, particles, 1).reshape(-1, 1)
        grads = []
        # Fresh 4 MB buffers cost page faults worth a whole elementwise pass on this CPU, so the products
        # below write into saved buffers that nothing needs any more (a second backward would then fail
        # autograd's in-place check rather than give wrong numbers).
        for k, (layer, _) in enumerate(layers):
            if k == n_phi:  # padded particles' tangents are already zero (see forward)
                t = t.view(batch, particles, -1).sum(1)
            omega = row_grad_logits if k < n_phi else grad_logits
            # ω h + t̃; layer 0's input is the caller's features, every other one is this function's own
            mixed = torch.addcmul(t, inputs[k], omega, out=inputs[k]) if k else torch.addcmul(t, inputs[k], omega)
            grads.append(_weight_gradient(adjoints[k], mixed, layer))
            # the bias: the task loss alone (a shift inside a linear region moves no derivative)
            grads.append(adjoints[k].t() @ omega.squeeze(1) if task_loss_used else None)
            if k + 1 < n_layers:  # the next tangent, into layer k's adjoint (its shape, now unused)
                t = torch.mm(t, layer.weight.t(), out=adjoints[k])
                if outputs[k] is not None:
                    t = _relu_mask(t, outputs[k].view(t.shape), in_place=True)
        return None, None, None, None, None, *grads


def deep_sets_penalty(model: PFN, p4: torch.Tensor, mask: torch.Tensor, scalars: torch.Tensor | None,
                      generators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits ``[B, 1]``, mean_b Σ_a ‖J_f · G_ab x_b‖²) for a PFN with ``supports_deep_sets_penalty``.

    ``generators [B, A, 4, 4]`` act on the 4-vectors ``p4 [B, P, 4]``; the jets are data, not differentiated.
    """
    features = compute_features(p4, mask, scalars)
    phi, head = relu_layers(model.phi), relu_layers(model.head)
    params = [p for layer, _ in phi + head for p in (layer.weight, layer.bias)]
    return _DeepSetsPenalty.apply(features, feature_jacobian(p4, mask, features), generators, phi, head, *params)
