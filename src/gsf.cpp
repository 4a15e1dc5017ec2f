#include "gsf.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace amptorch {

void GSFTables::check(int64_t n_elements_) {
    n_elements = n_elements_;
    const size_t rows = kind.size();
    if (n_elements < 1 || rows == 0 || rows % n_elements != 0)
        throw std::invalid_argument("GSFTables: kind must be (n_elements, n_features), both >= 1");
    n_feat = static_cast<int64_t>(rows) / n_elements;
    for (const size_t n : {el1.size(), el2.size(), eta.size(), rs.size(), lam.size()})
        if (n != rows) throw std::invalid_argument("GSFTables: kind, el1, el2, eta, rs, lam must have one shape");
    for (size_t r = 0; r < rows; ++r) {
        if (kind[r] != 2 && kind[r] != 4 && kind[r] != 5)
            throw std::invalid_argument("GSFTables: kind must be 2, 4 or 5");
        const bool angular = kind[r] != 2;
        if (el1[r] < 0 || el1[r] >= n_elements || el2[r] < 0 || el2[r] >= n_elements || (angular && el2[r] < el1[r]))
            throw std::invalid_argument("GSFTables: el1, el2 must be channels 0..n_elements-1 with el1 <= el2");
    }
    cutoff.check();
}

