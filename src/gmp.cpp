#include "gmp.hpp"

#include "gmp_terms.hpp"

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
    const int64_t Q = prm.n_poly;
    const int K = prm.max_power;

    // Probes grouped by width, and the polynomials each width needs.
    std::vector<std::vector<int64_t>> by_sigma(prm.n_sigma), polys_of(prm.n_sigma);
    for (int64_t p = 0; p < F; ++p) {
        const int64_t sg = prm.probe_sigma[p];
        by_sigma[sg].push_back(p);
        for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) polys_of[sg].push_back(prm.comp_poly[c]);
    }
    for (auto& v : polys_of) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
    }
    const bool grad = derivatives || out.dfeat_strain;

    int64_t n_species = 0;
    for (int64_t i = 0; i < en.n_atoms; ++i) n_species = std::max(n_species, species[i] + 1);
    const RadialConstants radial(prm, n_species);
    const std::vector<double>&pref = radial.pref, &glam = radial.glam, &gexp = radial.gexp;

#ifdef _OPENMP
#pragma omp parallel num_threads(team_size(n_threads))
#endif
    {
        std::vector<double> M(C), dM, g(grad ? F * 3 : 0), dS(C);
        std::vector<double> Px(K + 1), Py(K + 1), Pz(K + 1), dPx(K + 1), dPy(K + 1), dPz(K + 1);
        const int64_t NR = (K + 1) * prm.n_sigma;
        std::vector<double> S(Q), dSq(Q * 3), Rn(NR), Rr(NR), Rcache, Rtmp(radial.scratch(n_species));
        std::vector<char> live;  // harmonic path: image e0 + k was kept in pass 1

        // Neighbour image e of centre i (e < e0: the centre itself at d = 0).
        struct Image {
            double d[3], r2, r, fc, dfc;
            int64_t s;
        };
        auto image = [&](int64_t i, int64_t e, int64_t e0, Image& im) -> bool {
            const bool self = e < e0;
            for (int k = 0; k < 3; ++k) im.d[k] = self ? 0.0 : en.ed[3 * e + k];
            im.r2 = im.d[0] * im.d[0] + im.d[1] * im.d[1] + im.d[2] * im.d[2];
            im.r = std::sqrt(im.r2);
            im.fc = 1.0;
            im.dfc = 0.0;
            if (prm.cutoff.kind != 0 && !self) prm.cutoff.eval(im.r, im.fc, im.dfc);
            im.s = species[self ? i : en.ej[e]];
            return !(im.fc == 0.0 && im.dfc == 0.0);
        };
        Angular ang(K);

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t i = 0; i < en.n_atoms; ++i) {
            const int64_t e0 = en.estart[i], e1 = en.estart[i + 1];
            const int64_t first = prm.include_self ? e0 - 1 : e0;
            std::fill(M.begin(), M.end(), 0.0);
            const bool keep_dM = grad && !prm.harmonic;
            if (keep_dM) dM.assign(static_cast<size_t>(e1 - e0) * C * 3, 0.0);
            // harmonic path: radial sums and angular values (with gradients) of each
            // image, computed once here and reused by the gradient pass
            const size_t per_image = static_cast<size_t>(NR * 2 + Q * 4);
            if (grad && prm.harmonic) {
                Rcache.assign(static_cast<size_t>(e1 - e0) * per_image, 0.0);
                live.assign(static_cast<size_t>(e1 - e0), 0);
            }
            Image im;
            for (int64_t e = first; e < e1; ++e) {
                if (!image(i, e, e0, im)) continue;
                if (prm.harmonic) {
                    const bool cache = grad && e >= e0;
                    ang.eval(prm, im.d, S.data(), cache ? dSq.data() : nullptr);
                    radial.eval(im.s, im.r2, im.r, im.fc, im.dfc, Rn.data(), cache ? Rr.data() : nullptr, Rtmp.data());
                    if (cache) {
                        live[e - e0] = 1;
                        double* rc = &Rcache[static_cast<size_t>(e - e0) * per_image];
                        std::copy(Rn.begin(), Rn.end(), rc);
                        std::copy(Rr.begin(), Rr.end(), rc + NR);
                        std::copy(S.begin(), S.end(), rc + 2 * NR);
                        std::copy(dSq.begin(), dSq.end(), rc + 2 * NR + Q);
                    }
                    for (int64_t p = 0; p < F; ++p) {
                        const double aR = prm.probe_amp[p] * Rn[prm.probe_sigma[p] * (K + 1) + prm.probe_order[p]];
                        for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c)
                            M[c] += aR * S[prm.comp_poly[c]];
                    }
                    continue;
                }
                // general path: Gaussian moments per neighbour Gaussian; dM kept per image
                const bool egrad = keep_dM && e >= e0;
                double* dMe = egrad ? &dM[static_cast<size_t>(e - e0) * C * 3] : nullptr;
                for (int64_t sg = 0; sg < prm.n_sigma; ++sg) {
                    if (by_sigma[sg].empty()) continue;
                    for (int64_t gq = prm.gstart[im.s]; gq < prm.gstart[im.s + 1]; ++gq) {
                        const int64_t k = gq * prm.n_sigma + sg;
                        const double lam = glam[k];
                        const double var = 0.5 * lam / prm.gbeta[gq];  // 1 / (2 gam)
                        const double t = pref[k] * exp_neg(-gexp[k] * im.r2);
                        const double tf = t * im.fc;
                        double rad = -2.0 * gexp[k] * tf;
                        if (im.dfc != 0.0 && im.r > 0.0) rad += t * im.dfc / im.r;
                        moments(im.d[0], lam, var, K, Px.data(), dPx.data());
                        moments(im.d[1], lam, var, K, Py.data(), dPy.data());
                        moments(im.d[2], lam, var, K, Pz.data(), dPz.data());
                        for (int64_t q : polys_of[sg]) {
                            double gp[3];
                            const double v = poly_eval(prm, q, Px.data(), Py.data(), Pz.data(), dPx.data(),
                                                       dPy.data(), dPz.data(), egrad ? gp : nullptr);
                            S[q] = tf * v;
                            if (egrad)
                                for (int kk = 0; kk < 3; ++kk) dSq[3 * q + kk] = tf * gp[kk] + rad * v * im.d[kk];
                        }
                        for (int64_t p : by_sigma[sg]) {
                            const double a = prm.probe_amp[p];
                            for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) {
                                const int64_t q = prm.comp_poly[c];
                                M[c] += a * S[q];
                                if (egrad) {
                                    double* dm = dMe + c * 3;
                                    for (int kk = 0; kk < 3; ++kk) dm[kk] += a * dSq[3 * q + kk];
                                }
                            }
                        }
                    }
                }
            }
            features_from_moments(prm, M.data(), out.features + i * F, dS.data());
            if (!grad) continue;
            // gradient of every feature with respect to each image's displacement
            for (int64_t e = e0; e < e1; ++e) {
                if (prm.harmonic) {
                    // second pass: d M_c / d d = A (Rr_n S_q d + R_n grad S_q), contracted with dS at once
                    if (!live[e - e0]) continue;  // skipped in pass 1 (outside a smooth cutoff)
                    const double* d = en.ed + 3 * e;
                    const double* rn = &Rcache[static_cast<size_t>(e - e0) * per_image];
                    const double* rr = rn + NR;
                    const double* Sc = rr + NR;
                    const double* dSc = Sc + Q;
                    for (int64_t p = 0; p < F; ++p) {
                        const int64_t off = prm.probe_sigma[p] * (K + 1) + prm.probe_order[p];
                        double a = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
                        for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) {
                            const int64_t q = prm.comp_poly[c];
                            a += dS[c] * Sc[q];
                            gx += dS[c] * dSc[3 * q];
                            gy += dS[c] * dSc[3 * q + 1];
                            gz += dS[c] * dSc[3 * q + 2];
                        }
                        const double amp = prm.probe_amp[p], R = rn[off], Rd = rr[off] * a;
                        g[p * 3] = amp * (Rd * d[0] + R * gx);
                        g[p * 3 + 1] = amp * (Rd * d[1] + R * gy);
                        g[p * 3 + 2] = amp * (Rd * d[2] + R * gz);
                    }
                } else {
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
