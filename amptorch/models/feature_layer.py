"""The feature layer: stored fingerprints in, an autograd path to positions and strain out.

Forces and stress of every model come from one gradient path (as in NequIP and
TorchANI): :class:`FeatureFunction` takes zero displacements ``positions``
(N, 3) and a zero ``strain`` (B, 3, 3) and returns the stored features
(N, F). Its backward applies the stored derivative blocks,

    grad_pos[j] += g[i] . dfeat[p],   grad_pos[i] -= g[i] . dfeat[p]   (p = (i, j))
    grad_strain[b] = sum_{i in b} g[i] . dfeat_strain[i],

with g = dL/dfeatures, written in differentiable torch ops so that a loss on
the forces can be differentiated again w.r.t. the network parameters (force
training: the second backward goes through ``g``).

Why a Function and not the equivalent plain expression
``features + sum_p dfeat[p] . (pos[j] - pos[i]) + dfeat_strain . strain``:
both give the same value and the same first and second derivatives w.r.t.
the parameters, but the plain expression evaluates the (P, F, 3) contraction
in the forward pass (to add zeros) and keeps it in the graph; the Function's
forward is free. See ``benchmarks/models_micro.py``.
"""

from __future__ import annotations

import torch

from amptorch.data.batch import Batch
from amptorch.errors import InputError


def _pair_grad(
    g: torch.Tensor, dfeat: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, n_atoms: int
) -> torch.Tensor:
    """d L / d positions from g = dL/dfeatures.

    Args:
        g: (N, F) dL/dfeatures.
        dfeat: (P, F, 3) d features[i] / d r_j (feature units per Å).
        pair_i, pair_j: (P,) centre / neighbour atom indices.
        n_atoms: N.

    Returns:
        (N, 3) dL/dr (L units per Å).
    """
    # (P, F) x (P, F, 3) -> (P, 3)
    gp = torch.einsum("pf,pfc->pc", g.index_select(0, pair_i), dfeat)
    out = g.new_zeros((n_atoms, 3))
    # neighbour j moves: + ; centre i moves (translation invariance): -
    return out.index_add(0, pair_j, gp).index_add(0, pair_i, -gp)


def _strain_grad(
    g: torch.Tensor, dfeat_strain: torch.Tensor, image: torch.Tensor, n_structures: int
) -> torch.Tensor:
    """d L / d strain from g = dL/dfeatures.

    Args:
        g: (N, F) dL/dfeatures.
        dfeat_strain: (N, F, 3, 3) d features[i] / d strain.
        image: (N,) structure index of each atom.
        n_structures: B.

    Returns:
        (B, 3, 3) dL/dstrain (L units).
    """
    per_atom = torch.einsum("nf,nfab->nab", g, dfeat_strain)  # (N, 3, 3)
    return g.new_zeros((n_structures, 3, 3)).index_add(0, image, per_atom)


class FeatureFunction(torch.autograd.Function):
    """features(positions, strain) with the stored features as value and the stored blocks as Jacobian.

    forward(ctx, positions (N, 3) Å, strain (B, 3, 3), features (N, F),
    dfeat (P, F, 3), pair_i (P,), pair_j (P,), dfeat_strain (N, F, 3, 3) or None,
    image (N,)) -> features (N, F). ``positions`` and ``strain`` are zero
    displacements: only their gradients matter. Gradients flow to
    ``positions``, ``strain`` and (as the identity) ``features``.
    """

    @staticmethod
    def forward(
        ctx,
        positions: torch.Tensor,
        strain: torch.Tensor | None,
        features: torch.Tensor,
        dfeat: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        dfeat_strain: torch.Tensor | None,
        image: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(dfeat, pair_i, pair_j, dfeat_strain, image)
        ctx.n_atoms = positions.shape[0]
        ctx.n_structures = 0 if strain is None else strain.shape[0]
        return features.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        dfeat, pair_i, pair_j, dfeat_strain, image = ctx.saved_tensors
        grad_pos = grad_strain = grad_feat = None
        if ctx.needs_input_grad[0]:
            grad_pos = _pair_grad(g, dfeat, pair_i, pair_j, ctx.n_atoms)
        if ctx.needs_input_grad[1]:
            grad_strain = _strain_grad(g, dfeat_strain, image, ctx.n_structures)
        if ctx.needs_input_grad[2]:
            grad_feat = g
        return grad_pos, grad_strain, grad_feat, None, None, None, None, None


def batch_features(
    batch: Batch, positions: torch.Tensor | None, strain: torch.Tensor | None = None
) -> torch.Tensor:
    """The batch's features (N, F), differentiable w.r.t. ``positions`` and ``strain``.

    Args:
        batch: tensors already on the device and dtype of ``positions``.
        positions: (N, 3) zero displacements (Å) that require grad, or None
            (no forces: the features are returned as they are when strain is None too).
        strain: (B, 3, 3) zero strain that requires grad, or None (no stress).

    Returns:
        (N, F) features.
    """
    if positions is None and strain is None:
        return batch.features
    if batch.dfeat is None:
        raise InputError(
            "batch: no feature derivatives (dfeat); compute the fingerprints with derivatives=True "
            "for forces or stress"
        )
    if strain is not None and batch.dfeat_strain is None:
        raise InputError(
            "batch: no strain derivatives (dfeat_strain); compute the fingerprints with strain=True "
            "for stress"
        )
    if positions is None:
        positions = batch.features.new_zeros((batch.features.shape[0], 3))
    return FeatureFunction.apply(
        positions,
        strain,
        batch.features,
        batch.dfeat,
        batch.pair_i,
        batch.pair_j,
        batch.dfeat_strain if strain is not None else None,
        batch.image,
    )
