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
#include <vector>

#include "common.hpp"

namespace amptorch {

// A GaussianSF descriptor's functions, built once per descriptor (Python:
// _core.GSFTables). Elements e = 0..S-1 are the descriptor's elements (sorted
// by Z); they are both the centre species the kernel is given and the
// neighbour channels. Row e * F + f: function f of a centre of element e.
struct GSFTables {
    std::vector<int64_t> kind;  // (S, F) 2, 4 or 5
    std::vector<int64_t> el1;   // channel of neighbour j (G2) or the smaller of the pair
    std::vector<int64_t> el2;   // the larger channel of the pair (angular), unused for G2
    std::vector<double> eta;    // 1/Angstrom^2
    std::vector<double> rs;     // G2: Rs (Angstrom); angular: zeta
    std::vector<double> lam;    // angular: lambda (+1 or -1)
    Cutoff cutoff{1, 0.0, 2.0};
    int64_t n_elements = 0, n_feat = 0;

    // Checks lengths and channels for S = n_elements rows; throws std::invalid_argument.
    void check(int64_t n_elements_);
};

template <typename T>
void gsf_compute(const Entries& en, const int64_t* species, const GSFTables& prm, const Output<T>& out,
                 bool derivatives, int n_threads);

}  // namespace amptorch
