"""GMP features as a differentiable torch function of positions and cell: the C++ kernel's twin.

The C++ kernel (``src/gmp.cpp``) writes features and their derivative blocks
for training from stored derivatives; this module computes the same features
with tensor operations vectorized over neighbour images, so that forces
(-dE/dr), stress (dE/dstrain) and the force loss's gradient come from
autograd, on CPU or CUDA, in float32 or float64, with nothing stored per pair.
It is the building block of recompute-mode training (no derivative blocks on
disk); the tests hold it equal to the C++ kernel (features to 1e-12 relative,
derivatives to 1e-10 in float64).

Mathematics (solid harmonics, the default and the original's; see
``src/gmp_terms.hpp``): a neighbour image at displacement d (|d| = r) of an
atom whose density is sum_g B_g exp(-beta_g |x|^2) adds to component c of a
probe of order n, width sigma (alpha = 1 / (2 sigma^2)) and amplitude A

    M_c += A fc(r) sum_g B_g (pi / gam)^1.5 exp(-alpha beta_g r^2 / gam) lam_g^n S_c(d),
    gam = alpha + beta_g,  lam_g = beta_g / gam,

with S_c the component's solid Maxwell-Cartesian polynomial (homogeneous of
degree n, given as monomials by ``GMP.kernel_tables``). The centre's own
density (d = 0) adds a constant. Feature p = sum_c w_c M_c^2 (``square``) or
its square root.

Shapes: N atoms, P neighbour images (periodic self-images included, the
centre itself not), F features, C components, Q polynomials, M monomials,
S species, G Gaussians per species (padded), W widths, K = max order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from amptorch.errors import InputError
from amptorch.models.twin_terms import Twin, cutoff_function, neighbor_list


class GMPTorch(Twin):
    """Differentiable GMP features (solid harmonics) from positions, cell and a neighbour list.

    Args:
        gmp: an ``amptorch.descriptors.GMP`` with ``solid_harmonics=True``; its
            tables, densities and cutoff are copied into buffers (``.to(device,
            dtype)`` moves them).
        elements: atomic numbers the module will see (their densities are
            tabulated; others raise InputError).

    Call it as ``Twin`` says, with a neighbour list of every image within the
    cutoff (``twin_terms.neighbor_list`` builds one with vesin): ``shifts``
    (P, 3) are integer cell translations, so d = positions[j] - positions[i] +
    shifts @ cell is differentiable in both positions and cell.
    """

    what = "GMPTorch's"

    def __init__(self, gmp, elements):
        super().__init__()
        if not getattr(gmp, "solid_harmonics", False):
            raise InputError(
                "GMPTorch: needs a GMP descriptor with solid_harmonics=True (the general moment path has no "
                "torch twin); got solid_harmonics=False"
            )
        t = gmp.kernel_tables
        self.cutoff = float(gmp.cutoff)
        self.cutoff_kind = gmp.smooth_cutoff  # None (hard), "cosine", "polynomial"
        self.cutoff_gamma = float(gmp.cutoff_gamma)
        self.square = bool(gmp.square)
        self.n_features = int(gmp.length)
        self.max_order = int(gmp.max_order)
        f64, i64 = torch.float64, torch.long
        alpha = torch.as_tensor(np.array(t.sigma_alpha), dtype=f64)  # (W,)
        probe_sigma = torch.as_tensor(np.array(t.probe_sigma), dtype=i64)  # (F,)
        probe_order = torch.as_tensor(np.array(t.probe_order), dtype=i64)  # (F,)
        comp_start = np.asarray(t.comp_start)
        comp_probe = torch.as_tensor(np.repeat(np.arange(len(comp_start) - 1), np.diff(comp_start)), dtype=i64)
        poly_start = np.asarray(t.poly_start)
        mono_poly = np.repeat(np.arange(len(poly_start) - 1), np.diff(poly_start))  # (M,)
        self.register_buffer("comp_probe", comp_probe)  # (C,) probe of each component
        self.register_buffer("comp_poly", torch.as_tensor(np.array(t.comp_poly), dtype=i64))  # (C,)
        self.register_buffer("comp_weight", torch.as_tensor(np.array(t.comp_weight), dtype=f64))  # (C,)
        self.register_buffer("comp_amp", torch.as_tensor(np.array(t.probe_amp), dtype=f64)[comp_probe])  # (C,)
        # index of R_(sigma, n) of each component in the flattened (W, K + 1) radial table
        self.register_buffer("comp_radial", (probe_sigma * (self.max_order + 1) + probe_order)[comp_probe])
        self.register_buffer("mono_poly", torch.as_tensor(mono_poly, dtype=i64))  # (M,)
        self.register_buffer("mono_coef", torch.as_tensor(np.array(t.mono_coef), dtype=f64))  # (M,)
        self.register_buffer("mono_pow", torch.as_tensor(np.array(t.mono_pow).reshape(-1, 3), dtype=i64))
        self.n_poly = len(poly_start) - 1

        # per-species Gaussian-product constants (S, G, W), padded Gaussians have pref 0
        zs = sorted({int(z) for z in elements})
        gs = []
        for z in zs:
            g = gmp.density(z)
            if g is None:
                gmp.check_elements(np.array([z]))  # raises the descriptor's own message
            gs.append(np.asarray(g, dtype=np.float64).reshape(-1, 2))
        n_g = max(len(g) for g in gs)
        B = torch.zeros(len(zs), n_g, dtype=f64)
        beta = torch.ones(len(zs), n_g, dtype=f64)
        for s, g in enumerate(gs):
            B[s, : len(g)] = torch.as_tensor(g[:, 0])
            beta[s, : len(g)] = torch.as_tensor(g[:, 1])
        gam = alpha.view(1, 1, -1) + beta.unsqueeze(-1)  # (S, G, W)
        self.register_buffer("pref", B.unsqueeze(-1) * (math.pi / gam) ** 1.5)
        self.register_buffer("gexp", alpha.view(1, 1, -1) * beta.unsqueeze(-1) / gam)
        self.register_buffer("lam", beta.unsqueeze(-1) / gam)
        self.set_elements(zs)

    # -- pieces ------------------------------------------------------------------
    def _radial(self, sp: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """(P, W (K + 1)) sum_g pref exp(-gexp r^2) lam^n for the species ``sp`` (P,) at r^2 (P,) Å^2."""
        t = self.pref[sp] * torch.exp(-self.gexp[sp] * r2.view(-1, 1, 1))  # (P, G, W)
        n = torch.arange(self.max_order + 1, device=r2.device, dtype=r2.dtype)
        lam_n = self.lam[sp].unsqueeze(-1) ** n  # (P, G, W, K + 1)
        return (t.unsqueeze(-1) * lam_n).sum(1).flatten(1)

    def _polynomials(self, d: torch.Tensor) -> torch.Tensor:
        """(P, Q) solid MCSH polynomials S_q(d) of displacements d (P, 3)."""
        # (P, 3, K + 1) d^0..d^K by cumulative products (a power's gradient at 0 would be 0 * inf)
        rep = d.unsqueeze(-1).expand(-1, -1, self.max_order)
        powers = torch.cat([torch.ones_like(d).unsqueeze(-1), torch.cumprod(rep, dim=-1)], dim=-1)
        k = self.mono_pow
        terms = self.mono_coef * powers[:, 0, k[:, 0]] * powers[:, 1, k[:, 1]] * powers[:, 2, k[:, 2]]  # (P, M)
        return d.new_zeros((d.shape[0], self.n_poly)).index_add(1, self.mono_poly, terms)

    # -- the function ------------------------------------------------------------
    def features(self, sp: torch.Tensor, d: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor) -> torch.Tensor:
        """Features (N, F) from species rows (N,) and image displacements d (P, 3) Å (see ``Twin``)."""
        r2 = (d * d).sum(-1)
        fc = cutoff_function(torch.sqrt(r2), self.cutoff, self.cutoff_kind, self.cutoff_gamma)
        radial = self._radial(sp[pair_j], r2) * fc.unsqueeze(-1)  # (P, W (K + 1))
        S = self._polynomials(d)  # (P, Q)
        terms = radial[:, self.comp_radial] * S[:, self.comp_poly]  # (P, C)
        n = sp.shape[0]
        M = terms.new_zeros((n, terms.shape[1])).index_add(0, pair_i, terms)  # (N, C)
        # the centre's own density at d = 0 (no gradient): only order-0 polynomials are nonzero there
        zero = d.new_zeros((1, 3))
        own = self._radial(sp, d.new_zeros(n))[:, self.comp_radial] * self._polynomials(zero)[:, self.comp_poly]
        M = (M + own) * self.comp_amp  # (N, C)
        sums = M.new_zeros((n, self.n_features)).index_add(1, self.comp_probe, self.comp_weight * M * M)  # (N, F)
        if self.square:
            return sums
        # sqrt with a zero (not infinite) gradient where every component vanishes
        safe = torch.where(sums > 0, sums, torch.ones_like(sums))
        return torch.where(sums > 0, torch.sqrt(safe), torch.zeros_like(sums))


__all__ = ["GMPTorch", "neighbor_list"]
