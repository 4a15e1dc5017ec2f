// Gaussian multipole (GMP) fingerprints with analytic derivatives.
//
// Probe p (MCSH order n, width sigma, amplitude A) applied to the density
// around atom i; component c of the probe:
//   M_c = A sum_{images e} sum_{gaussians (B, beta) of atom j_e} fc(|d|) *
//         C1 exp(C2 |d|^2) * E[S_c(u)],  u ~ Normal(lam d, 1/(2 gam) per axis)
// (Gaussian product theorem), S_c the component's Maxwell polynomial given
// as monomials (coef, k, l, m). feature_p = sum_c w_c M_c^2 (square) or its
// square root.
//
// Two evaluation paths:
//  * harmonic (solid MCSH): S_c is a harmonic homogeneous polynomial of
//    degree n, so E[S_c(u)] = S_c(lam d) = lam^n S_c(d) (the Gaussian
//    smoothing of a harmonic function is itself). M_c then factorizes into a
//    radial sum R_n(r) = sum_g t_g lam_g^n and S_c(d), evaluated once per
//    neighbour image for all widths.
//  * general (non-solid MCSH, not harmonic): raw Gaussian moments P_k per
//    axis, E[x^k y^l z^m] = P_k(x) P_l(y) P_m(z).
#pragma once

#include <cstdint>

#include "common.hpp"

namespace amptorch {

struct GMPParams {
    // per species: gaussians [gstart[s], gstart[s+1]) of (B, beta)
    const int64_t* gstart;
    const double* gB;
    const double* gbeta;
    // probe widths
    int64_t n_sigma;
    const double* sigma_alpha;  // (n_sigma,) alpha = 1 / (2 sigma^2)
    // probes (features)
    int64_t n_feat;
    const int64_t* probe_sigma;  // (F,) index into sigma_alpha
    const int64_t* probe_order;  // (F,) MCSH order n
    const double* probe_amp;     // (F,) amplitude A
    const int64_t* comp_start;   // (F + 1,) components of probe p
    const double* comp_weight;   // (C,)
    const int64_t* comp_poly;    // (C,) polynomial of component c
    // polynomials: monomials [poly_start[q], poly_start[q+1])
    int64_t n_poly;
    const int64_t* poly_start;  // (Q + 1,)
    const double* mono_coef;    // (M,)
    const int64_t* mono_pow;    // (M, 3)
    int max_power;
    bool harmonic;  // every polynomial is harmonic and homogeneous of its probe's order
    bool square;
    bool include_self;  // the centre atom's own density (d = 0)
    Cutoff cutoff;      // kind 0: hard cutoff (the neighbour list's)
};

template <typename T>
void gmp_compute(const Entries& en, const int64_t* species, const GMPParams& prm, const Output<T>& out,
                 bool derivatives, int n_threads);

}  // namespace amptorch
