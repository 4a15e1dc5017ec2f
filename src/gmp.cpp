#include "gmp.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace amptorch {

namespace {

// Raw moments P_k(u) of Normal(mean = lam u, variance = var), k = 0..K, and
// dP_k/du = lam k P_{k-1}.
inline void moments(double u, double lam, double var, int K, double* P, double* dP) {
    double mu = lam * u;
    P[0] = 1.0;
    dP[0] = 0.0;
    if (K >= 1) {
        P[1] = mu;
        dP[1] = lam;
    }
    for (int k = 2; k <= K; ++k) {
        P[k] = mu * P[k - 1] + (k - 1) * var * P[k - 2];
        dP[k] = lam * k * P[k - 1];
    }
}

}  // namespace

template <typename T>
void gmp_compute(const Entries& en, const int64_t* species, const GMPParams& prm, const Output<T>& out,
                 bool derivatives, int n_threads) {
    const int64_t F = prm.n_feat;
    const int64_t C = prm.comp_start[F];
    const int K = prm.max_power;

    // Probes grouped by width, so the moments of one (entry, gaussian, sigma)
    // serve every order.
    std::vector<std::vector<int64_t>> by_sigma(prm.n_sigma);
    for (int64_t p = 0; p < F; ++p) by_sigma[prm.probe_sigma[p]].push_back(p);

#ifdef _OPENMP
    if (n_threads > 0) omp_set_num_threads(n_threads);
#pragma omp parallel
#endif
    {
        std::vector<double> M(C), dM, g, Px(K + 1), Py(K + 1), Pz(K + 1), dPx(K + 1), dPy(K + 1), dPz(K + 1);
        std::vector<double> dS(C);
        if (derivatives || out.dfeat_strain) g.resize(F * 3);

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t i = 0; i < en.n_atoms; ++i) {
            const int64_t e0 = en.estart[i], e1 = en.estart[i + 1];
            const int64_t n_e = e1 - e0;
            const bool grad = derivatives || out.dfeat_strain;
            std::fill(M.begin(), M.end(), 0.0);
            if (grad) {
                dM.assign(static_cast<size_t>(n_e) * C * 3, 0.0);
            }
            // entry index -1 is the centre's own density at d = 0
            for (int64_t e = (prm.include_self ? e0 - 1 : e0); e < e1; ++e) {
                const bool self = e < e0;
                const int64_t j = self ? i : en.ej[e];
                const double x = self ? 0.0 : en.ed[3 * e];
                const double y = self ? 0.0 : en.ed[3 * e + 1];
                const double z = self ? 0.0 : en.ed[3 * e + 2];
                const double r2 = x * x + y * y + z * z;
                const double r = std::sqrt(r2);
                double fc = 1.0, dfc = 0.0;
                if (prm.cutoff.kind != 0 && !self) prm.cutoff.eval(r, fc, dfc);
                if (fc == 0.0 && dfc == 0.0) continue;
                const bool egrad = grad && !self;
                double* dMe = egrad ? &dM[static_cast<size_t>(e - e0) * C * 3] : nullptr;
                const int64_t s = species[j];
                for (int64_t sg = 0; sg < prm.n_sigma; ++sg) {
                    if (by_sigma[sg].empty()) continue;
                    const double alpha = prm.sigma_alpha[sg];
                    for (int64_t q = prm.gstart[s]; q < prm.gstart[s + 1]; ++q) {
                        const double B = prm.gB[q], beta = prm.gbeta[q];
                        const double gam = alpha + beta;
                        const double lam = beta / gam;
                        const double var = 0.5 / gam;
                        const double c2 = -alpha * beta / gam;
                        const double c1 = B * std::pow(kPi / gam, 1.5);
                        const double t = c1 * std::exp(c2 * r2);
                        const double tf = t * fc;
                        moments(x, lam, var, K, Px.data(), dPx.data());
                        moments(y, lam, var, K, Py.data(), dPy.data());
                        moments(z, lam, var, K, Pz.data(), dPz.data());
                        // d(t fc)/dd = t fc 2 c2 d + t dfc d / r
                        double radial = tf * 2.0 * c2;
                        if (dfc != 0.0 && r > 0.0) radial += t * dfc / r;
                        for (int64_t p : by_sigma[sg]) {
                            for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) {
                                double poly = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
                                for (int64_t m = prm.mono_start[c]; m < prm.mono_start[c + 1]; ++m) {
                                    const int64_t* pw = prm.mono_pow + 3 * m;
                                    const double cf = prm.mono_coef[m];
                                    const double a = Px[pw[0]], b = Py[pw[1]], cc = Pz[pw[2]];
                                    poly += cf * a * b * cc;
                                    if (egrad) {
                                        gx += cf * dPx[pw[0]] * b * cc;
                                        gy += cf * a * dPy[pw[1]] * cc;
                                        gz += cf * a * b * dPz[pw[2]];
                                    }
                                }
                                M[c] += tf * poly;
                                if (egrad) {
                                    double* dm = dMe + c * 3;
                                    dm[0] += tf * gx + radial * poly * x;
                                    dm[1] += tf * gy + radial * poly * y;
                                    dm[2] += tf * gz + radial * poly * z;
                                }
                            }
                        }
                    }
                }
            }
            // features and d feature / d M_c
            T* feat = out.features + i * F;
            for (int64_t p = 0; p < F; ++p) {
                double S = 0.0;
                for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c)
                    S += prm.comp_weight[c] * M[c] * M[c];
                double scale = 2.0;
                if (prm.square) {
                    feat[p] = static_cast<T>(S);
                } else {
                    const double root = std::sqrt(S);
                    feat[p] = static_cast<T>(root);
                    // d sqrt(S) = dS / (2 sqrt(S)); at S = 0 every M_c is 0 and
                    // the one-sided derivative is taken as 0.
                    scale = root > 0.0 ? 1.0 / root : 0.0;
                }
                for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c)
                    dS[c] = scale * prm.comp_weight[c] * M[c];
            }
            if (!grad) continue;
            for (int64_t e = e0; e < e1; ++e) {
                const double* dMe = &dM[static_cast<size_t>(e - e0) * C * 3];
                for (int64_t p = 0; p < F; ++p) {
                    double gx = 0.0, gy = 0.0, gz = 0.0;
                    for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) {
                        gx += dS[c] * dMe[c * 3];
                        gy += dS[c] * dMe[c * 3 + 1];
                        gz += dS[c] * dMe[c * 3 + 2];
                    }
                    g[p * 3] = gx;
                    g[p * 3 + 1] = gy;
                    g[p * 3 + 2] = gz;
                }
                out.scatter(i, derivatives ? en.epair[e] : -1, en.ed + 3 * e, g.data());
            }
        }
    }
}

template void gmp_compute<double>(const Entries&, const int64_t*, const GMPParams&, const Output<double>&, bool,
                                  int);
template void gmp_compute<float>(const Entries&, const int64_t*, const GMPParams&, const Output<float>&, bool, int);

}  // namespace amptorch
