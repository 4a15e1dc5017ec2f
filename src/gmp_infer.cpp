#include "gmp_infer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "gmp_terms.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace amptorch {

namespace {

// Per-pair radial sums are kept between the two passes up to this size
// (a 108-atom Cu cell at 7 Å needs ~2.4 MB); beyond it pass 2 recomputes them.
constexpr int64_t kCacheBytes = int64_t(256) << 20;
// RadialTable accuracy: spline error below this fraction of each radial function's largest value
constexpr double kTableTol = 1e-11;

inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace

GMPInference::GMPInference(const GMPTables& tables, bool tabulate) : tab_(tables), tabulate_(tabulate) {
    const auto& t = tab_;
    if (!t.harmonic) throw std::invalid_argument("GMPInference needs harmonic tables (solid MCSH)");
    const int64_t F = t.n_feat;
    // monomials x^a y^b z^c of degree 0..K, grouped by degree
    const int K = t.max_power;
    const int64_t K1 = K + 1;
    std::vector<int64_t> local(static_cast<size_t>(K1 * K1 * K1), -1);  // (a, b, c) -> index within its degree
    mono_off_.assign(1, 0);
    for (int n = 0; n <= K; ++n) {
        int64_t k = 0;
        for (int a = n; a >= 0; --a)
            for (int b = n - a; b >= 0; --b) {
                const int c = n - a - b;
                mono_abc_.insert(mono_abc_.end(), {a, b, c});
                local[(a * K1 + b) * K1 + c] = k++;
            }
        mono_off_.push_back(mono_off_.back() + k);
    }
    // each polynomial by monomial index within its degree (harmonic tables: one degree, its probe's order)
    const int64_t Q = t.n_poly;
    pterm_start_.assign(1, 0);
    for (int64_t q = 0; q < Q; ++q) {
        for (int64_t m = t.poly_start[q]; m < t.poly_start[q + 1]; ++m) {
            const int64_t a = t.mono_pow[3 * m], b = t.mono_pow[3 * m + 1], c = t.mono_pow[3 * m + 2];
            pterm_mono_.push_back(local[(a * K1 + b) * K1 + c]);
            pterm_coef_.push_back(t.mono_coef[m]);
        }
        pterm_start_.push_back(static_cast<int64_t>(pterm_mono_.size()));
    }
    // one T block per (width, order) in use
    std::vector<int64_t> block_of(static_cast<size_t>(t.n_sigma * K1), -1);
    for (int64_t f = 0; f < F; ++f) {
        const int64_t n = t.probe_order[f], sg = t.probe_sigma[f];
        int64_t& b = block_of[sg * K1 + n];
        if (b < 0) {
            b = static_cast<int64_t>(blk_off_.size());
            blk_off_.push_back(n_t_);
            blk_sigma_.push_back(sg);
            blk_order_.push_back(n);
            n_t_ += mono_off_[n + 1] - mono_off_[n];
        }
        feat_blk_.push_back(b);
    }
}

void RadialTable::exact(const RadialConstants& rc, int64_t s, double r, double* f, double* f1, double* f2) {
    const int K = rc.K, K2 = K + 2;
    const int64_t S = rc.n_sigma, NRl = S * (K + 1);
    std::fill(f, f + NRl, 0.0);
    std::fill(f1, f1 + NRl, 0.0);
    std::fill(f2, f2 + NRl, 0.0);
    for (int64_t gq = rc.gstart[s]; gq < rc.gstart[s + 1]; ++gq)
        for (int64_t sg = 0; sg < S; ++sg) {
            const int64_t k = gq * S + sg;
            const double gam = rc.gexp[k], e = rc.pref[k] * std::exp(-gam * r * r);
            const double d1 = -2.0 * gam * r * e, d2 = (4.0 * gam * gam * r * r - 2.0 * gam) * e;
            const double* lp = &rc.lampow[static_cast<size_t>(k * K2)];
            for (int n = 0; n <= K; ++n) {
                f[sg * (K + 1) + n] += e * lp[n];
                f1[sg * (K + 1) + n] += d1 * lp[n];
                f2[sg * (K + 1) + n] += d2 * lp[n];
            }
        }
}

bool RadialTable::same_densities(const Densities& dens) const {
    const int64_t n_sp = dens.n_species;
    if (n_sp != n_species || gstart.empty()) return false;
    if (!std::equal(dens.gstart, dens.gstart + n_sp + 1, gstart.begin())) return false;
    const int64_t G = dens.gstart[n_sp];
    return std::equal(dens.gB, dens.gB + G, gB.begin()) && std::equal(dens.gbeta, dens.gbeta + G, gbeta.begin());
}

void RadialTable::build(const GMPTables& tab, const Densities& dens, double rmax, double tol) {
    const RadialConstants rc(tab, dens);
    const int K = tab.max_power;
    const int64_t n_sp = dens.n_species;
    n_species = n_sp;
    NR = tab.n_sigma * (K + 1);
    gstart.assign(dens.gstart, dens.gstart + n_sp + 1);
    gB.assign(dens.gB, dens.gB + dens.gstart[n_sp]);
    gbeta.assign(dens.gbeta, dens.gbeta + dens.gstart[n_sp]);
    std::vector<double> f(NR), f1(NR), f2(NR), v(NR), dv(NR), scale(NR), scale1(NR);
    for (h = 0.02; ; h *= 0.5) {
        inv_h = 1.0 / h;
        n_int = static_cast<int64_t>(std::ceil(rmax * inv_h));
        coef.assign(static_cast<size_t>(n_sp * n_int * 6 * NR), 0.0);
        bool ok = true;
        for (int64_t s = 0; s < n_sp; ++s) {
            // node values (n_int + 1, 3, NR)
            std::vector<double> node(static_cast<size_t>((n_int + 1) * 3 * NR));
            std::fill(scale.begin(), scale.end(), 0.0);
            std::fill(scale1.begin(), scale1.end(), 0.0);
            for (int64_t k = 0; k <= n_int; ++k) {
                double* nd = &node[static_cast<size_t>(k * 3 * NR)];
                exact(rc, s, k * h, nd, nd + NR, nd + 2 * NR);
                for (int64_t m = 0; m < NR; ++m) {
                    scale[m] = std::max(scale[m], std::abs(nd[m]));
                    scale1[m] = std::max(scale1[m], std::abs(nd[NR + m]));
                }
            }
            for (int64_t k = 0; k < n_int; ++k) {
                const double* a = &node[static_cast<size_t>(k * 3 * NR)];
                const double* b = a + 3 * NR;
                double* c = &coef[static_cast<size_t>((s * n_int + k) * 6 * NR)];
                for (int64_t m = 0; m < NR; ++m) {
                    // quintic Hermite on t in [0, 1]: values, h f', h^2 f'' at both ends
                    const double p0 = a[m], d0 = h * a[NR + m], s0 = h * h * a[2 * NR + m];
                    const double p1 = b[m], d1 = h * b[NR + m], s1 = h * h * b[2 * NR + m];
                    c[m] = p0;
                    c[NR + m] = d0;
                    c[2 * NR + m] = 0.5 * s0;
                    c[3 * NR + m] = -10.0 * p0 - 6.0 * d0 - 1.5 * s0 + 10.0 * p1 - 4.0 * d1 + 0.5 * s1;
                    c[4 * NR + m] = 15.0 * p0 + 8.0 * d0 + 1.5 * s0 - 15.0 * p1 + 7.0 * d1 - s1;
                    c[5 * NR + m] = -6.0 * p0 - 3.0 * d0 - 0.5 * s0 + 6.0 * p1 - 3.0 * d1 + 0.5 * s1;
                }
            }
            // check value and slope at every interval's midpoint
            for (int64_t k = 0; k < n_int && ok; ++k) {
                const double r = (k + 0.5) * h;
                exact(rc, s, r, f.data(), f1.data(), f2.data());
                eval(s, r, 1.0, 0.0, v.data(), dv.data());
                for (int64_t m = 0; m < NR; ++m)
                    if (std::abs(v[m] - f[m]) > tol * scale[m] || std::abs(dv[m] * r - f1[m]) > tol * scale1[m]) {
                        ok = false;
                        break;
                    }
            }
        }
        if (ok) return;
        if (h < 0.002) break;
    }
    n_int = 0;  // not accurate enough on any grid tried: the caller uses the exact sums
    coef.clear();
}

// Radial sums of a pair at r (r2 = r^2, cutoff value fc and slope dfc): out[0:NR] = R of j's
// species, out[NR:2NR] = (dR/dr)/r if with_rr, then the same for i's species if it differs.
void GMPInference::pair_radial(const RadialConstants& radial, bool table, int64_t si, int64_t sj, double r2,
                               double r, double fc, double dfc, double* out, bool with_rr, double* tmp) const {
    const int64_t NR = tab_.n_sigma * (tab_.max_power + 1);
    for (int side = 0; side < (si != sj ? 2 : 1); ++side) {
        const int64_t s = side ? si : sj;
        double* rn = out + 2 * NR * side;
        double* rr = with_rr ? rn + NR : nullptr;
        if (table)
            table_.eval(s, r, fc, dfc, rn, rr);
        else
            radial.eval(s, r2, r, fc, dfc, rn, rr, tmp);
    }
}

// Monomial values d^mu (NM,) from powers P (3, K + 1) of the components of d.
void GMPInference::monomials(const double* d, double* mono, double* P) const {
    const int K = tab_.max_power;
    double* Px = P;
    double* Py = P + K + 1;
    double* Pz = P + 2 * (K + 1);
    powers(d[0], K, Px);
    powers(d[1], K, Py);
    powers(d[2], K, Pz);
    const int64_t NM = mono_off_.back();
    for (int64_t m = 0; m < NM; ++m) {
        const int64_t* e = &mono_abc_[3 * m];
        mono[m] = Px[e[0]] * Py[e[1]] * Pz[e[2]];
    }
}

std::pair<int64_t, double> GMPInference::features(int64_t n_atoms, const int64_t* species, const Densities& dens,
                                                  const double* positions, const double* cell,
                                                  const HalfPairs& pairs, double* feat, int n_threads) {
    const int64_t P = pairs.n_pairs, n_species = dens.n_species;
    for (int64_t a = 0; a < n_atoms; ++a)
        if (species[a] < 0 || species[a] >= n_species) throw std::invalid_argument("species index out of range");
    for (int64_t p = 0; p < P; ++p)
        if (pairs.pi[p] < 0 || pairs.pi[p] >= n_atoms || pairs.pj[p] < 0 || pairs.pj[p] >= n_atoms)
            throw std::invalid_argument("pair atom index out of range");
    n_atoms_ = n_atoms;
    species_.assign(species, species + n_atoms);
    gstart_.assign(dens.gstart, dens.gstart + n_species + 1);
    gB_.assign(dens.gB, dens.gB + dens.gstart[n_species]);
    gbeta_.assign(dens.gbeta, dens.gbeta + dens.gstart[n_species]);
    pi_.assign(pairs.pi, pairs.pi + P);
    pj_.assign(pairs.pj, pairs.pj + P);
    d_.resize(static_cast<size_t>(P) * 3);
    live_.assign(static_cast<size_t>(P), 0);

    const RadialConstants radial(tab_, dens);
    if (tabulate_ && !table_.same_densities(dens)) table_.build(tab_, dens, tab_.cutoff.rc, kTableTol);
    const bool table = use_table();
    const int64_t F = tab_.n_feat, C = tab_.comp_start[F], NT = n_t_, NB = static_cast<int64_t>(blk_off_.size());
    const int K = tab_.max_power;
    const int64_t NR = tab_.n_sigma * (K + 1), NM = mono_off_.back();
    // per pair: R, R'/r of the neighbour seen from i (species of j), then of i seen from j if the species differ
    const int64_t stride = (n_species > 1 ? 4 : 2) * NR;
    cached_ = P * stride * int64_t(sizeof(double)) <= kCacheBytes;
    if (cached_)
        radial_cache_.resize(static_cast<size_t>(P * stride));
    else
        radial_cache_.clear();
    const double rc2 = tab_.cutoff.rc * tab_.cutoff.rc;

    const int T = team_size(n_threads);
    std::vector<double> Tbuf(static_cast<size_t>(T) * n_atoms * NT, 0.0);
    std::vector<int64_t> best_p(T, -1);
    std::vector<double> best_r2(T, std::numeric_limits<double>::infinity());
    dS_.assign(static_cast<size_t>(n_atoms) * C, 0.0);

#ifdef _OPENMP
#pragma omp parallel num_threads(T)
#endif
    {
        const int tid = thread_id();
        double* Tm = &Tbuf[static_cast<size_t>(tid) * n_atoms * NT];
        std::vector<double> mono(NM), pw(3 * (K + 1)), buf(4 * NR), tmp(radial.scratch()), M(C);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t p = 0; p < P; ++p) {
            const int64_t i = pi_[p], j = pj_[p];
            const int64_t* sh = pairs.shift + 3 * p;
            double* d = &d_[3 * p];
            for (int k = 0; k < 3; ++k)
                d[k] = positions[3 * j + k] - positions[3 * i + k] + sh[0] * cell[k] + sh[1] * cell[3 + k] +
                       sh[2] * cell[6 + k];
            const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            if (r2 < best_r2[tid]) {
                best_r2[tid] = r2;
                best_p[tid] = p;
            }
            if (!(r2 < rc2)) continue;
            const double r = std::sqrt(r2);
            double fc = 1.0, dfc = 0.0;
            if (tab_.cutoff.kind != 0) tab_.cutoff.eval(r, fc, dfc);
            if (fc == 0.0 && dfc == 0.0) continue;
            live_[p] = 1;
            const int64_t si = species_[i], sj = species_[j];
            double* rj = cached_ ? &radial_cache_[static_cast<size_t>(p * stride)] : buf.data();
            const double* ri = si != sj ? rj + 2 * NR : rj;
            pair_radial(radial, table, si, sj, r2, r, fc, dfc, rj, cached_, tmp.data());
            monomials(d, mono.data(), pw.data());
            double* Ti = Tm + i * NT;
            double* Tj = Tm + j * NT;
            for (int64_t b = 0; b < NB; ++b) {
                const int64_t n = blk_order_[b], off = blk_sigma_[b] * (K + 1) + n;
                const double a_i = rj[off];
                const double a_j = (n % 2 ? -ri[off] : ri[off]);  // seen from j the image is at -d
                const double* mo = mono.data() + mono_off_[n];
                double* ti = Ti + blk_off_[b];
                double* tj = Tj + blk_off_[b];
                const int64_t D = mono_off_[n + 1] - mono_off_[n];
                for (int64_t m = 0; m < D; ++m) {
                    ti[m] += a_i * mo[m];
                    tj[m] += a_j * mo[m];
                }
            }
        }
        if (tab_.include_self) {
            // the centre's own density at d = 0 (no cutoff factor, no position derivative):
            // only degree-0 monomials are nonzero there
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t i = 0; i < n_atoms; ++i) {
                radial.eval(species_[i], 0.0, 0.0, 1.0, 0.0, buf.data(), nullptr, tmp.data());
                for (int64_t b = 0; b < NB; ++b)
                    if (blk_order_[b] == 0) Tm[i * NT + blk_off_[b]] += buf[blk_sigma_[b] * (K + 1)];
            }
        }
        // sum the threads' moments; M_c = A_f sum_mu a_c,mu T[mu]; features and d feature / d M
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < n_atoms; ++i) {
            double* Ti = &Tbuf[static_cast<size_t>(i) * NT];
            for (int t = 1; t < T; ++t) {
                const double* Tt = &Tbuf[(static_cast<size_t>(t) * n_atoms + i) * NT];
                for (int64_t k = 0; k < NT; ++k) Ti[k] += Tt[k];
            }
            for (int64_t f = 0; f < F; ++f) {
                const double* tb = Ti + blk_off_[feat_blk_[f]];
                for (int64_t c = tab_.comp_start[f]; c < tab_.comp_start[f + 1]; ++c) {
                    const int64_t q = tab_.comp_poly[c];
                    double s = 0.0;
                    for (int64_t k = pterm_start_[q]; k < pterm_start_[q + 1]; ++k) s += pterm_coef_[k] * tb[pterm_mono_[k]];
                    M[c] = tab_.probe_amp[f] * s;
                }
            }
            features_from_moments(tab_, M.data(), feat + i * F, &dS_[static_cast<size_t>(i) * C]);
        }
    }
    int64_t bp = -1;
    double br2 = std::numeric_limits<double>::infinity();
    for (int t = 0; t < T; ++t)
        if (best_r2[t] < br2) {
            br2 = best_r2[t];
            bp = best_p[t];
        }
    return {bp, br2};
}

