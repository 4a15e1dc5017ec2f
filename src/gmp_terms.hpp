// Pieces of the GMP harmonic path shared by the fingerprint kernel
// (gmp.cpp: features and their derivatives, for training) and the inference
// kernel (gmp_infer.cpp: features, then forces and virial from dE/dfeatures).
//
// For a solid (harmonic) MCSH probe of order n and width sigma, neighbour
// image at displacement d (|d| = r) contributes
//   M_c += A_p R_n(r) S_c(d),   R_n(r) = fc(r) sum_g t_g(r) lam_g^n,
//   t_g(r) = B_g (pi / gam)^1.5 exp(-alpha beta_g r^2 / gam),  gam = alpha + beta_g,
// with lam_g = beta_g / gam (Gaussian product theorem; E[S(u)] = lam^n S(d)
// because S is harmonic and homogeneous of degree n).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gmp.hpp"

namespace amptorch {

// Polynomial q from per-axis tables: value and gradient (gradient only if g).
inline double poly_eval(const GMPTables& prm, int64_t q, const double* Px, const double* Py, const double* Pz,
                        const double* dPx, const double* dPy, const double* dPz, double* g) {
    double v = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
    for (int64_t m = prm.poly_start[q]; m < prm.poly_start[q + 1]; ++m) {
        const int64_t* pw = &prm.mono_pow[3 * m];
        const double cf = prm.mono_coef[m];
        const double a = Px[pw[0]], b = Py[pw[1]], c = Pz[pw[2]];
        v += cf * a * b * c;
        if (g) {
            gx += cf * dPx[pw[0]] * b * c;
            gy += cf * a * dPy[pw[1]] * c;
            gz += cf * a * b * dPz[pw[2]];
        }
    }
    if (g) {
        g[0] = gx;
        g[1] = gy;
        g[2] = gz;
    }
    return v;
}

// exp(x) for x <= 0 (clamped at -708, where exp is ~3e-308), within 2 ulp of std::exp:
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-13 Taylor polynomial
// (truncation < 5e-18 relative), 2^n from the exponent bits. Branch-free, so a
// loop over it vectorizes; std::exp was a third of the kernels' time.
inline double exp_neg(double x) {
    constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 6.93147180369123816490e-01,
                     kLn2Lo = 1.90821492927058770002e-10, kShifter = 6755399441055744.0;  // 1.5 * 2^52
    x = x < -708.0 ? -708.0 : x;
    const double t = x * kLog2e + kShifter;  // n in the low mantissa bits (round to nearest)
    const double n = t - kShifter;
    const double r = (x - n * kLn2Hi) - n * kLn2Lo;
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t tb, sb;
    std::memcpy(&tb, &t, sizeof tb);
    constexpr double shifter = kShifter;
    std::memcpy(&sb, &shifter, sizeof sb);
    const int64_t scale_bits = (tb - sb + 1023) << 52;
    double scale;
    std::memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

// Powers u^k (k = 0..K) and, if dP, their derivatives k u^(k-1).
inline void powers(double u, int K, double* P, double* dP = nullptr) {
    P[0] = 1.0;
    if (dP) dP[0] = 0.0;
    for (int k = 1; k <= K; ++k) {
        P[k] = P[k - 1] * u;
        if (dP) dP[k] = k * P[k - 1];
    }
}

// Constants of the Gaussian product per (density Gaussian gq, width sg), so
// each term costs one exp: t = pref exp(-gexp r^2), lam = beta / gam.
//
// Since gexp = alpha beta / gam = alpha lam, the radial derivative needs no
// sums of its own: with R0_n = sum_g t_g lam_g^n (no cutoff factor),
//   R_n = fc R0_n,   (dR_n/dr) / r = -2 alpha fc R0_(n+1) + (dfc/dr / r) R0_n.
struct RadialConstants {
    int64_t n_sigma = 0;
    int K = 0;
    int64_t n_species = 0;
    const int64_t* gstart = nullptr;
    const double* alpha = nullptr;
    std::vector<double> pref, glam, gexp;
    std::vector<double> lampow;  // (NG n_sigma, K + 2) lam^n
    std::vector<char> used;      // (n_sigma,) some probe has this width

    RadialConstants(const GMPTables& prm, const Densities& dens)
        : n_sigma(prm.n_sigma), K(prm.max_power), n_species(dens.n_species) {
        gstart = dens.gstart;
        alpha = prm.sigma_alpha.data();
        const int64_t NG = dens.gstart[n_species];
        pref.resize(NG * n_sigma);
        glam.resize(NG * n_sigma);
        gexp.resize(NG * n_sigma);
        lampow.resize(NG * n_sigma * (K + 2));
        for (int64_t gq = 0; gq < NG; ++gq)
            for (int64_t sg = 0; sg < n_sigma; ++sg) {
                const int64_t k = gq * n_sigma + sg;
                const double a = prm.sigma_alpha[sg], beta = dens.gbeta[gq], gam = a + beta, lam = beta / gam;
                pref[k] = dens.gB[gq] * std::pow(kPi / gam, 1.5);
                glam[k] = lam;
                gexp[k] = a * beta / gam;
                double lp = 1.0;
                for (int n = 0; n <= K + 1; ++n, lp *= lam) lampow[k * (K + 2) + n] = lp;
            }
        used.assign(n_sigma, 0);
        for (int64_t p = 0; p < prm.n_feat; ++p) used[prm.probe_sigma[p]] = 1;
    }

    // Radial sums of a neighbour of species s at r (r2 = r^2) with cutoff
    // value fc and slope dfc: rn[sg (K+1) + n] = R_n and, if rr, rr[...] = (dR_n/dr) / r.
    // tmp: scratch of scratch() doubles.
    inline void eval(int64_t s, double r2, double r, double fc, double dfc, double* rn, double* rr,
                     double* tmp) const {
        const int K2 = K + 2, top = rr ? K + 2 : K + 1;  // powers needed
        // the (Gaussian, width) terms of species s are contiguous: one vectorizable exp loop
        const int64_t k0 = gstart[s] * n_sigma, nk = (gstart[s + 1] - gstart[s]) * n_sigma;
        const double* gx = gexp.data() + k0;
        const double* pf = pref.data() + k0;
        double* t = tmp;
        double* r0 = tmp + nk;  // (n_sigma, K + 2)
        for (int64_t k = 0; k < nk; ++k) t[k] = pf[k] * exp_neg(-gx[k] * r2);
        std::fill(r0, r0 + n_sigma * K2, 0.0);
        for (int64_t g = 0; g < gstart[s + 1] - gstart[s]; ++g)
            for (int64_t sg = 0; sg < n_sigma; ++sg) {
                const int64_t k = g * n_sigma + sg;
                const double* lp = &lampow[(k0 + k) * K2];
                double* acc = r0 + sg * K2;
                for (int n = 0; n < top; ++n) acc[n] += t[k] * lp[n];
            }
        const double dfc_r = (dfc != 0.0 && r > 0.0) ? dfc / r : 0.0;
        for (int64_t sg = 0; sg < n_sigma; ++sg) {
            const double* acc = r0 + sg * K2;
            double* rs = rn + sg * (K + 1);
            if (!used[sg]) {
                std::fill(rs, rs + K + 1, 0.0);
                if (rr) std::fill(rr + sg * (K + 1), rr + (sg + 1) * (K + 1), 0.0);
                continue;
            }
            for (int n = 0; n <= K; ++n) rs[n] = fc * acc[n];
            if (rr) {
                const double c = -2.0 * alpha[sg] * fc;
                double* rd = rr + sg * (K + 1);
                for (int n = 0; n <= K; ++n) rd[n] = c * acc[n + 1] + dfc_r * acc[n];
            }
        }
    }

    // scratch size eval() needs
    int64_t scratch() const {
        int64_t m = 0;
        for (int64_t s = 0; s < n_species; ++s) m = std::max<int64_t>(m, gstart[s + 1] - gstart[s]);
        return m * n_sigma + n_sigma * (K + 2);
    }
};

// Angular values S_q(d) of every polynomial q (and, if dS, gradients (Q, 3)).
struct Angular {
    std::vector<double> Px, Py, Pz, dPx, dPy, dPz;

    explicit Angular(int K) : Px(K + 1), Py(K + 1), Pz(K + 1), dPx(K + 1), dPy(K + 1), dPz(K + 1) {}

    inline void eval(const GMPTables& prm, const double* d, double* S, double* dS) {
        const int K = prm.max_power;
        powers(d[0], K, Px.data(), dPx.data());
        powers(d[1], K, Py.data(), dPy.data());
        powers(d[2], K, Pz.data(), dPz.data());
        for (int64_t q = 0; q < prm.n_poly; ++q)
            S[q] = poly_eval(prm, q, Px.data(), Py.data(), Pz.data(), dPx.data(), dPy.data(), dPz.data(),
                             dS ? dS + 3 * q : nullptr);
    }
};

// Feature p of one atom from its moments M (C,), and d feature / d M_c into dS (C,).
template <typename T>
inline void features_from_moments(const GMPTables& prm, const double* M, T* feat, double* dS) {
    for (int64_t p = 0; p < prm.n_feat; ++p) {
        double sum = 0.0;
        for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) sum += prm.comp_weight[c] * M[c] * M[c];
        double scale = 2.0;
        if (prm.square) {
            feat[p] = static_cast<T>(sum);
        } else {
            const double root = std::sqrt(sum);
            feat[p] = static_cast<T>(root);
            // d sqrt(S) = dS / (2 sqrt(S)); at S = 0 every M_c is 0 and the
            // one-sided derivative is taken as 0.
            scale = root > 0.0 ? 1.0 / root : 0.0;
        }
        for (int64_t c = prm.comp_start[p]; c < prm.comp_start[p + 1]; ++c) dS[c] = scale * prm.comp_weight[c] * M[c];
    }
}

}  // namespace amptorch
