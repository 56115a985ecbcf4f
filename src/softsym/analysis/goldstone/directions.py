"""Pseudo-Goldstone modes: the parameter directions that reproduce a symmetry's action on the inputs, and how
much of the Hessian's near-zero eigenspace they span.

**Exact directions on 4-vector inputs.** When a model reads 4-vectors (``model.inputs=p4`` or ``p4_jet``,
``softsym.models.inputs``) and the generator acts on that input as one matrix Ĝ_a for every jet (G_a on the
four momentum columns, 0 on the scalars: the Lorentz generators on ``p4``; the jet-axis rotation and boost,
J_z and K_z, on ``p4_jet``), the direction is exactly δW = W·Ĝ_a, δb = 0, for *every* layer that reads the
inputs (``model.input_layers()``; W·(I_k ⊗ Ĝ_a) for a layer reading k particles' inputs concatenated). Then
f(θ + εv_a, x) = f(θ, x + εG_a x) to all orders for ``p4`` (the layer sees W(u + εĜ_a u)) and to first order
whatever the model has learnt. ``method`` is ``linear`` then; ``complete`` is False when some other branch
reads the 4-vectors (the transformer's pair features), so the action is only partly reproduced. Otherwise
(relative features, or a generator that turns the jet frame) the least-squares fit below is used
(``method="fit"``). ``softsym.analysis.goldstone.checks.direction_error`` measures either at the output.

**Least-squares directions.** A generator G_a moves each particle's 4-vector by G_a x; through the
feature map this moves the input of the model's first linear layer h = W u + b by a tangent t_a(u)
(computed exactly by forward-mode AD through ``compute_features`` and whatever precedes the layer). The
parameter direction that reproduces it is the least-squares solution of

    J_θ h · v_a ≈ J_x h · (G_a x)      over all real particles of the evaluation set,

restricted to the layer's (W, b): with U = [u, 1] the layer inputs and T_a the tangents, the best affine
action on the layer's input space is Ĝ_a = argmin ‖U Ĝ − T_a‖ (t ≈ L_aᵀ u + c_a), and v_a is
δW = W L_aᵀ, δb = W c_a (for a linear action t = G u this is exactly δW = W·G_a). Then
f_{θ + ε v_a}(x) = f_θ(x + ε t_a) + O(ε²) for *every* model whatever it has learnt: if f_θ is invariant, the
loss is flat along v_a (an exact zero mode); a soft penalty makes it approximately flat. ``fit_r2`` says how
much of the tangent the affine action explains (1 for actions that are linear in the features).

Why not match at the output (J_θ f · v_a ≈ J_x f · (G_a x)), the more obvious condition: for an
invariant model both sides vanish, so the least-squares solution is v_a = 0 and the zero modes are missed;
matching at the first layer keeps the non-zero tangent.

**Overlap** (``hessian_goldstone_overlap``). With eigenpairs (λ_i, u_i), λ_max = max|λ_i| and the near-zero
eigenspace N_ε = span{u_i : |λ_i| < ε·λ_max} (the same ε as ``hessian_near_zero_frac``), let Q be an
orthonormal basis of V = span{v_a} (non-trivial directions only, rank r). Then

    hessian_goldstone_overlap = ‖P_ε Q‖_F² / r = mean of cos² of the principal angles between V and N_ε,

in [0, 1], independent of the choice of generators spanning the symmetry; 1 means every symmetry-induced
direction lies in the near-zero eigenspace. A random direction scores dim(N_ε)/n on average, reported as
``hessian_goldstone_chance``; ``hessian_goldstone_excess`` = (overlap − chance)/(1 − chance) is 0 for random
directions and 1 for directions inside N_ε (useful when most of the spectrum is near zero). Per generator,
‖P_ε v_a‖²/‖v_a‖² and the curvature v_aᵀHv_a/(‖v_a‖² λ_max) are also given. Without eigenvectors (large
models) P_ε is applied by Lanczos quadrature started at each basis vector (the spectral measure of q is
Σ_i (u_iᵀq)² δ(λ − λ_i)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.autograd import forward_ad as fwad

from softsym.analysis.density import quadrature_mass
from softsym.analysis.matvec import as_matvec, parameter_layout
from softsym.data.jets import move_batch, particle_rows
from softsym.models.base import logits_from_p4
from softsym.physics import compute_features
from softsym.physics.symmetries import SYMMETRIES


class _Stop(Exception):
    pass


@dataclass(frozen=True)
class SymmetryDirections:
    vectors: np.ndarray            # [A, n] flat parameter directions (layout: ``param_names``)
    generator_names: tuple[str, ...]
    param_names: tuple[str, ...]   # the flat layout the vectors live in
    layer: str                     # (first) module whose (W, b) the directions move
    feature_generators: np.ndarray  # [A, F(+1), F]: (fitted) affine action on the layer input (rows: L_a; c_a)
    fit_r2: np.ndarray             # [A] fraction of Σ‖t‖² explained by the affine action (1 for ``linear``)
    tangent_rms: np.ndarray        # [A] RMS of the layer-input tangent
    trivial: np.ndarray            # [A] bool: the layer input does not move (the features are invariant)
    layers: tuple[str, ...] = ()   # every module the directions move
    method: str = "fit"            # "linear" (δW = W·Ĝ_a, exact) or "fit" (least squares)
    complete: bool = False         # "linear" and no other branch reads the 4-vectors: the action is exact

    @property
    def exact(self) -> bool:
        return self.method == "linear" and self.complete


@dataclass(frozen=True)
class GoldstoneOverlap:
    overlap: float                 # ‖P_ε Q‖_F² / r
    per_direction: np.ndarray      # [A'] ‖P_ε v_a‖²/‖v_a‖² for the non-trivial directions
    curvature: np.ndarray          # [A'] v_aᵀ H v_a / (‖v_a‖² λ_max)
    n_directions: int              # r
    n_near_zero: float
    threshold: float               # ε·λ_max
    chance: float                  # dim(N_ε)/n
    method: str                    # "exact" (eigenvectors) or "quadrature"
    fit_r2: float = float("nan")   # mean fit_r2 of the non-trivial directions (SymmetryDirections input)

    @property
    def excess(self) -> float:
        """(overlap − chance)/(1 − chance): 0 for random directions, 1 for directions inside N_ε."""
        return (self.overlap - self.chance) / (1 - self.chance) if self.chance < 1 else float("nan")

    def metrics(self) -> dict[str, float]:
        return {"hessian_goldstone_overlap": self.overlap, "hessian_goldstone_chance": self.chance,
                "hessian_goldstone_excess": self.excess,
                "hessian_goldstone_n_directions": float(self.n_directions),
                "hessian_goldstone_curvature": float(np.mean(self.curvature)) if len(self.curvature) else 0.0,
                "hessian_goldstone_fit_r2": self.fit_r2}


def first_linear_layer(model: nn.Module, batch) -> str:
    """Name of the first ``nn.Linear`` the forward pass reaches."""
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    found: list[str] = []

    def hook(mod, inp):
        found.append(names[id(mod)])
        raise _Stop

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            logits_from_p4(model, batch.p4, batch.mask, batch.scalars)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ValueError("the model has no nn.Linear reached by its forward pass; pass layer=... explicitly")
    return found[0]


def _layer_input_tangent(model: nn.Module, module: nn.Module, batch, tangent_p4: torch.Tensor):
    """(u, du) at the input of ``module`` for the input tangent ``tangent_p4`` (forward-mode AD)."""
    captured = {}

    def hook(mod, inp):
        captured["u"] = inp[0]
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad(), fwad.dual_level():
            dual = fwad.make_dual(batch.p4, tangent_p4)
            try:
                logits_from_p4(model, dual, batch.mask, batch.scalars)
            except _Stop:
                pass
            if "u" not in captured:
                raise ValueError("the forward pass did not reach the chosen layer")
            primal, tangent = fwad.unpack_dual(captured["u"])
            primal = primal.detach().clone()
            tangent = torch.zeros_like(primal) if tangent is None else tangent.detach().clone()
    finally:
        handle.remove()
    return primal, tangent


def symmetry_directions(model: nn.Module, batches, symmetry: str, *, layer: str | None = None,
                        param_names: list[str] | None = None, generators=None) -> SymmetryDirections:
    """The directions v_a (module docstring) for the generators of ``symmetry`` (``rotation``, ``boost``,
    ``lorentz``; the jet-axis ones per jet, as in the penalty), or for ``generators(p4, mask) -> [B, A, 4, 4]``.
    ``layer``: the module to move (default: the first ``nn.Linear`` of the forward pass); ``param_names``:
    the flat layout of the result (default: all parameters that require grad, as ``HessianOperator``)."""
    was_training = model.training
    model.eval()
    try:
        batches = list(batches)
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device
        sym = SYMMETRIES.build(symmetry) if generators is None else None

        def generators_of(batch):
            return sym.generators(batch.p4, batch.mask) if sym is not None else generators(batch.p4, batch.mask)

        names = sym.generator_names if sym is not None else None
        if layer is None or layer in _input_layers(model):
            action = _uniform_input_action(model, batches, generators_of, device, dtype)
            if action is not None:
                return _linear_directions(model, batches, action, names, param_names, device, dtype)
        layer = layer or first_linear_layer(model, batches[0])
        module = dict(model.named_modules())[layer]
        if not isinstance(module, nn.Linear):
            raise ValueError(f"layer {layer!r} is a {type(module).__name__}; symmetry directions need an nn.Linear")
        has_bias = module.bias is not None
        XtX = XtT = sst = None
        n_rows = 0
        for batch in batches:
            batch = move_batch(batch, device, dtype)
            gens = generators_of(batch)
            n_gen = gens.shape[1]
            for a in range(n_gen):
                tan_p4 = torch.einsum("bjk,bpk->bpj", gens[:, a].to(dtype), batch.p4)
                tan_p4 = tan_p4 * batch.mask.unsqueeze(-1).to(dtype)
                u, du = _layer_input_tangent(model, module, batch, tan_p4)
                U, T = particle_rows(u, batch.mask).double(), particle_rows(du, batch.mask).double()
                if has_bias:
                    U = torch.cat([U, torch.ones(U.shape[0], 1, dtype=U.dtype, device=U.device)], 1)
                if XtX is None:
                    XtX = torch.zeros(U.shape[1], U.shape[1], dtype=torch.float64, device=U.device)
                    XtT = torch.zeros(n_gen, U.shape[1], T.shape[1], dtype=torch.float64, device=U.device)
                    sst = torch.zeros(n_gen, dtype=torch.float64, device=U.device)
                if a == 0:
                    XtX += U.T @ U
                    n_rows += U.shape[0]
                XtT[a] += U.T @ T
                sst[a] += (T * T).sum()
        if names is None or len(names) != XtT.shape[0]:
            names = tuple(f"G_{a}" for a in range(XtT.shape[0]))
        pinv = torch.linalg.pinv(XtX, rtol=1e-10, hermitian=True)
        Ghat = pinv @ XtT                                      # [A, F(+1), F]
        sse = sst - 2 * (Ghat * XtT).sum((1, 2)) + torch.einsum("aif,ij,ajf->a", Ghat, XtX, Ghat)
        r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300), torch.ones_like(sst))
        rms = torch.sqrt(sst / max(n_rows, 1) / XtT.shape[2])
        W = module.weight.detach().double()
        layout = parameter_layout(model, param_names)
        blocks = {b.name: b for b in layout}
        wname, bname = f"{layer}.weight", f"{layer}.bias"
        if wname not in blocks:
            raise ValueError(f"{wname} is not among the analysed parameters")
        n = sum(b.numel for b in layout)
        vectors = np.zeros((XtT.shape[0], n))
        u_scale = float(torch.sqrt(torch.diagonal(XtX).mean() / max(n_rows, 1)))
        trivial = (rms / max(u_scale, 1e-300) < 1e-7).cpu().numpy()
        for a in range(XtT.shape[0]):
            L = Ghat[a, : W.shape[1]]                          # [F, F]: t ≈ L^T u (+ c)
            dW = W @ L.T
            vectors[a, blocks[wname].slice] = dW.reshape(-1).cpu().numpy()
            if has_bias and bname in blocks:
                vectors[a, blocks[bname].slice] = (W @ Ghat[a, W.shape[1]]).cpu().numpy()
        return SymmetryDirections(vectors, tuple(names), tuple(b.name for b in layout), layer,
                                  Ghat.cpu().numpy(), r2.cpu().numpy(), rms.cpu().numpy(), trivial, (layer,))
    finally:
        model.train(was_training)


def _input_layers(model: nn.Module) -> dict[str, int]:
    input_map = getattr(model, "input_map", None)
    if input_map is None or not input_map.reads_p4:
        return {}
    return model.input_layers()


# Ĝ_a counts as one matrix for every jet when no jet's differs from the mean by more than this (float64,
# relative to max(1, max|Ĝ|)); jet-frame generators differ from J_z, K_z only by the rounding of the axis.
_UNIFORM_TOLERANCE = 1e-5


def _uniform_input_action(model, batches, generators_of, device, dtype) -> torch.Tensor | None:
    """Ĝ ``[A, n_in, n_in]`` (float64) if every generator acts on the model's 4-vector inputs as the same
    matrix for every jet of ``batches`` (``ParticleInputs.input_generators``), else None."""
    if not _input_layers(model):
        return None
    per_jet = []
    for batch in batches:
        batch = move_batch(batch, device, dtype)
        real = batch.mask.any(-1)
        per_jet.append(model.input_map.input_generators(generators_of(batch), batch.p4, batch.mask)[real])
    per_jet = torch.cat(per_jet)
    if per_jet.shape[0] == 0:
        return None
    mean = per_jet.mean(0)
    spread = float((per_jet - mean).abs().max())
    return mean if spread <= _UNIFORM_TOLERANCE * max(1.0, float(mean.abs().max())) else None


def _linear_directions(model, batches, action: torch.Tensor, names, param_names, device, dtype
                       ) -> SymmetryDirections:
    """δW = W·(I_k ⊗ Ĝ_a), δb = 0 on every input layer (module docstring, exact directions)."""
    n_gen, n_in = action.shape[0], action.shape[-1]
    layers = _input_layers(model)
    modules = dict(model.named_modules())
    layout = parameter_layout(model, param_names)
    blocks = {b.name: b for b in layout}
    vectors = np.zeros((n_gen, sum(b.numel for b in layout)))
    for name, k in layers.items():
        module = modules[name]
        if f"{name}.weight" not in blocks:
            raise ValueError(f"{name}.weight reads the model's inputs but is not among the analysed parameters")
        W = module.weight.detach().double()
        if W.shape[1] != k * n_in:
            raise ValueError(f"{name} reads {W.shape[1]} inputs, expected {k} x {n_in}")
        for a in range(n_gen):
            full = torch.kron(torch.eye(k, dtype=torch.float64, device=W.device), action[a].to(W.device))
            vectors[a, blocks[f"{name}.weight"].slice] = (W @ full).reshape(-1).cpu().numpy()
    sq_u = sq_t = 0.0
    n_rows = 0
    for batch in batches:
        batch = move_batch(batch, device, dtype)
        u = model.input_map(compute_features(batch.p4, batch.mask, batch.scalars), batch.p4, batch.mask)
        u = u[batch.mask].double()
        sq_u += float((u * u).sum())
        sq_t += (torch.einsum("aij,nj->ani", action.to(u.device), u) ** 2).sum((1, 2)).cpu().numpy()
        n_rows += u.shape[0]
    rms = np.sqrt(np.asarray(sq_t, dtype=np.float64) / max(n_rows, 1) / n_in) * np.ones(n_gen)
    u_scale = np.sqrt(sq_u / max(n_rows, 1) / n_in)
    first = next(iter(layers))
    bias = modules[first].bias is not None
    feature_generators = action.transpose(-1, -2).cpu().numpy()  # rows L_a = Ĝ_aᵀ (t = L_aᵀ u)
    if bias:
        feature_generators = np.concatenate([feature_generators, np.zeros((n_gen, 1, n_in))], axis=1)
    if names is None or len(names) != n_gen:
        names = tuple(f"G_{a}" for a in range(n_gen))
    return SymmetryDirections(vectors, tuple(names), tuple(b.name for b in layout), first, feature_generators,
                              np.ones(n_gen), rms, rms / max(u_scale, 1e-300) < 1e-7, tuple(layers), "linear",
                              not getattr(model, "reads_p4_elsewhere", False))


def _orthonormal_basis(V: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis [n, r] of the span of the rows of V."""
    U, s, _ = np.linalg.svd(V.T, full_matrices=False)
    if len(s) == 0 or s[0] == 0:
        return np.zeros((V.shape[1], 0))
    return U[:, s > rtol * s[0]]


