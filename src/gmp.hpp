// Gaussian multipole (GMP) fingerprints with analytic derivatives.
//
// Probe p of order n and width sigma applied to the density around atom i:
//   M_c = sum_{images e} sum_{gaussians (B, beta) of atom j_e} fc(|d|) *
//         C1 exp(C2 |d|^2) * sum_monomials coef * P_k(x) P_l(y) P_m(z)
// where the P_k are raw moments of a normal with mean lam*d and variance
// 1/(2 gam) (Gaussian product theorem), and the monomials (coef, k, l, m)
// are the Maxwell-Cartesian polynomial of component c with every probe
// constant (A, the 1/r_s powers) folded into coef by the Python layer.
// feature_p = sum_c w_c M_c^2  (square) or its square root.
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
    const int64_t* comp_start;   // (F + 1,) components of probe p
    const double* comp_weight;   // (C,)
    const int64_t* mono_start;   // (C + 1,) monomials of component c
    const double* mono_coef;     // (M,)
    const int64_t* mono_pow;     // (M, 3)
    int max_power;
    bool square;
    bool include_self;  // the centre atom's own density (d = 0)
    Cutoff cutoff;      // kind 0: hard cutoff (the neighbour list's)
};

template <typename T>
void gmp_compute(const Entries& en, const int64_t* species, const GMPParams& prm, const Output<T>& out,
                 bool derivatives, int n_threads);

}  // namespace amptorch
