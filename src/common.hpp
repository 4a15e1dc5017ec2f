// Shared pieces of the fingerprint kernels: the neighbour-entry layout, the
// cutoff functions and the output writer. The kernels know nothing of ase,
// torch or Python; they take flat arrays and fill flat arrays.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace amptorch {

constexpr double kPi = 3.14159265358979323846;

// Threads of one kernel call (0: the OpenMP default). Used in a num_threads
// clause, never omp_set_num_threads: that would change the thread count of the
// whole process (torch's intra-op pool included).
inline int team_size(int n_threads) {
#ifdef _OPENMP
    return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    return 1;
#endif
}

// Neighbour entries of every centre atom, sorted by centre.
// Entry e of centre i (estart[i] <= e < estart[i+1]) is one periodic image of
// atom ej[e] at displacement d = ed[3e..3e+2] = r_j + S.cell - r_i (Angstrom).
// epair[e] is the index of the (i, j) pair block that collects every image of
// j, or -1 when j == i (a periodic self-image: its displacement is a lattice
// vector, constant under atom moves, so it has no position derivative).
struct Entries {
    int64_t n_atoms;
    const int64_t* estart;  // (n_atoms + 1,)
    const int64_t* ej;      // (E,)
    const double* ed;       // (E, 3)
    const int64_t* epair;   // (E,)
};

// Cutoff function fc(R) and its derivative. kind 0: none (fc = 1 inside),
// 1: cosine 0.5 (1 + cos(pi R / Rc)), 2: polynomial (AMP) with exponent gamma:
// 1 + gamma (R/Rc)^(gamma+1) - (gamma+1) (R/Rc)^gamma.
struct Cutoff {
    int kind;
    double rc;
    double gamma;

    // throws std::invalid_argument for an unknown kind, rc <= 0 or (polynomial) gamma <= 0
    void check() const {
        if (kind < 0 || kind > 2)
            throw std::invalid_argument("cutoff_kind must be 0 (hard), 1 (cosine) or 2 (polynomial)");
        if (!(rc > 0.0 && std::isfinite(rc))) throw std::invalid_argument("cutoff must be a positive length (Å)");
        if (kind == 2 && !(gamma > 0.0)) throw std::invalid_argument("cutoff_gamma must be > 0");
    }

    inline void eval(double r, double& fc, double& dfc) const {
        if (r >= rc) {
            fc = 0.0;
            dfc = 0.0;
            return;
        }
        switch (kind) {
            case 1: {
                double a = kPi / rc;
                fc = 0.5 * (1.0 + std::cos(a * r));
                dfc = -0.5 * a * std::sin(a * r);
                return;
            }
            case 2: {
                double x = r / rc;
                double xg = std::pow(x, gamma - 1.0);  // x^(gamma-1)
                fc = 1.0 + gamma * xg * x * x - (gamma + 1.0) * xg * x;
                dfc = (gamma * (gamma + 1.0) * xg * x - gamma * (gamma + 1.0) * xg) / rc;
                return;
            }
            default:
                fc = 1.0;
                dfc = 0.0;
        }
    }
};

// Per-entry gradient accumulator: scatters dfeature[f]/dd_e into the pair
// block and the strain block of the centre atom.
template <typename T>
struct Output {
    int64_t n_feat;
    T* features;      // (n_atoms, F)
    T* dfeat;         // (P, F, 3) or nullptr
    T* dfeat_strain;  // (n_atoms, F, 3, 3) or nullptr

    // g: (F, 3) gradient of centre i's features with respect to entry e's
    // displacement d.
    inline void scatter(int64_t i, int64_t pair, const double* d, const double* g) const {
        if (dfeat != nullptr && pair >= 0) {
            T* out = dfeat + pair * n_feat * 3;
            for (int64_t k = 0; k < n_feat * 3; ++k) out[k] += static_cast<T>(g[k]);
        }
        if (dfeat_strain != nullptr) {
            // d features / d strain_ab = sum over images of (d f / d d_a) d_b.
            T* out = dfeat_strain + i * n_feat * 9;
            for (int64_t f = 0; f < n_feat; ++f)
                for (int a = 0; a < 3; ++a)
                    for (int b = 0; b < 3; ++b) out[f * 9 + a * 3 + b] += static_cast<T>(g[f * 3 + a] * d[b]);
        }
    }
};

}  // namespace amptorch
