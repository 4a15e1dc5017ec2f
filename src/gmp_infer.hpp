// GMP inference kernel for the ASE calculator (harmonic path only).
//
// The training kernel (gmp.cpp) writes d features / d positions for every
// (centre, neighbour) pair, because the loss needs forces as a function of
// the network's parameters. A calculator needs only the forces themselves:
//   F = -dE/dr = -sum_i sum_p (dE/dG_ip) dG_ip/dr,
// so this kernel runs in two passes around the network:
//   1. features(): G (n, F) from a half neighbour list (each pair once; the
//      image seen from j is at -d), keeping dG/dM per atom and, when they
//      fit, each pair's radial sums;
//   2. forces(dE/dG): one more pass over the pairs gives dE/dd for each
//      pair, hence forces and the virial dE/dstrain, with no (P, F, 3) array
//      and no backward pass through it.
//
// Both passes work with monomial moments. A solid MCSH component of order n
// is a homogeneous polynomial of degree n, S_c(d) = sum_mu a_c,mu d^mu over
// the monomials d^mu = x^a y^b z^c (a + b + c = n), so
//   M_c(i) = A_f sum_mu a_c,mu T_i[sigma_f, n_f][mu],
//   T_i[sigma, n][mu] = sum_j R_(sigma,n)(r_ij) d_ij^mu
// (R from gmp_terms.hpp). Per pair the kernel adds R times the monomial
// values into contiguous blocks of T (one block per (sigma, n) some probe
// uses) and, seen from j, (-1)^n times that; the polynomials are applied
// once per atom. The force pass runs the same contraction backwards.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "gmp.hpp"
#include "gmp_terms.hpp"

namespace amptorch {

// Candidate pairs of a half neighbour list: image of atom j at
// r_j + shift . cell - r_i; each unordered pair of images appears once.
struct HalfPairs {
    int64_t n_pairs;
    const int64_t* pi;     // (P,)
    const int64_t* pj;     // (P,)
    const int64_t* shift;  // (P, 3) integer cell shifts
};

// Radial sums R0_n(r) (no cutoff factor) of every species as quintic Hermite
// splines on a uniform grid in r, built from exact values and first and second
// derivatives at the nodes. The grid is refined until the error at interval
// midpoints (where the quintic Hermite error peaks) is below `tol` times each
// function's largest value. The kernel differentiates the spline itself, so
// forces stay the exact derivatives of the (tabulated) energy.
struct RadialTable {
    double h = 0.0, inv_h = 0.0;
    int64_t n_int = 0, NR = 0, n_species = 0;
    std::vector<double> coef;  // (n_species, n_int, 6, NR): t^0..t^5 coefficients per function
    std::vector<int64_t> gstart;
    std::vector<double> gB, gbeta;  // the densities it was built for

    // exact R0, dR0/dr, d2R0/dr2 of species s at r into (NR,) arrays
    static void exact(const RadialConstants& rc, int64_t s, double r, double* f, double* f1, double* f2);
    void build(const GMPTables& tab, const Densities& dens, double rmax, double tol);
    bool same_densities(const Densities& dens) const;
    // R_n = fc R0_n and (dR_n/dr) / r of species s at 0 <= r < rmax
    inline void eval(int64_t s, double r, double fc, double dfc, double* rn, double* rr) const {
        double u = r * inv_h;
        int64_t k = static_cast<int64_t>(u);
        if (k >= n_int) k = n_int - 1;
        const double t = u - static_cast<double>(k);
        const double* c = &coef[static_cast<size_t>((s * n_int + k) * 6 * NR)];
        const double *c0 = c, *c1 = c + NR, *c2 = c + 2 * NR, *c3 = c + 3 * NR, *c4 = c + 4 * NR, *c5 = c + 5 * NR;
        const double inv_r = r > 0.0 ? 1.0 / r : 0.0;
        for (int64_t m = 0; m < NR; ++m) {
            const double v = c0[m] + t * (c1[m] + t * (c2[m] + t * (c3[m] + t * (c4[m] + t * c5[m]))));
            rn[m] = fc * v;
            if (rr) {
                const double dv =
                    (c1[m] + t * (2.0 * c2[m] + t * (3.0 * c3[m] + t * (4.0 * c4[m] + t * 5.0 * c5[m])))) * inv_h;
                rr[m] = (fc * dv + dfc * v) * inv_r;
            }
        }
    }
};

class GMPInference {
   public:
    // Throws std::invalid_argument unless the tables are harmonic (solid MCSH:
    // every component polynomial harmonic and homogeneous of its probe's order).
    // tabulate: radial sums from RadialTable splines (error < 1e-11 of each function's
    // scale) instead of 25-odd exp calls per pair; false: exact, as the training kernel.
    explicit GMPInference(const GMPTables& tables, bool tabulate = false);

    // Features (n_atoms, F) into feat (float64), species[a] indexing dens.
    // Pairs at r >= cutoff are skipped. Returns (pair index, r^2) of the
    // closest candidate pair (-1 if none).
    std::pair<int64_t, double> features(int64_t n_atoms, const int64_t* species, const Densities& dens,
                                        const double* positions, const double* cell, const HalfPairs& pairs,
                                        double* feat, int n_threads);

    // Forces (n_atoms, 3) eV/Å and virial dE/dstrain (3, 3) eV, from
    // dEdG (n_atoms, F) eV per feature unit, for the structure of the last features() call.
    void forces(const double* dEdG, double* forces, double* virial, int n_threads);

    int64_t n_features() const { return tab_.n_feat; }
    int64_t n_atoms() const { return n_atoms_; }
    // grid spacing (Å) of the radial table in use; 0 when the sums are exact
    double table_spacing() const { return use_table() ? table_.h : 0.0; }

   private:
    const GMPTables tab_;
    // monomial tables: degree-n monomials are mono_off_[n] .. mono_off_[n + 1] - 1,
    // exponents mono_abc_ (NM, 3)
    std::vector<int64_t> mono_off_, mono_abc_;
    // moment blocks, one per (sigma, n) some probe uses: T offset, width index, order
    std::vector<int64_t> blk_off_, blk_sigma_, blk_order_, feat_blk_;
    int64_t n_t_ = 0;  // T values per atom
    // each polynomial as (monomial index within its degree block, coefficient)
    std::vector<int64_t> pterm_start_, pterm_mono_;
    std::vector<double> pterm_coef_;

    // state of the last features() call
    int64_t n_atoms_ = -1;
    std::vector<int64_t> species_, gstart_, pi_, pj_;
    std::vector<double> gB_, gbeta_, d_, dS_, radial_cache_;
    std::vector<char> live_;
    bool cached_ = false;
    bool tabulate_ = false;
    RadialTable table_;

    // splines asked for and accurate enough on some grid (else the exact sums)
    bool use_table() const { return tabulate_ && table_.n_int > 0; }
    // the densities of the last features() call (its copies)
    Densities densities() const {
        return {static_cast<int64_t>(gstart_.size()) - 1, gstart_.data(), gB_.data(), gbeta_.data()};
    }
    void monomials(const double* d, double* mono, double* P) const;
    void pair_radial(const RadialConstants& radial, bool table, int64_t si, int64_t sj, double r2, double r,
                     double fc, double dfc, double* out, bool with_rr, double* tmp) const;
};

}  // namespace amptorch
