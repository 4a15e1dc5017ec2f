#include "gmp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "gmp_terms.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace amptorch {

void GMPTables::check() {
    auto fail = [](const char* what) { throw std::invalid_argument(what); };
    n_sigma = static_cast<int64_t>(sigma_alpha.size());
    n_feat = static_cast<int64_t>(probe_sigma.size());
    const size_t F = probe_sigma.size();
    if (F == 0) fail("GMPTables: no probes");
    if (probe_order.size() != F || probe_amp.size() != F || comp_start.size() != F + 1 || comp_start[0] != 0)
        fail("GMPTables: probe arrays have inconsistent lengths");
    for (double a : sigma_alpha)
        if (!(a > 0.0 && std::isfinite(a))) fail("GMPTables: sigma_alpha must be positive");
    max_power = 0;
    for (size_t f = 0; f < F; ++f) {
        if (probe_sigma[f] < 0 || probe_sigma[f] >= n_sigma || probe_order[f] < 0)
            fail("GMPTables: probe index out of range");
        if (comp_start[f + 1] < comp_start[f]) fail("GMPTables: comp_start must not decrease");
        max_power = std::max(max_power, static_cast<int>(probe_order[f]));
    }
    const size_t C = static_cast<size_t>(comp_start[F]);
    if (comp_weight.size() != C || comp_poly.size() != C) fail("GMPTables: component arrays have inconsistent lengths");
    if (poly_start.empty() || poly_start[0] != 0 || poly_start.back() != static_cast<int64_t>(mono_coef.size()) ||
        mono_pow.size() != 3 * mono_coef.size())
        fail("GMPTables: monomial arrays have inconsistent lengths");
    n_poly = static_cast<int64_t>(poly_start.size()) - 1;
    for (int64_t q = 0; q < n_poly; ++q)
        if (poly_start[q + 1] < poly_start[q]) fail("GMPTables: poly_start must not decrease");
    for (size_t m = 0; m < mono_coef.size(); ++m) {
        const int64_t a = mono_pow[3 * m], b = mono_pow[3 * m + 1], c = mono_pow[3 * m + 2];
        if (a < 0 || b < 0 || c < 0 || a + b + c > 64) fail("GMPTables: monomial power out of range");
        max_power = std::max(max_power, static_cast<int>(a + b + c));
    }
    for (size_t f = 0; f < F; ++f)
        for (int64_t c = comp_start[f]; c < comp_start[f + 1]; ++c) {
            const int64_t q = comp_poly[c];
            if (q < 0 || q >= n_poly) fail("GMPTables: comp_poly out of range");
            if (!harmonic) continue;
            for (int64_t m = poly_start[q]; m < poly_start[q + 1]; ++m)
                if (mono_pow[3 * m] + mono_pow[3 * m + 1] + mono_pow[3 * m + 2] != probe_order[f])
                    fail("GMPTables: harmonic=True needs homogeneous polynomials of their probe's order");
        }
    cutoff.check();
}

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

// One neighbour image as the kernel sees it.
struct Image {
    double d[3], r2, r, fc, dfc;
    int64_t s;  // species of its atom
};

// Neighbour image e of centre i (e < e0: the centre itself at d = 0). False
// when it lies outside a smooth cutoff (no value, no gradient).
inline bool load_image(const Entries& en, const int64_t* species, const Cutoff& cut, int64_t i, int64_t e,
                       int64_t e0, Image& im) {
    const bool self = e < e0;
    for (int k = 0; k < 3; ++k) im.d[k] = self ? 0.0 : en.ed[3 * e + k];
    im.r2 = im.d[0] * im.d[0] + im.d[1] * im.d[1] + im.d[2] * im.d[2];
    im.r = std::sqrt(im.r2);
    im.fc = 1.0;
    im.dfc = 0.0;
    if (cut.kind != 0 && !self) cut.eval(im.r, im.fc, im.dfc);
    im.s = species[self ? i : en.ej[e]];
    return !(im.fc == 0.0 && im.dfc == 0.0);
}

// The two algorithms, as per-thread objects the driver (run_atoms) calls:
//   start(n_images)           a new centre with n_images neighbour images;
//   add(im, k, M)             image k (-1: the centre itself) into the moments M (C,); im by
//                             value, so the compiler knows the stores into M cannot change it;
//   gradient(k, d, dS, g)     g (F, 3) = d features / d d of image k from dS = d features / d M;
//                             false: the image adds nothing.
// Shared holds what every thread reads (built once per call).

