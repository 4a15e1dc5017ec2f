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
// Two evaluation paths (gmp.cpp):
//  * harmonic (solid MCSH): S_c is a harmonic homogeneous polynomial of
//    degree n, so E[S_c(u)] = S_c(lam d) = lam^n S_c(d) (the Gaussian
//    smoothing of a harmonic function is itself). M_c then factorizes into a
//    radial sum R_n(r) = sum_g t_g lam_g^n and S_c(d), evaluated once per
//    neighbour image for all widths.
//  * general (non-solid MCSH, not harmonic): raw Gaussian moments P_k per
//    axis, E[x^k y^l z^m] = P_k(x) P_l(y) P_m(z).
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace amptorch {

// A GMP descriptor's probe tables and settings, built once per descriptor
// (Python: _core.GMPTables) and read by both the training kernel
// (gmp_compute) and the inference kernel (GMPInference). Make one with
// check() called last; the kernels trust a checked one.
struct GMPTables {
    // probe widths
    std::vector<double> sigma_alpha;  // (n_sigma,) alpha = 1 / (2 sigma^2)
    // probes (features)
    std::vector<int64_t> probe_sigma;  // (F,) index into sigma_alpha
    std::vector<int64_t> probe_order;  // (F,) MCSH order n
    std::vector<double> probe_amp;     // (F,) amplitude A
    std::vector<int64_t> comp_start;   // (F + 1,) components of probe p
    std::vector<double> comp_weight;   // (C,)
    std::vector<int64_t> comp_poly;    // (C,) polynomial of component c
    // polynomials: monomials [poly_start[q], poly_start[q+1])
    std::vector<int64_t> poly_start;  // (Q + 1,)
    std::vector<double> mono_coef;    // (M,)
    std::vector<int64_t> mono_pow;    // (M, 3)
    bool harmonic = true;  // every polynomial is harmonic and homogeneous of its probe's order
    bool square = true;
    bool include_self = true;      // the centre atom's own density (d = 0)
    Cutoff cutoff{0, 0.0, 2.0};    // kind 0: hard cutoff (the neighbour list's)
    // set by check()
    int64_t n_sigma = 0, n_feat = 0, n_poly = 0;
    int max_power = 0;  // highest probe order or monomial degree

    // Checks lengths, indices and (harmonic) the polynomials' degrees, and
    // sets the sizes above; throws std::invalid_argument.
    void check();
};

// Density Gaussians of one structure's species: species s has the Gaussians
// [gstart[s], gstart[s+1]) of amplitude gB and exponent gbeta (Å^-2).
struct Densities {
    int64_t n_species;
    const int64_t* gstart;  // (n_species + 1,)
    const double* gB;       // (G,)
    const double* gbeta;    // (G,)
};

template <typename T>
void gmp_compute(const Entries& en, const int64_t* species, const GMPTables& tab, const Densities& dens,
                 const Output<T>& out, bool derivatives, int n_threads);

}  // namespace amptorch
