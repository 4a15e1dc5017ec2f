"""Gaussian symmetry functions as a differentiable torch function of positions and cell: the C++ kernel's twin.

Same functions and conventions as ``src/gsf.cpp`` (read from the descriptor's
``kernel_tables``, so the parameters have one source):

    G2 = sum_{j in channel}          exp(-eta (R_ij - Rs)^2) fc(R_ij)
    G4 = 2^(1-zeta) sum_{j<k in pair channel} (1 + lambda cos theta_jik)^zeta
         exp(-eta (R_ij^2 + R_ik^2 + R_jk^2)) fc(R_ij) fc(R_ik) fc(R_jk)
    G5 = the same without the R_jk terms,

over neighbour images (periodic self-images included, the centre not), j < k
over unordered pairs of images; a term with 1 + lambda cos <= 0, or with two
images closer than 1e-4 Å, adds nothing (as in the kernel).

Shapes: N atoms, P neighbour images, T image pairs of one centre (j < k),
F features, S species (the descriptor's elements, sorted by Z).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers

from amptorch.models.twin_terms import Twin, cutoff_function

CUTOFF_KINDS = {1: "cosine", 2: "polynomial"}


def image_pairs(pair_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) (T,) every unordered pair a < b of neighbour images with the same centre; ``pair_i`` sorted."""
    n = len(pair_i)
    end = np.searchsorted(pair_i, pair_i, side="right")  # (P,) one past the last image of the same centre
    after = end - np.arange(n) - 1  # images of the same centre after a
    a = np.repeat(np.arange(n), after)
    first = np.repeat(np.cumsum(after) - after, after)  # where each a's run starts in the output
    b = a + 1 + (np.arange(len(a)) - first)
    return a.astype(np.int64), b.astype(np.int64)


class GSFTorch(Twin):
    """Differentiable Gaussian symmetry functions from positions, cell and a neighbour list.

    Args:
        gsf: an ``amptorch.descriptors.GaussianSF``; its tables and cutoff are
            copied into buffers (``.to(device, dtype)`` moves them).

    Called as ``Twin`` says, with the neighbour list of ``twin_terms.neighbor_list``.
    """

    what = "the symmetry functions'"

    def __init__(self, gsf):
        super().__init__()
        t = gsf.kernel_tables
        self.cutoff = float(gsf.cutoff)
        self.cutoff_kind = CUTOFF_KINDS[int(t.cutoff_kind)]
        self.cutoff_gamma = float(t.cutoff_gamma)
        self.n_features = int(gsf.length)
        f64, i64 = torch.float64, torch.long
        for name in ("kind", "el1", "el2"):
            self.register_buffer(name, torch.as_tensor(np.array(getattr(t, name)), dtype=i64))  # (S, F)
        for name in ("eta", "rs", "lam"):
            self.register_buffer(name, torch.as_tensor(np.array(getattr(t, name)), dtype=f64))  # (S, F)
        self.set_elements(atomic_numbers[e] for e in gsf.elements)  # the tables' rows: elements sorted by Z
        # radial (G2) and angular (G4/G5) columns, each term type evaluated on its own columns only; the
        # features are the two blocks side by side, put back in the tables' order by ``order``
        kind = np.array(t.kind)
        same = bool((kind == kind[:1]).all())  # one column layout for every centre species (as GaussianSF writes)
        radial = kind[0] == 2 if same else np.ones(kind.shape[1], dtype=bool)
        angular = kind[0] != 2 if same else np.ones(kind.shape[1], dtype=bool)
        self.register_buffer("radial_cols", torch.as_tensor(np.flatnonzero(radial), dtype=i64))
        self.register_buffer("angular_cols", torch.as_tensor(np.flatnonzero(angular), dtype=i64))
        self.split = same
        self.register_buffer("order", torch.as_tensor(np.argsort(np.concatenate([np.flatnonzero(radial),
                                                                                 np.flatnonzero(angular)]),
                                                                 kind="stable"), dtype=i64))  # fmt: skip

    def features(self, sp: torch.Tensor, d: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor) -> torch.Tensor:
        """Features (N, F) from species rows (N,) and image displacements d (P, 3) Å (see ``Twin``)."""
        n = sp.shape[0]
        r = torch.sqrt((d * d).sum(-1))  # (P,)
        fc = cutoff_function(r, self.cutoff, self.cutoff_kind, self.cutoff_gamma)  # (P,)
        si, ch = sp[pair_i], sp[pair_j]  # centre species, neighbour channel (P,)

        # G2: (P, F2), rows of the centre's species; a term counts where the row's channel is the neighbour's
        cols = self.radial_cols
        kind, el1, eta, rs = (x.index_select(1, cols)[si] for x in (self.kind, self.el1, self.eta, self.rs))
        on = (kind == 2) & (el1 == ch.unsqueeze(-1))
        g2 = torch.exp(-eta.to(d.dtype) * (r.unsqueeze(-1) - rs.to(d.dtype)) ** 2) * fc.unsqueeze(-1)
        radial = d.new_zeros((n, cols.shape[0])).index_add(0, pair_i, torch.where(on, g2, torch.zeros_like(g2)))

        # G4 / G5: (T, F4) over image pairs a < b of one centre
        cols = self.angular_cols
        a_np, b_np = image_pairs(pair_i.cpu().numpy())
        a, b = torch.as_tensor(a_np, device=d.device), torch.as_tensor(b_np, device=d.device)
        centre = pair_i[a]
        s = sp[centre]
        lo, hi = torch.minimum(ch[a], ch[b]), torch.maximum(ch[a], ch[b])
        kind, el1, el2 = (x.index_select(1, cols)[s] for x in (self.kind, self.el1, self.el2))
        on = (kind != 2) & (el1 == lo.unsqueeze(-1)) & (el2 == hi.unsqueeze(-1))
        da, db = d[a], d[b]
        dab = db - da
        r3 = torch.sqrt((dab * dab).sum(-1))  # (T,)
        cos = (da * db).sum(-1) / (r[a] * r[b])
        g4 = kind == 4
        fc3 = cutoff_function(r3, self.cutoff, self.cutoff_kind, self.cutoff_gamma)
        eta, zeta, lam = (x.index_select(1, cols)[s].to(d.dtype) for x in (self.eta, self.rs, self.lam))
        base = 1.0 + lam * cos.unsqueeze(-1)  # (T, F4)
        on = on & (base > 0) & (r3 >= 1e-4).unsqueeze(-1)
        base = torch.where(on, base, torch.ones_like(base))  # masked terms: finite powers, no NaN gradients
        r2sum = (r[a] ** 2 + r[b] ** 2).unsqueeze(-1) + torch.where(g4, (r3 * r3).unsqueeze(-1), 0.0)
        cut = (fc[a] * fc[b]).unsqueeze(-1) * torch.where(g4, fc3.unsqueeze(-1), 1.0)
        term = 2.0 ** (1.0 - zeta) * base**zeta * torch.exp(-eta * r2sum) * cut
        angular = d.new_zeros((n, cols.shape[0])).index_add(0, centre, torch.where(on, term, torch.zeros_like(term)))
        if not self.split:  # both blocks cover every column, each masked to its own kind
            return radial + angular
        return torch.cat([radial, angular], dim=1).index_select(1, self.order)

__all__ = ["GSFTorch", "image_pairs"]