// Harmonic path: radial sums R_n(r) times angular values S_q(d); both (with
// their gradients) are cached per image in the moment pass and reused by the
// gradient pass.
class HarmonicPath {
   public:
    struct Shared {
        explicit Shared(const GMPTables&) {}
    };

    HarmonicPath(const GMPTables& prm, const Densities&, const RadialConstants& radial, const Shared&, bool grad)
        : prm(prm),
          radial(radial),
          grad(grad),
          K(prm.max_power),
          Q(prm.n_poly),
          NR((K + 1) * prm.n_sigma),
          per_image(static_cast<size_t>(NR * 2 + Q * 4)),
          S(Q),
          dSq(Q * 3),
          Rn(NR),
          Rr(NR),
          Rtmp(radial.scratch()),
          ang(K) {}

    void start(int64_t n_images) {
        if (!grad) return;
        Rcache.assign(static_cast<size_t>(n_images) * per_image, 0.0);
        live.assign(static_cast<size_t>(n_images), 0);
    }

    void add(const Image im, int64_t k, double* M) {
        const int64_t F = prm.n_feat;
        const bool cache = grad && k >= 0;
        ang.eval(prm, im.d, S.data(), cache ? dSq.data() : nullptr);
        radial.eval(im.s, im.r2, im.r, im.fc, im.dfc, Rn.data(), cache ? Rr.data() : nullptr, Rtmp.data());
        if (cache) {
            live[k] = 1;
            double* rc = &Rcache[static_cast<size_t>(k) * per_image];
            std::copy(Rn.begin(), Rn.end(), rc);
            std::copy(Rr.begin(), Rr.end(), rc + NR);
            std::copy(S.begin(), S.end(), rc + 2 * NR);
            std::copy(dSq.begin(), dSq.end(), rc + 2 * NR + Q);
        }
        for (int64_t p = 0; p < F; ++p) {
            const double aR = prm.probe_amp[p] * Rn[prm.probe_sigma[p] * (K + 1) + prm.probe_order[p]];
            for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) M[c] += aR * S[prm.comp_poly[c]];
        }
    }

    // d M_c / d d = A (Rr_n S_q d + R_n grad S_q), contracted with dS at once
    bool gradient(int64_t k, const double* d, const double* dS, double* g) const {
        if (!live[k]) return false;  // skipped in the moment pass (outside a smooth cutoff)
        const int64_t F = prm.n_feat;
        const double* rn = &Rcache[static_cast<size_t>(k) * per_image];
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
        return true;
    }

   private:
    const GMPTables& prm;
    const RadialConstants& radial;
    const bool grad;
    const int K;
    const int64_t Q, NR;
    const size_t per_image;
    std::vector<double> S, dSq, Rn, Rr, Rtmp, Rcache;
    std::vector<char> live;  // image k was kept in the moment pass
    Angular ang;
};