def goldstone_overlap(directions: SymmetryDirections | np.ndarray, *, eigenvalues: np.ndarray | None = None,
                      eigenvectors: np.ndarray | None = None, op=None, lambda_max: float | None = None,
                      near_zero_eps: float = 1e-3, near_zero_frac: float | None = None, n_steps: int = 80,
                      seed: int = 0) -> GoldstoneOverlap:
    """The overlap of the module docstring. Exact from a full eigendecomposition (``eigenvalues`` and
    ``eigenvectors``, columns), else by Lanczos quadrature on ``op`` with the given ``lambda_max`` (and
    ``near_zero_frac`` from SLQ for the chance level)."""
    fit_r2 = float("nan")
    if isinstance(directions, SymmetryDirections):
        V = directions.vectors[~directions.trivial]
        if (~directions.trivial).any():
            fit_r2 = float(np.mean(directions.fit_r2[~directions.trivial]))
    else:
        V = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    norms = np.linalg.norm(V, axis=1)
    V = V[norms > 0]
    norms = norms[norms > 0]
    Q = _orthonormal_basis(V) if len(V) else np.zeros((0, 0))
    r = Q.shape[1] if len(V) else 0
    if eigenvectors is not None:
        lam = np.asarray(eigenvalues, dtype=np.float64)
        lmax = float(np.abs(lam).max()) if lambda_max is None else lambda_max
        thr = near_zero_eps * lmax
        near = np.abs(lam) < thr
        U0 = eigenvectors[:, near]
        if r == 0:
            return GoldstoneOverlap(0.0, np.zeros(0), np.zeros(0), 0, float(near.sum()), thr,
                                    float(near.mean()), "exact", fit_r2)
        per = np.sum((U0.T @ V.T) ** 2, axis=0) / norms ** 2
        coeff = eigenvectors.T @ V.T                          # [n, A]
        curv = (lam[:, None] * coeff ** 2).sum(0) / norms ** 2 / lmax
        overlap = float(np.sum((U0.T @ Q) ** 2) / r)
        return GoldstoneOverlap(overlap, per, curv, r, float(near.sum()), thr, float(near.mean()), "exact", fit_r2)
    if op is None or lambda_max is None:
        raise ValueError("give eigenvalues and eigenvectors, or op and lambda_max")
    thr = near_zero_eps * lambda_max
    pred = lambda x: np.abs(x) < thr  # noqa: E731
    matvec, n, _ = as_matvec(op)
    chance = float(near_zero_frac) if near_zero_frac is not None else float("nan")
    if r == 0:
        return GoldstoneOverlap(0.0, np.zeros(0), np.zeros(0), 0, chance * n, thr, chance, "quadrature", fit_r2)
    overlap = float(np.mean([quadrature_mass(op, Q[:, j], pred, n_steps=n_steps, seed=seed + j)
                             for j in range(r)]))
    per = np.array([quadrature_mass(op, v, pred, n_steps=n_steps, seed=seed) for v in V])
    curv = np.array([float(torch.as_tensor(v) @ matvec(torch.as_tensor(v))) for v in V]) / norms ** 2 / lambda_max
    return GoldstoneOverlap(overlap, per, curv, r, chance * n, thr, chance, "quadrature", fit_r2)