template <typename T>
void gsf_compute(const Entries& en, const int64_t* species, const GSFTables& prm, const Output<T>& out,
                 bool derivatives, int n_threads) {
    const int64_t F = prm.n_feat;
    const int64_t NC = prm.n_elements;
    // Feature lists per (centre species, channel) for G2 and per (centre
    // species, channel pair) for G4/G5, so each neighbour (pair) visits only
    // the features it contributes to.
    int64_t n_species = 0;
    for (int64_t i = 0; i < en.n_atoms; ++i) n_species = std::max(n_species, species[i] + 1);
    std::vector<std::vector<int64_t>> radial(n_species * NC), angular(n_species * NC * NC);
    for (int64_t s = 0; s < n_species; ++s)
        for (int64_t f = 0; f < F; ++f) {
            const int64_t row = s * F + f;
            if (prm.kind[row] == 2)
                radial[s * NC + prm.el1[row]].push_back(f);
            else
                angular[(s * NC + prm.el1[row]) * NC + prm.el2[row]].push_back(f);
        }
    const bool grad = derivatives || out.dfeat_strain;
    const Cutoff& cut = prm.cutoff;

#ifdef _OPENMP
#pragma omp parallel num_threads(team_size(n_threads))
#endif
    {
        std::vector<double> G(F), dG;
        std::vector<double> R, fc, dfc;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t i = 0; i < en.n_atoms; ++i) {
            const int64_t e0 = en.estart[i], e1 = en.estart[i + 1];
            const int64_t n_e = e1 - e0;
            const int64_t s = species[i];
            const double* D = en.ed + 3 * e0;
            std::fill(G.begin(), G.end(), 0.0);
            if (grad) dG.assign(static_cast<size_t>(n_e) * F * 3, 0.0);
            R.resize(n_e);
            fc.resize(n_e);
            dfc.resize(n_e);
            for (int64_t a = 0; a < n_e; ++a) {
                const double* d = D + 3 * a;
                R[a] = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
                cut.eval(R[a], fc[a], dfc[a]);
            }
            // radial
            for (int64_t a = 0; a < n_e; ++a) {
                if (fc[a] == 0.0 && dfc[a] == 0.0) continue;
                const int64_t ch = species[en.ej[e0 + a]];
                const double* d = D + 3 * a;
                for (int64_t f : radial[s * NC + ch]) {
                    const int64_t row = s * F + f;
                    const double eta = prm.eta[row], rs = prm.rs[row];
                    const double ex = std::exp(-eta * (R[a] - rs) * (R[a] - rs));
                    G[f] += ex * fc[a];
                    if (grad) {
                        const double dr = ex * (dfc[a] - 2.0 * eta * (R[a] - rs) * fc[a]) / R[a];
                        double* g = &dG[(static_cast<size_t>(a) * F + f) * 3];
                        g[0] += dr * d[0];
                        g[1] += dr * d[1];
                        g[2] += dr * d[2];
                    }
                }
            }
            // angular: unordered pairs of neighbour images
            for (int64_t a = 0; a < n_e; ++a) {
                if (fc[a] == 0.0) continue;
                const int64_t cha = species[en.ej[e0 + a]];
                const double* da = D + 3 * a;
                for (int64_t b = a + 1; b < n_e; ++b) {
                    if (fc[b] == 0.0) continue;
                    const int64_t chb = species[en.ej[e0 + b]];
                    const int64_t lo = std::min(cha, chb), hi = std::max(cha, chb);
                    const std::vector<int64_t>& feats = angular[(s * NC + lo) * NC + hi];
                    if (feats.empty()) continue;
                    const double* db = D + 3 * b;
                    const double dab[3] = {db[0] - da[0], db[1] - da[1], db[2] - da[2]};
                    const double R3 = std::sqrt(dab[0] * dab[0] + dab[1] * dab[1] + dab[2] * dab[2]);
                    if (R3 < 1e-4) continue;  // two images on top of each other
                    const double Ra = R[a], Rb = R[b];
                    const double cosv = (da[0] * db[0] + da[1] * db[1] + da[2] * db[2]) / (Ra * Rb);
                    double fc3, dfc3;
                    cut.eval(R3, fc3, dfc3);
                    // d cos / d da and d cos / d db
                    double dca[3], dcb[3];
                    for (int k = 0; k < 3; ++k) {
                        dca[k] = db[k] / (Ra * Rb) - cosv * da[k] / (Ra * Ra);
                        dcb[k] = da[k] / (Ra * Rb) - cosv * db[k] / (Rb * Rb);
                    }
                    for (int64_t f : feats) {
                        const int64_t row = s * F + f;
                        const bool g4 = prm.kind[row] == 4;
                        if (g4 && fc3 == 0.0) continue;
                        const double eta = prm.eta[row], zeta = prm.rs[row], lam = prm.lam[row];
                        const double A = 1.0 + lam * cosv;
                        if (A <= 0.0) continue;
                        const double Az = std::pow(A, zeta);
                        const double r2sum = Ra * Ra + Rb * Rb + (g4 ? R3 * R3 : 0.0);
                        const double ex = std::pow(2.0, 1.0 - zeta) * std::exp(-eta * r2sum);
                        const double F3 = g4 ? fc3 : 1.0;
                        const double cut3 = fc[a] * fc[b] * F3;
                        G[f] += Az * ex * cut3;
                        if (!grad) continue;
                        // term = ex(d) Az(d) cut3(d); gradients w.r.t. da and db
                        const double dAz = zeta * std::pow(A, zeta - 1.0) * lam;  // d Az / d cos
                        double* ga = &dG[(static_cast<size_t>(a) * F + f) * 3];
                        double* gb = &dG[(static_cast<size_t>(b) * F + f) * 3];
                        for (int k = 0; k < 3; ++k) {
                            // d (R3^2) / d da = -2 dab, / d db = +2 dab
                            const double dexa = -eta * (2.0 * da[k] - (g4 ? 2.0 * dab[k] : 0.0));
                            const double dexb = -eta * (2.0 * db[k] + (g4 ? 2.0 * dab[k] : 0.0));
                            double dcuta = dfc[a] * da[k] / Ra * fc[b] * F3;
                            double dcutb = fc[a] * dfc[b] * db[k] / Rb * F3;
                            if (g4) {
                                dcuta -= fc[a] * fc[b] * dfc3 * dab[k] / R3;
                                dcutb += fc[a] * fc[b] * dfc3 * dab[k] / R3;
                            }
                            ga[k] += ex * (dAz * dca[k] * cut3 + Az * dexa * cut3 + Az * dcuta);
                            gb[k] += ex * (dAz * dcb[k] * cut3 + Az * dexb * cut3 + Az * dcutb);
                        }
                    }
                }
            }
            T* feat = out.features + i * F;
            for (int64_t f = 0; f < F; ++f) feat[f] = static_cast<T>(G[f]);
            if (!grad) continue;
            for (int64_t a = 0; a < n_e; ++a)
                out.scatter(i, derivatives ? en.epair[e0 + a] : -1, D + 3 * a, &dG[static_cast<size_t>(a) * F * 3]);
        }
    }
}

template void gsf_compute<double>(const Entries&, const int64_t*, const GSFTables&, const Output<double>&, bool,
                                  int);
template void gsf_compute<float>(const Entries&, const int64_t*, const GSFTables&, const Output<float>&, bool, int);

}  // namespace amptorch