// General path: Gaussian moments of every (neighbour Gaussian, width); the
// moment gradients dM (C, 3) are kept per image for the gradient pass.
class MomentPath {
   public:
    // probes grouped by width, and the polynomials each width needs
    struct Shared {
        std::vector<std::vector<int64_t>> by_sigma, polys_of;
        explicit Shared(const GMPTables& prm) : by_sigma(prm.n_sigma), polys_of(prm.n_sigma) {
            for (int64_t p = 0; p < prm.n_feat; ++p) {
                const int64_t sg = prm.probe_sigma[p];
                by_sigma[sg].push_back(p);
                for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c)
                    polys_of[sg].push_back(prm.comp_poly[c]);
            }
            for (auto& v : polys_of) {
                std::sort(v.begin(), v.end());
                v.erase(std::unique(v.begin(), v.end()), v.end());
            }
        }
    };

    MomentPath(const GMPTables& prm, const Densities& dens, const RadialConstants& radial, const Shared& sh,
               bool grad)
        : prm(prm),
          dens(dens),
          radial(radial),
          by_sigma(sh.by_sigma),
          polys_of(sh.polys_of),
          grad(grad),
          K(prm.max_power),
          C(prm.comp_start[prm.n_feat]),
          S(prm.n_poly),
          dSq(prm.n_poly * 3),
          Px(K + 1),
          Py(K + 1),
          Pz(K + 1),
          dPx(K + 1),
          dPy(K + 1),
          dPz(K + 1) {}

    void start(int64_t n_images) {
        if (grad) dM.assign(static_cast<size_t>(n_images) * C * 3, 0.0);
    }

    void add(const Image im, int64_t k, double* M) {
        const std::vector<double>&pref = radial.pref, &glam = radial.glam, &gexp = radial.gexp;
        const bool egrad = grad && k >= 0;
        double* dMe = egrad ? &dM[static_cast<size_t>(k) * C * 3] : nullptr;
        for (int64_t sg = 0; sg < prm.n_sigma; ++sg) {
            if (by_sigma[sg].empty()) continue;
            for (int64_t gq = dens.gstart[im.s]; gq < dens.gstart[im.s + 1]; ++gq) {
                const int64_t gk = gq * prm.n_sigma + sg;
                const double lam = glam[gk];
                const double var = 0.5 * lam / dens.gbeta[gq];  // 1 / (2 gam)
                const double t = pref[gk] * exp_neg(-gexp[gk] * im.r2);
                const double tf = t * im.fc;
                double rad = -2.0 * gexp[gk] * tf;
                if (im.dfc != 0.0 && im.r > 0.0) rad += t * im.dfc / im.r;
                moments(im.d[0], lam, var, K, Px.data(), dPx.data());
                moments(im.d[1], lam, var, K, Py.data(), dPy.data());
                moments(im.d[2], lam, var, K, Pz.data(), dPz.data());
                for (int64_t q : polys_of[sg]) {
                    double gp[3];
                    const double v = poly_eval(prm, q, Px.data(), Py.data(), Pz.data(), dPx.data(), dPy.data(),
                                               dPz.data(), egrad ? gp : nullptr);
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

    bool gradient(int64_t k, const double*, const double* dS, double* g) const {
        const int64_t F = prm.n_feat;
        const double* dMe = &dM[static_cast<size_t>(k) * C * 3];
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
        return true;
    }

   private:
    const GMPTables& prm;
    const Densities& dens;
    const RadialConstants& radial;
    const std::vector<std::vector<int64_t>>&by_sigma, &polys_of;
    const bool grad;
    const int K;
    const int64_t C;
    std::vector<double> S, dSq, dM, Px, Py, Pz, dPx, dPy, dPz;
};

// Per centre atom: moments from every image (the centre's own density first
// when include_self), features, then each image's feature gradient scattered
// into the pair and strain blocks.
template <typename Path, typename T>
void run_atoms(const Entries& en, const int64_t* species, const GMPTables& prm, const Densities& dens,
               const Output<T>& out, bool derivatives, int n_threads) {
    const int64_t F = prm.n_feat;
    const int64_t C = prm.comp_start[F];
    const bool grad = derivatives || out.dfeat_strain;
    const RadialConstants radial(prm, dens);
    const typename Path::Shared shared(prm);

#ifdef _OPENMP
#pragma omp parallel num_threads(team_size(n_threads))
#endif
    {
        Path path(prm, dens, radial, shared, grad);
        std::vector<double> M(C), dS(C), g(grad ? F * 3 : 0);
        Image im;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t i = 0; i < en.n_atoms; ++i) {
            const int64_t e0 = en.estart[i], e1 = en.estart[i + 1];
            const int64_t first = prm.include_self ? e0 - 1 : e0;
            std::fill(M.begin(), M.end(), 0.0);
            path.start(e1 - e0);
            for (int64_t e = first; e < e1; ++e)
                if (load_image(en, species, prm.cutoff, i, e, e0, im)) path.add(im, e >= e0 ? e - e0 : -1, M.data());
            features_from_moments(prm, M.data(), out.features + i * F, dS.data());
            if (!grad) continue;
            for (int64_t e = e0; e < e1; ++e)
                if (path.gradient(e - e0, en.ed + 3 * e, dS.data(), g.data()))
                    out.scatter(i, derivatives ? en.epair[e] : -1, en.ed + 3 * e, g.data());
        }
    }
}

}  // namespace

template <typename T>
void gmp_compute(const Entries& en, const int64_t* species, const GMPTables& tab, const Densities& dens,
                 const Output<T>& out, bool derivatives, int n_threads) {
    if (tab.harmonic)
        run_atoms<HarmonicPath>(en, species, tab, dens, out, derivatives, n_threads);
    else
        run_atoms<MomentPath>(en, species, tab, dens, out, derivatives, n_threads);
}

template void gmp_compute<double>(const Entries&, const int64_t*, const GMPTables&, const Densities&,
                                  const Output<double>&, bool, int);
template void gmp_compute<float>(const Entries&, const int64_t*, const GMPTables&, const Densities&,
                                 const Output<float>&, bool, int);

}  // namespace amptorch
