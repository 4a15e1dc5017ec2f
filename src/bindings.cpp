// pybind11 layer: the descriptors' tables (GMPTables, GSFTables; built once
// per descriptor from keyword-named numpy arrays), numpy arrays turned into the
// kernels' flat views, outputs allocated here, and the GIL released while the
// kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmp.hpp"
#include "gmp_infer.hpp"
#include "gsf.hpp"

namespace py = pybind11;
using namespace amptorch;

using IArr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using DArr = py::array_t<double, py::array::c_style | py::array::forcecast>;

namespace {

template <typename T>
std::vector<T> vec(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

// A read-only numpy copy of a table: (n,) or, with cols > 0, (n / cols, cols).
template <typename T>
py::array readonly(const std::vector<T>& v, int64_t cols) {
    const int64_t n = static_cast<int64_t>(v.size());
    py::array_t<T> a = cols > 0 ? py::array_t<T>({n / cols, cols}) : py::array_t<T>(n);
    std::copy(v.begin(), v.end(), a.mutable_data());
    a.attr("flags").attr("writeable") = false;
    return a;
}

// The tables' Python side: one read-only property per field, named as the
// constructor's keyword, and pickling (deepcopy) through those keywords.
template <typename C>
class TablesClass {
   public:
    TablesClass(py::module_& m, const char* name, const char* doc) : cls_(m, name, doc) {}

    py::class_<C, std::shared_ptr<C>>& cls() { return cls_; }

    // array fields; cols: a member giving the row width (2-D property), or a fixed width
    template <typename T>
    TablesClass& arrays(std::initializer_list<std::pair<const char*, std::vector<T> C::*>> fields,
                        int64_t C::*cols = nullptr, int64_t fixed_cols = 0) {
        for (const auto& [name, field] : fields) {
            cls_.def_property_readonly(name, [field = field, cols, fixed_cols](const C& c) {
                return readonly(c.*field, cols ? c.*cols : fixed_cols);
            });
            keys_.emplace_back(name);
        }
        return *this;
    }

    template <typename Getter>
    TablesClass& scalar(const char* name, Getter get, bool keyword = true) {
        cls_.def_property_readonly(name, get);
        if (keyword) keys_.emplace_back(name);
        return *this;
    }

    TablesClass& cutoff() {
        return scalar("cutoff_kind", [](const C& c) { return c.cutoff.kind; })
            .scalar("cutoff", [](const C& c) { return c.cutoff.rc; })
            .scalar("cutoff_gamma", [](const C& c) { return c.cutoff.gamma; });
    }

    // __reduce__: functools.partial(type(self), **{keyword: self.keyword}), ()
    void picklable() {
        cls_.def("__reduce__", [keys = keys_](py::object self) {
            py::dict kw;
            for (const std::string& k : keys) kw[k.c_str()] = self.attr(k.c_str());
            py::object partial = py::module_::import("functools").attr("partial");
            return py::make_tuple(partial(py::type::of(self), **kw), py::tuple());
        });
    }

   private:
    py::class_<C, std::shared_ptr<C>> cls_;
    std::vector<std::string> keys_;
};

std::shared_ptr<GMPTables> make_gmp_tables(const DArr& sigma_alpha, const IArr& probe_sigma, const IArr& probe_order,
                                           const DArr& probe_amp, const IArr& comp_start, const DArr& comp_weight,
                                           const IArr& comp_poly, const IArr& poly_start, const DArr& mono_coef,
                                           const IArr& mono_pow, bool harmonic, bool square, bool include_self,
                                           int cutoff_kind, double cutoff, double cutoff_gamma) {
    auto t = std::make_shared<GMPTables>(GMPTables{
        vec(sigma_alpha), vec(probe_sigma), vec(probe_order), vec(probe_amp), vec(comp_start), vec(comp_weight),
        vec(comp_poly), vec(poly_start), vec(mono_coef), vec(mono_pow), harmonic, square, include_self,
        Cutoff{cutoff_kind, cutoff, cutoff_gamma}});
    t->check();
    return t;
}

std::shared_ptr<GSFTables> make_gsf_tables(const IArr& kind, const IArr& el1, const IArr& el2, const DArr& eta,
                                           const DArr& rs, const DArr& lam, int cutoff_kind, double cutoff,
                                           double cutoff_gamma) {
    if (kind.ndim() != 2) throw std::invalid_argument("GSFTables: kind must be (n_elements, n_features)");
    auto t = std::make_shared<GSFTables>(GSFTables{vec(kind), vec(el1), vec(el2), vec(eta), vec(rs), vec(lam),
                                                   Cutoff{cutoff_kind, cutoff, cutoff_gamma}});
    t->check(kind.shape(0));
    return t;
}

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

Densities make_densities(const IArr& gstart, const DArr& gB, const DArr& gbeta) {
    const int64_t n_species = gstart.size() - 1;
    const int64_t* gs = gstart.data();
    if (n_species < 1 || gs[0] != 0 || gB.size() != gs[n_species] || gbeta.size() != gB.size())
        throw std::invalid_argument("density arrays have inconsistent lengths");
    for (int64_t s = 0; s < n_species; ++s)
        if (gs[s + 1] < gs[s]) throw std::invalid_argument("gstart must not decrease");
    return {n_species, gs, gB.data(), gbeta.data()};
}

// species: one index in [0, n_species) per atom
const int64_t* checked_species(const IArr& species, int64_t n_atoms, int64_t n_species) {
    if (species.size() != n_atoms) throw std::invalid_argument("species must have one entry per atom");
    const int64_t* sp = species.data();
    for (int64_t a = 0; a < n_atoms; ++a)
        if (sp[a] < 0 || sp[a] >= n_species) throw std::invalid_argument("species index out of range");
    return sp;
}

// Allocates outputs of dtype T, runs kernel(Output<T>) without the GIL and
// returns (features, dfeat or None, dfeat_strain or None).
template <typename T, typename Kernel>
py::tuple run_typed(int64_t n_atoms, int64_t n_feat, int64_t n_pairs, bool derivatives, bool strain,
                    const Kernel& kernel) {
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
        kernel(out);
    }
    return py::make_tuple(features, dfeat, dstrain);
}

// kernel: a generic callable on const Output<T>& (T = float with float32, else double)
template <typename Kernel>
py::tuple run(int64_t n_atoms, int64_t n_feat, int64_t n_pairs, bool derivatives, bool strain, bool float32,
              const Kernel& kernel) {
    if (float32) return run_typed<float>(n_atoms, n_feat, n_pairs, derivatives, strain, kernel);
    return run_typed<double>(n_atoms, n_feat, n_pairs, derivatives, strain, kernel);
}

py::tuple gmp(const GMPTables& t, const IArr& species, const IArr& estart, const IArr& ej, const DArr& ed,
              const IArr& epair, int64_t n_pairs, const IArr& gstart, const DArr& gB, const DArr& gbeta,
              bool derivatives, bool strain, bool float32, int n_threads) {
    const Entries en = make_entries(estart, ej, ed, epair);
    const Densities dn = make_densities(gstart, gB, gbeta);
    const int64_t* sp = checked_species(species, en.n_atoms, dn.n_species);
    return run(en.n_atoms, t.n_feat, n_pairs, derivatives, strain, float32,
               [&](const auto& out) { gmp_compute(en, sp, t, dn, out, derivatives, n_threads); });
}

py::tuple gsf(const GSFTables& t, const IArr& species, const IArr& estart, const IArr& ej, const DArr& ed,
              const IArr& epair, int64_t n_pairs, bool derivatives, bool strain, bool float32, int n_threads) {
    const Entries en = make_entries(estart, ej, ed, epair);
    const int64_t* sp = checked_species(species, en.n_atoms, t.n_elements);
    return run(en.n_atoms, t.n_feat, n_pairs, derivatives, strain, float32,
               [&](const auto& out) { gsf_compute(en, sp, t, out, derivatives, n_threads); });
}

// (features (n, F) float64, closest pair index or -1, its r^2 in Å^2)
py::tuple inference_features(GMPInference& self, const IArr& species, const IArr& gstart, const DArr& gB,
                             const DArr& gbeta, const DArr& positions, const DArr& cell, const IArr& pi,
                             const IArr& pj, const IArr& shift, int n_threads) {
    const int64_t n = species.size();
    const Densities dn = make_densities(gstart, gB, gbeta);
    if (positions.size() != 3 * n) throw std::invalid_argument("positions must be (n_atoms, 3)");
    if (cell.size() != 9) throw std::invalid_argument("cell must be (3, 3)");
    if (pj.size() != pi.size() || shift.size() != 3 * pi.size())
        throw std::invalid_argument("pair arrays have inconsistent lengths");
    py::array_t<double> feat({n, self.n_features()});
    HalfPairs hp{static_cast<int64_t>(pi.size()), pi.data(), pj.data(), shift.data()};
    std::pair<int64_t, double> closest;
    {
        py::gil_scoped_release release;
        closest = self.features(n, species.data(), dn, positions.data(), cell.data(), hp, feat.mutable_data(),
                                n_threads);
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

    TablesClass<GMPTables> gmp_tables(m, "GMPTables",
                                      "A GMP descriptor's probe tables and settings (read-only), built once per "
                                      "descriptor and passed to gmp() and GMPInference.");
    gmp_tables.cls().def(py::init(&make_gmp_tables), py::kw_only(), py::arg("sigma_alpha"), py::arg("probe_sigma"),
                         py::arg("probe_order"), py::arg("probe_amp"), py::arg("comp_start"),
                         py::arg("comp_weight"), py::arg("comp_poly"), py::arg("poly_start"), py::arg("mono_coef"),
                         py::arg("mono_pow"), py::arg("harmonic"), py::arg("square"), py::arg("include_self") = true,
                         py::arg("cutoff_kind") = 0, py::arg("cutoff"), py::arg("cutoff_gamma") = 2.0);
    gmp_tables
        .arrays<double>({{"sigma_alpha", &GMPTables::sigma_alpha}, {"probe_amp", &GMPTables::probe_amp},
                         {"comp_weight", &GMPTables::comp_weight}, {"mono_coef", &GMPTables::mono_coef}})
        .arrays<int64_t>({{"probe_sigma", &GMPTables::probe_sigma}, {"probe_order", &GMPTables::probe_order},
                          {"comp_start", &GMPTables::comp_start}, {"comp_poly", &GMPTables::comp_poly},
                          {"poly_start", &GMPTables::poly_start}})
        .arrays<int64_t>({{"mono_pow", &GMPTables::mono_pow}}, nullptr, 3)
        .scalar("harmonic", [](const GMPTables& t) { return t.harmonic; })
        .scalar("square", [](const GMPTables& t) { return t.square; })
        .scalar("include_self", [](const GMPTables& t) { return t.include_self; })
        .cutoff()
        .scalar("max_power", [](const GMPTables& t) { return t.max_power; }, false)
        .scalar("n_features", [](const GMPTables& t) { return t.n_feat; }, false)
        .picklable();
    gmp_tables.cls().def(
        "with_harmonic",
        [](const GMPTables& t, bool harmonic) {
            auto c = std::make_shared<GMPTables>(t);
            c->harmonic = harmonic;
            c->check();
            return c;
        },
        py::arg("harmonic"),
        "A copy with the harmonic flag set: False makes the kernel take the general Gaussian-moment path.");

    TablesClass<GSFTables> gsf_tables(m, "GSFTables",
                                      "A GaussianSF descriptor's functions, (n_elements, n_features) per field "
                                      "(read-only), built once per descriptor and passed to gsf().");
    gsf_tables.cls().def(py::init(&make_gsf_tables), py::kw_only(), py::arg("kind"), py::arg("el1"), py::arg("el2"),
                         py::arg("eta"), py::arg("rs"), py::arg("lam"), py::arg("cutoff_kind") = 1,
                         py::arg("cutoff"), py::arg("cutoff_gamma") = 2.0);
    gsf_tables
        .arrays<int64_t>({{"kind", &GSFTables::kind}, {"el1", &GSFTables::el1}, {"el2", &GSFTables::el2}},
                         &GSFTables::n_feat)
        .arrays<double>({{"eta", &GSFTables::eta}, {"rs", &GSFTables::rs}, {"lam", &GSFTables::lam}},
                        &GSFTables::n_feat)
        .cutoff()
        .scalar("n_elements", [](const GSFTables& t) { return t.n_elements; }, false)
        .scalar("n_features", [](const GSFTables& t) { return t.n_feat; }, false)
        .picklable();

    m.def("gmp", &gmp, py::arg("tables"), py::arg("species"), py::arg("estart"), py::arg("ej"), py::arg("ed"),
          py::arg("epair"), py::arg("n_pairs"), py::arg("gstart"), py::arg("gB"), py::arg("gbeta"), py::kw_only(),
          py::arg("derivatives") = true, py::arg("strain") = false, py::arg("float32") = false,
          py::arg("n_threads") = 0,
          "GMP features of one structure: (features (n, F), dfeat (P, F, 3) or None, dfeat_strain (n, F, 3, 3) "
          "or None). species index the densities (gstart, gB, gbeta).");
    m.def("gsf", &gsf, py::arg("tables"), py::arg("species"), py::arg("estart"), py::arg("ej"), py::arg("ed"),
          py::arg("epair"), py::arg("n_pairs"), py::kw_only(), py::arg("derivatives") = true,
          py::arg("strain") = false, py::arg("float32") = false, py::arg("n_threads") = 0,
          "Gaussian symmetry functions of one structure (as gmp); species index the tables' elements.");

    py::class_<GMPInference>(m, "GMPInference")
        .def(py::init([](const GMPTables& t, bool tabulate) { return std::make_unique<GMPInference>(t, tabulate); }),
             py::arg("tables"), py::arg("tabulate") = true)
        .def("features", &inference_features, py::arg("species"), py::arg("gstart"), py::arg("gB"), py::arg("gbeta"),
             py::arg("positions"), py::arg("cell"), py::arg("pi"), py::arg("pj"), py::arg("shift"),
             py::arg("n_threads") = 0)
        .def("forces", &inference_forces, py::arg("dEdG"), py::arg("n_threads") = 0)
        .def_property_readonly("table_spacing", &GMPInference::table_spacing);
}
