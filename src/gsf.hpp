// Behler-Parrinello Gaussian symmetry functions G2 (radial), G4 and G5
// (angular) with analytic derivatives.
//
//   G2 = sum_{j in channel}          exp(-eta (R_ij - Rs)^2) fc(R_ij)
//   G4 = 2^(1-zeta) sum_{j<k in pair channel} (1 + lambda cos theta_jik)^zeta
//        exp(-eta (R_ij^2 + R_ik^2 + R_jk^2)) fc(R_ij) fc(R_ik) fc(R_jk)
//   G5 = the same without the R_jk terms.
// Sums run over neighbour images (self-images included, the centre excluded);
// j < k over unordered pairs of images.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace amptorch {

struct GSFParams {
    int64_t n_feat;
    int64_t n_channels;      // number of neighbour element channels
    const int64_t* channel;  // (n_species,) element channel of each species
    // per centre species s, feature f: row (s * F + f)
    const int64_t* kind;  // 2, 4 or 5
    const int64_t* el1;   // channel of neighbour j (G2) or the smaller of the pair
    const int64_t* el2;   // the larger channel of the pair (angular), unused for G2
    const double* eta;    // 1/Angstrom^2
    const double* rs;     // G2: Rs (Angstrom); angular: zeta
    const double* lam;    // angular: lambda (+1 or -1)
    Cutoff cutoff;
};

template <typename T>
void gsf_compute(const Entries& en, const int64_t* species, const GSFParams& prm, const Output<T>& out,
                 bool derivatives, int n_threads);

}  // namespace amptorch
