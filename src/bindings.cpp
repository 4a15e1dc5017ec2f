// pybind11 layer: turns numpy arrays into the kernels' flat views, allocates
// the outputs and releases the GIL while the kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "gmp.hpp"
#include "gmp_infer.hpp"
#include "gsf.hpp"

namespace py = pybind11;
using namespace amptorch;

using IArr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using DArr = py::array_t<double, py::array::c_style | py::array::forcecast>;

namespace {

Entries make_entries(const IArr& estart, const IArr& ej, const DArr& ed, const IArr& epair) {
    Entries en;
    en.n_atoms = estart.size() - 1;
    en.estart = estart.data();
    en.ej = ej.data();
    en.ed = ed.data();
    en.epair = epair.data();
    if (ej.size() != epair.size() || ed.size() != 3 * ej.size())
        throw std::invalid_argument("neighbour entry arrays have inconsistent lengths");
    if (estart.data()[en.n_atoms] != ej.size())
        throw std::invalid_argument("estart[-1] must equal the number of entries");
    return en;
}

// Allocates outputs of dtype T, runs fn(Output<T>) without the GIL and
// returns (features, dfeat or None, dfeat_strain or None).
template <typename T, typename Fn>
py::tuple run(int64_t n_atoms, int64_t n_feat, int64_t n_pairs, bool derivatives, bool strain, Fn fn) {
    py::array_t<T> features({n_atoms, n_feat});
    py::object dfeat = py::none(), dstrain = py::none();
    Output<T> out{n_feat, features.mutable_data(), nullptr, nullptr};
    if (derivatives) {
        py::array_t<T> a({n_pairs, n_feat, int64_t(3)});
        std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
        out.dfeat = a.mutable_data();
        dfeat = a;
    }
    if (strain) {
        py::array_t<T> a({n_atoms, n_feat, int64_t(3), int64_t(3)});
        std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
        out.dfeat_strain = a.mutable_data();
        dstrain = a;
    }
    {
        py::gil_scoped_release release;
        fn(out);
    }
    return py::make_tuple(features, dfeat, dstrain);
}

py::tuple gmp(const IArr& species, const IArr& estart, const IArr& ej, const DArr& ed, const IArr& epair,
              int64_t n_pairs, const IArr& gstart, const DArr& gB, const DArr& gbeta, const DArr& sigma_alpha,
              const IArr& probe_sigma, const IArr& probe_order, const DArr& probe_amp, const IArr& comp_start,
              const DArr& comp_weight, const IArr& comp_poly, const IArr& poly_start, const DArr& mono_coef,
              const IArr& mono_pow, int max_power, bool harmonic, bool square, bool include_self,
              int cutoff_kind, double rc, double gamma, bool derivatives, bool strain, bool float32,
              int n_threads) {
    Entries en = make_entries(estart, ej, ed, epair);
    if (species.size() != en.n_atoms) throw std::invalid_argument("species must have one entry per atom");
    GMPParams p;
    p.gstart = gstart.data();
    p.gB = gB.data();
    p.gbeta = gbeta.data();
    p.n_sigma = sigma_alpha.size();
    p.sigma_alpha = sigma_alpha.data();
    p.n_feat = probe_sigma.size();
    p.probe_sigma = probe_sigma.data();
    p.probe_order = probe_order.data();
    p.probe_amp = probe_amp.data();
    p.comp_start = comp_start.data();
    p.comp_weight = comp_weight.data();
    p.comp_poly = comp_poly.data();
    p.n_poly = poly_start.size() - 1;
    p.poly_start = poly_start.data();
    p.mono_coef = mono_coef.data();
    p.mono_pow = mono_pow.data();
    p.max_power = max_power;
    p.harmonic = harmonic;
    if (probe_order.size() != p.n_feat || probe_amp.size() != p.n_feat || comp_start.size() != p.n_feat + 1)
        throw std::invalid_argument("probe arrays have inconsistent lengths");
    p.square = square;
    p.include_self = include_self;
    p.cutoff = Cutoff{cutoff_kind, rc, gamma};
    const int64_t* sp = species.data();
    if (float32)
        return run<float>(en.n_atoms, p.n_feat, n_pairs, derivatives, strain,
                          [&](const Output<float>& o) { gmp_compute<float>(en, sp, p, o, derivatives, n_threads); });
    return run<double>(en.n_atoms, p.n_feat, n_pairs, derivatives, strain,
                       [&](const Output<double>& o) { gmp_compute<double>(en, sp, p, o, derivatives, n_threads); });
}

py::tuple gsf(const IArr& species, const IArr& estart, const IArr& ej, const DArr& ed, const IArr& epair,
              int64_t n_pairs, const IArr& channel, int64_t n_channels, const IArr& kind, const IArr& el1,
              const IArr& el2, const DArr& eta, const DArr& rs, const DArr& lam, int cutoff_kind, double rc,
              double gamma, bool derivatives, bool strain, bool float32, int n_threads) {
    Entries en = make_entries(estart, ej, ed, epair);
    if (species.size() != en.n_atoms) throw std::invalid_argument("species must have one entry per atom");
    GSFParams p;
    p.n_channels = n_channels;
    p.channel = channel.data();
    p.n_feat = kind.shape(kind.ndim() - 1);
    p.kind = kind.data();
    p.el1 = el1.data();
    p.el2 = el2.data();
    p.eta = eta.data();
    p.rs = rs.data();
    p.lam = lam.data();
    p.cutoff = Cutoff{cutoff_kind, rc, gamma};
    const int64_t* sp = species.data();
    if (float32)
        return run<float>(en.n_atoms, p.n_feat, n_pairs, derivatives, strain,
                          [&](const Output<float>& o) { gsf_compute<float>(en, sp, p, o, derivatives, n_threads); });
    return run<double>(en.n_atoms, p.n_feat, n_pairs, derivatives, strain,
                       [&](const Output<double>& o) { gsf_compute<double>(en, sp, p, o, derivatives, n_threads); });
}

// GMPInference: the calculator's two-pass kernel (see gmp_infer.hpp).
std::unique_ptr<GMPInference> make_inference(const DArr& sigma_alpha, const IArr& probe_sigma,
                                             const IArr& probe_order, const DArr& probe_amp,
                                             const IArr& comp_start, const DArr& comp_weight,
                                             const IArr& comp_poly, const IArr& poly_start,
                                             const DArr& mono_coef, const IArr& mono_pow, int max_power,
                                             bool square, bool include_self, int cutoff_kind, double rc,
                                             double gamma, bool tabulate) {
    auto vec = [](const auto& a) { return std::vector<std::decay_t<decltype(*a.data())>>(a.data(), a.data() + a.size()); };
    GMPTables t;
    t.sigma_alpha = vec(sigma_alpha);
    t.probe_sigma = vec(probe_sigma);
    t.probe_order = vec(probe_order);
    t.probe_amp = vec(probe_amp);
    t.comp_start = vec(comp_start);
    t.comp_weight = vec(comp_weight);
    t.comp_poly = vec(comp_poly);
    t.poly_start = vec(poly_start);
    t.mono_coef = vec(mono_coef);
    t.mono_pow = vec(mono_pow);
    t.max_power = max_power;
    t.square = square;
    t.include_self = include_self;
    t.cutoff = Cutoff{cutoff_kind, rc, gamma};
    return std::make_unique<GMPInference>(std::move(t), tabulate);
}

// (features (n, F) float64, closest pair index or -1, its r^2 in Å^2)
py::tuple inference_features(GMPInference& self, const IArr& species, const IArr& gstart, const DArr& gB,
                             const DArr& gbeta, const DArr& positions, const DArr& cell, const IArr& pi,
                             const IArr& pj, const IArr& shift, int n_threads) {
    const int64_t n = species.size();
    const int64_t n_species = gstart.size() - 1;
    if (positions.size() != 3 * n) throw std::invalid_argument("positions must be (n_atoms, 3)");
    if (cell.size() != 9) throw std::invalid_argument("cell must be (3, 3)");
    if (pj.size() != pi.size() || shift.size() != 3 * pi.size())
        throw std::invalid_argument("pair arrays have inconsistent lengths");
    if (n_species < 1 || gB.size() != gstart.data()[n_species] || gbeta.size() != gB.size())
        throw std::invalid_argument("density arrays have inconsistent lengths");
    py::array_t<double> feat({n, self.n_features()});
    HalfPairs hp{static_cast<int64_t>(pi.size()), pi.data(), pj.data(), shift.data()};
    std::pair<int64_t, double> closest;
    {
        py::gil_scoped_release release;
        closest = self.features(n, species.data(), gstart.data(), n_species, gB.data(), gbeta.data(),
                                positions.data(), cell.data(), hp, feat.mutable_data(), n_threads);
    }
    return py::make_tuple(feat, closest.first, closest.second);
}

// (forces (n, 3) eV/Å, virial dE/dstrain (3, 3) eV)
py::tuple inference_forces(GMPInference& self, const DArr& dEdG, int n_threads) {
    const int64_t n = self.n_atoms();  // -1 before features(): forces() throws
    if (n >= 0 && dEdG.size() != n * self.n_features()) throw std::invalid_argument("dEdG must be (n_atoms, n_features)");
    py::array_t<double> forces({n, int64_t(3)}), virial({int64_t(3), int64_t(3)});
    {
        py::gil_scoped_release release;
        self.forces(dEdG.data(), forces.mutable_data(), virial.mutable_data(), n_threads);
    }
    return py::make_tuple(forces, virial);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "amptorch C++ fingerprint kernels (GMP, Gaussian symmetry functions)";
    m.def("gmp", &gmp);
    m.def("gsf", &gsf);
    py::class_<GMPInference>(m, "GMPInference")
        .def(py::init(&make_inference))
        .def("features", &inference_features)
        .def("forces", &inference_forces)
        .def_property_readonly("table_spacing", &GMPInference::table_spacing);
    m.def("openmp", []() {
#ifdef _OPENMP
        return true;
#else
        return false;
#endif
    });
}