void GMPInference::forces(const double* dEdG, double* forces, double* virial, int n_threads) {
    if (n_atoms_ < 0) throw std::logic_error("forces() called before features()");
    const int64_t n = n_atoms_, P = static_cast<int64_t>(pi_.size());
    const int64_t F = tab_.n_feat, C = tab_.comp_start[F], NT = n_t_, NB = static_cast<int64_t>(blk_off_.size());
    const int K = tab_.max_power;
    const int64_t NR = tab_.n_sigma * (K + 1), NM = mono_off_.back();
    const int64_t n_species = static_cast<int64_t>(gstart_.size()) - 1;
    const int64_t stride = (n_species > 1 ? 4 : 2) * NR;
    const RadialConstants radial(tab_, densities());

    // U = dE/dT of every atom: dE/dM_c = dEdG_f dS_c, M_c = A_f sum_mu a_c,mu T[mu]
    std::vector<double> U(static_cast<size_t>(n) * NT, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t f = 0; f < F; ++f) {
            double* ub = &U[static_cast<size_t>(i * NT + blk_off_[feat_blk_[f]])];
            const double a = dEdG[i * F + f] * tab_.probe_amp[f];
            for (int64_t c = tab_.comp_start[f]; c < tab_.comp_start[f + 1]; ++c) {
                const double v = a * dS_[static_cast<size_t>(i * C + c)];
                const int64_t q = tab_.comp_poly[c];
                for (int64_t k = pterm_start_[q]; k < pterm_start_[q + 1]; ++k) ub[pterm_mono_[k]] += v * pterm_coef_[k];
            }
        }

    const int T = team_size(n_threads);
    std::vector<double> Fbuf(static_cast<size_t>(T) * n * 3, 0.0), Wbuf(static_cast<size_t>(T) * 9, 0.0);
#ifdef _OPENMP
#pragma omp parallel num_threads(T)
#endif
    {
        const int tid = thread_id();
        double* Ft = &Fbuf[static_cast<size_t>(tid) * n * 3];
        double* Wt = &Wbuf[static_cast<size_t>(tid) * 9];
        std::vector<double> cg(NM), cv(NM), mono(NM), pw(3 * (K + 1)), buf(4 * NR),
            tmp(radial.scratch());
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t p = 0; p < P; ++p) {
            if (!live_[p]) continue;
            const int64_t i = pi_[p], j = pj_[p];
            const int64_t si = species_[i], sj = species_[j];
            const double* d = &d_[3 * p];
            const double* rj;
            if (cached_) {
                rj = &radial_cache_[static_cast<size_t>(p * stride)];
            } else {
                const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2], r = std::sqrt(r2);
                double fc = 1.0, dfc = 0.0;
                if (tab_.cutoff.kind != 0) tab_.cutoff.eval(r, fc, dfc);
                pair_radial(radial, use_table(), si, sj, r2, r, fc, dfc, buf.data(), true, tmp.data());
                rj = buf.data();
            }
            const double* ri = si != sj ? rj + 2 * NR : rj;
            // E depends on d through sum_mu U_i[mu] R_j(r) d^mu + (-1)^n U_j[mu] R_i(r) d^mu; collect the
            // weight of each monomial: cg for R, cv for (dR/dr)/r, so that
            //   g = dE/dd = (sum_mu cv_mu d^mu) d + sum_mu cg_mu grad d^mu
            std::fill(cg.begin(), cg.end(), 0.0);
            std::fill(cv.begin(), cv.end(), 0.0);
            const double* Ui = &U[static_cast<size_t>(i * NT)];
            const double* Uj = &U[static_cast<size_t>(j * NT)];
            for (int64_t b = 0; b < NB; ++b) {
                const int64_t nb = blk_order_[b], off = blk_sigma_[b] * (K + 1) + nb;
                const double sgn = nb % 2 ? -1.0 : 1.0;
                const double r1 = rj[off], rr1 = rj[NR + off], r2 = sgn * ri[off], rr2 = sgn * ri[NR + off];
                const double* ui = Ui + blk_off_[b];
                const double* uj = Uj + blk_off_[b];
                double* g_ = cg.data() + mono_off_[nb];
                double* v_ = cv.data() + mono_off_[nb];
                const int64_t D = mono_off_[nb + 1] - mono_off_[nb];
                for (int64_t m = 0; m < D; ++m) {
                    g_[m] += r1 * ui[m] + r2 * uj[m];
                    v_[m] += rr1 * ui[m] + rr2 * uj[m];
                }
            }
            monomials(d, mono.data(), pw.data());
            const double* Px = pw.data();
            const double* Py = Px + K + 1;
            const double* Pz = Py + K + 1;
            double v = 0.0, g[3] = {0.0, 0.0, 0.0};
            for (int64_t m = 0; m < NM; ++m) {
                const int64_t* e = &mono_abc_[3 * m];
                v += cv[m] * mono[m];
                // d/dx x^a y^b z^c = a x^(a-1) y^b z^c
                const double w = cg[m];
                if (e[0]) g[0] += w * e[0] * Px[e[0] - 1] * Py[e[1]] * Pz[e[2]];
                if (e[1]) g[1] += w * e[1] * Px[e[0]] * Py[e[1] - 1] * Pz[e[2]];
                if (e[2]) g[2] += w * e[2] * Px[e[0]] * Py[e[1]] * Pz[e[2] - 1];
            }
            for (int k = 0; k < 3; ++k) g[k] += v * d[k];
            // g = dE/dd with d = r_j + shift . cell - r_i
            for (int k = 0; k < 3; ++k) {
                Ft[3 * i + k] += g[k];
                Ft[3 * j + k] -= g[k];
            }
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) Wt[3 * a + b] += g[a] * d[b];
        }
    }
    for (int64_t k = 0; k < n * 3; ++k) {
        double s = 0.0;
        for (int t = 0; t < T; ++t) s += Fbuf[static_cast<size_t>(t) * n * 3 + k];
        forces[k] = s;
    }
    for (int k = 0; k < 9; ++k) {
        double s = 0.0;
        for (int t = 0; t < T; ++t) s += Wbuf[static_cast<size_t>(t) * 9 + k];
        virial[k] = s;
    }
}

}  // namespace amptorch
