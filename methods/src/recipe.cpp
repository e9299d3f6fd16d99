#include <cctype>
#include <cmath>
#include <semilab/methods/recipe.hpp>
#include <semilab/schemas/config_map.hpp>
#include <sstream>

namespace semilab::methods {

namespace cfg = semilab::schemas::config;

namespace {

using kinds = std::vector<std::pair<std::string_view, role_kind>>;
const role_kind smu = role_kind::source_measure;

const std::vector<method_info>& methods_table() {
  static const std::vector<method_info> t = {
      {"diode-iv",
       "diode I-V: n, I0, Rs (least squares), Cheung cross-check",
       kinds{{"smu", smu}},
       {},
       {"n", "i0", "rs", "n_cheung", "rs_cheung", "i0_cheung"}},
      {"mosfet-idvg",
       "MOSFET transfer: Vth (max-gm, constant current), SS, gm,max, on/off",
       kinds{{"gate", smu}, {"drain", smu}},
       {"width", "length", "polarity"},
       {"vth_gm", "vth_cc", "ss", "gm_max", "on_off", "ion", "ioff", "mobility", "v_intercept"}},
      {"mosfet-idvd",
       "MOSFET output curves: Ron, saturation current, output conductance, Early voltage",
       kinds{{"gate", smu}, {"drain", smu}},
       {"width", "length", "polarity"},
       {"r_on", "id_sat", "g_ds", "r_out", "v_early"}},
      {"cv-mos",
       "MOS C-V: Cox, tox/CET, VFB (flat-band capacitance), N(W)",
       kinds{{"lcr", role_kind::impedance}},
       {"area", "polarity"},
       {"cox", "tox", "vfb", "n_sub", "c_fb", "rs_series"}},
      {"cv-schottky",
       "Schottky C-V: N, Vbi, phi_B",
       kinds{{"lcr", role_kind::impedance}},
       {"area"},
       {"n_d", "vbi", "v_intercept", "phi_b"}},
      {"four-point",
       "collinear four-point probe: sheet resistance, resistivity",
       kinds{{"smu", smu}},
       {"probe_spacing"},
       {"r_sheet", "resistivity", "r", "linearity"}},
      {"vdp",
       "van der Pauw sheet resistance",
       kinds{{"smu", smu}, {"dmm", role_kind::voltmeter}, {"matrix", role_kind::switch_matrix}},
       {},
       {"r_sheet", "resistivity", "r_a", "r_b"}},
      {"hall",
       "Hall effect: carrier type, sheet density, mobility",
       kinds{{"smu", smu},
             {"dmm", role_kind::voltmeter},
             {"matrix", role_kind::switch_matrix},
             {"magnet", role_kind::magnet}},
       {"field"},
       {"n_sheet", "mobility", "density", "hall_coefficient", "v_sum"}},
      {"tlm",
       "transfer length method: Rc, Rsh, LT, rho_c",
       kinds{{"smu", smu}},
       {"contact_width", "gaps"},
       {"r_contact", "r_sheet", "l_transfer", "rho_c"}},
      {"check-standard",
       "reference resistor on a schedule (control chart)",
       kinds{{"smu", smu}},
       {"nominal"},
       {"r", "deviation", "deviation_rel"}},
  };
  return t;
}

std::optional<role_kind> parse_kind(std::string_view s) {
  if (s == "source-measure") return role_kind::source_measure;
  if (s == "impedance") return role_kind::impedance;
  if (s == "voltmeter") return role_kind::voltmeter;
  if (s == "switch") return role_kind::switch_matrix;
  if (s == "magnet") return role_kind::magnet;
  return std::nullopt;
}

cfg::check_fn_str one_of(std::vector<std::string> allowed) {
  return [allowed](const std::string& v) -> std::optional<std::string> {
    for (auto& a : allowed)
      if (a == v) return std::nullopt;
    std::string why = "must be one of";
    for (auto& a : allowed) why += " " + a;
    return why;
  };
}

template <class S>
cfg::option<S> doubles_opt(std::string_view key, std::vector<double> S::*m, std::string_view unit,
                           std::string_view doc) {
  return {key,
          "array of numbers",
          "[]",
          unit,
          doc,
          [m](S& s, const toml::node& n) -> std::optional<std::string> {
            const auto* arr = n.as_array();
            if (!arr) return "expected an array of numbers";
            std::vector<double> out;
            for (auto& e : *arr) {
              auto v = e.value<double>();
              if (!e.is_number() || !v || !std::isfinite(*v)) return "expected an array of numbers";
              out.push_back(*v);
            }
            s.*m = std::move(out);
            return std::nullopt;
          }};
}

bool semver(const std::string& v) {
  int parts = 0;
  std::size_t i = 0;
  while (i <= v.size()) {
    std::size_t j = i;
    while (j < v.size() && std::isdigit(static_cast<unsigned char>(v[j]))) ++j;
    if (j == i) return false;
    ++parts;
    if (j == v.size()) break;
    if (v[j] != '.') return false;
    i = j + 1;
  }
  return parts == 3;
}

struct head {
  std::int64_t format = 0;
  std::string name, version, method, description;
};
struct sweep_raw {
  std::string role, mode = "linear";
  double start = 0, stop = 0;
  std::int64_t points = 0;
  std::vector<double> values;
  bool dual = false;
  double delay = 0;
  std::int64_t repeats = 1;
};
struct abort_raw {
  std::string on_compliance = "exclude";
  std::int64_t max_compliance_points = 0;
  double max_duration = 0, max_abs_level = 0;
};
struct role_raw {
  std::string kind, instrument, source = "voltage", function = "CPG";
  double compliance = 0, nplc = 1, range = 0, level = 0, frequency = 1e5, ac_level = 0.05;
};
struct limit_raw {
  double min = NAN, max = NAN;
};
struct prompt_raw {
  std::string at = "start", text;
};

constexpr double kBig = 1e30;

class parser {
 public:
  parser(std::string file) : file_(std::move(file)) {}

  result<recipe> run(const toml::table& root) {
    recipe r;
    r.file = file_;
    static const std::vector<cfg::option<head>> head_opts = {
        cfg::int_opt<head>("format", &head::format, "", "", "recipe schema version", 1, 1000),
        cfg::string_opt<head>("name", &head::name, "", "recipe name",
                              [](const std::string& s) -> std::optional<std::string> {
                                if (s.empty()) return "must not be empty";
                                return std::nullopt;
                              }),
        cfg::string_opt<head>("version", &head::version, "", "MAJOR.MINOR.PATCH",
                              [](const std::string& s) -> std::optional<std::string> {
                                if (!semver(s)) return "must be MAJOR.MINOR.PATCH, e.g. 1.0.0";
                                return std::nullopt;
                              }),
        cfg::string_opt<head>("method", &head::method, "", "method name"),
        cfg::string_opt<head>("description", &head::description, "\"\"", "free text"),
    };
    static const std::vector<std::string> tops = {"recipe", "roles",  "sweep",    "abort",
                                                  "device", "limits", "metadata", "prompt"};
    for (auto&& [k, n] : root) {
      bool ok = false;
      for (auto& t : tops) ok = ok || t == k.str();
      if (!ok) return fail(k.source(), std::string(k.str()), "unknown table");
    }
    const toml::table* ht = root["recipe"].as_table();
    if (!ht) return fail(root.source(), "recipe", "required table is missing");
    head h;
    if (auto e = cfg::read_table<head>(h, *ht, head_opts, file_, "recipe")) return wrap(*e);
    if (h.format != kRecipeFormat)
      return fail((*ht)["format"].node()->source(), "recipe.format",
                  "this agent reads recipe format " + std::to_string(kRecipeFormat));
    const method_info* mi = nullptr;
    for (auto& m : methods_table())
      if (m.name == h.method) mi = &m;
    if (!mi) {
      std::string why = "unknown method; known:";
      for (auto& m : methods_table()) why += " " + std::string(m.name);
      return fail((*ht)["method"].node()->source(), "recipe.method", why);
    }
    r.name = h.name;
    r.version = h.version;
    r.method = h.method;
    r.description = h.description;

    if (auto e = read_roles(root, *mi, r)) return *e;
    if (auto e = read_sweep(root, r)) return *e;
    if (auto e = read_abort(root, r)) return *e;
    if (auto e = read_device(root, *mi, r)) return *e;
    if (auto e = read_limits(root, *mi, r)) return *e;
    if (auto e = read_metadata(root, r)) return *e;
    if (auto e = read_prompts(root, r)) return *e;
    return r;
  }

 private:
  error fail(const toml::source_region& src, std::string_view key, std::string_view why) const {
    return make_error(errc::bad_recipe,
                      cfg::where(file_, src) + ": " + std::string(key) + ": " + std::string(why));
  }
  static error wrap(const cfg::load_error& e) { return make_error(errc::bad_recipe, e.message); }

  std::optional<error> read_roles(const toml::table& root, const method_info& mi, recipe& r) {
    static const std::vector<cfg::option<role_raw>> opts = {
        cfg::string_opt<role_raw>(
            "kind", &role_raw::kind, "", "capability of the instrument",
            one_of({"source-measure", "impedance", "voltmeter", "switch", "magnet"})),
        cfg::string_opt<role_raw>("instrument", &role_raw::instrument, "\"\"",
                                  "agent instrument id (bound by the station when empty)"),
        cfg::string_opt<role_raw>("source", &role_raw::source, "\"voltage\"",
                                  "source function of a source-measure role",
                                  one_of({"voltage", "current"})),
        cfg::double_opt<role_raw>("compliance", &role_raw::compliance, "0", "A or V",
                                  "limit of the measured quantity (required for source-measure)", 0,
                                  kBig),
        cfg::double_opt<role_raw>("nplc", &role_raw::nplc, "1", "PLC", "integration time", 0.001,
                                  100),
        cfg::double_opt<role_raw>("range", &role_raw::range, "0", "A or V", "0 = autorange", 0,
                                  kBig),
        cfg::double_opt<role_raw>("level", &role_raw::level, "0", "V or A",
                                  "constant level when the role is not swept", -kBig, kBig),
        cfg::double_opt<role_raw>("frequency", &role_raw::frequency, "1e5", "Hz",
                                  "impedance test frequency", 1, 1e9),
        cfg::double_opt<role_raw>("ac_level", &role_raw::ac_level, "0.05", "V", "AC level (rms)", 0,
                                  20),
        cfg::string_opt<role_raw>("function", &role_raw::function, "\"CPG\"",
                                  "impedance function (CPG, CPD, ...)"),
    };
    const toml::table* rt = root["roles"].as_table();
    if (!rt) return fail(root.source(), "roles", "required table is missing");
    for (auto&& [k, n] : *rt) {
      const std::string path = "roles." + std::string(k.str());
      const toml::table* t = n.as_table();
      if (!t) return fail(n.source(), path, "expected a table");
      role_raw raw;
      if (auto e = cfg::read_table<role_raw>(raw, *t, opts, file_, path)) return wrap(*e);
      role ro;
      ro.name = std::string(k.str());
      ro.kind = *parse_kind(raw.kind);
      ro.instrument = raw.instrument;
      ro.source = raw.source;
      ro.compliance = raw.compliance;
      ro.nplc = raw.nplc;
      ro.range = raw.range;
      ro.level = raw.level;
      ro.frequency = raw.frequency;
      ro.ac_level = raw.ac_level;
      ro.function = raw.function;
      if (ro.kind == role_kind::source_measure && !(ro.compliance > 0))
        return fail(t->source(), path + ".compliance",
                    "a source-measure role needs a compliance limit > 0 (safety)");
      r.roles.push_back(ro);
    }
    for (auto& [name, kind] : mi.roles) {
      const role* ro = r.find_role(name);
      if (!ro)
        return fail(rt->source(), "roles." + std::string(name),
                    "method " + std::string(mi.name) + " needs this role (" +
                        std::string(to_string(kind)) + ")");
      if (ro->kind != kind)
        return fail((*rt)[name].node()->source(), "roles." + std::string(name) + ".kind",
                    "method " + std::string(mi.name) + " needs " + std::string(to_string(kind)));
    }
    return std::nullopt;
  }

  std::optional<error> read_sweep(const toml::table& root, recipe& r) {
    static const std::vector<cfg::option<sweep_raw>> opts = {
        cfg::string_opt<sweep_raw>("role", &sweep_raw::role, "", "the swept role"),
        cfg::string_opt<sweep_raw>("mode", &sweep_raw::mode, "\"linear\"", "linear | log | list",
                                   one_of({"linear", "log", "list"})),
        cfg::double_opt<sweep_raw>("start", &sweep_raw::start, "0", "V or A", "first level", -kBig,
                                   kBig),
        cfg::double_opt<sweep_raw>("stop", &sweep_raw::stop, "0", "V or A", "last level", -kBig,
                                   kBig),
        cfg::int_opt<sweep_raw>("points", &sweep_raw::points, "0", "", "points (linear, log)", 0,
                                static_cast<std::int64_t>(kMaxSweepPoints)),
        doubles_opt<sweep_raw>("values", &sweep_raw::values, "V or A", "levels of a list sweep"),
        cfg::bool_opt<sweep_raw>("dual", &sweep_raw::dual, "false", "sweep back to the start"),
        cfg::double_opt<sweep_raw>("delay", &sweep_raw::delay, "0", "s",
                                   "source delay before each measurement", 0, 3600),
        cfg::int_opt<sweep_raw>("repeats", &sweep_raw::repeats, "1", "", "sweeps per run", 1,
                                10000),
    };
    const toml::table* st = root["sweep"].as_table();
    if (!st) return fail(root.source(), "sweep", "required table is missing");
    sweep_raw raw;
    if (auto e = cfg::read_table<sweep_raw>(raw, *st, opts, file_, "sweep")) return wrap(*e);
    if (!r.find_role(raw.role))
      return fail((*st)["role"].node()->source(), "sweep.role",
                  "no role named \"" + raw.role + "\" in [roles]");
    r.sweep.role = raw.role;
    r.sweep.spec.mode = raw.mode == "log"    ? sweep_mode::log
                        : raw.mode == "list" ? sweep_mode::list
                                             : sweep_mode::linear;
    r.sweep.spec.start = raw.start;
    r.sweep.spec.stop = raw.stop;
    r.sweep.spec.points = static_cast<std::size_t>(raw.points);
    r.sweep.spec.values = raw.values;
    r.sweep.spec.dual = raw.dual;
    r.sweep.delay = raw.delay;
    r.sweep.repeats = raw.repeats;
    if (r.sweep.spec.mode == sweep_mode::list && !st->contains("values"))
      return fail(st->source(), "sweep.values", "a list sweep needs values");
    if (r.sweep.spec.mode != sweep_mode::list) {
      for (auto key : {"start", "stop", "points"})
        if (!st->contains(key))
          return fail(st->source(), std::string("sweep.") + key,
                      "required for a " + raw.mode + " sweep");
      if (st->contains("values"))
        return fail((*st)["values"].node()->source(), "sweep.values", "only for mode = \"list\"");
    }
    auto pts = sweep_points(r.sweep.spec);
    if (!pts) {
      std::string why = pts.error().message;
      if (why.rfind("sweep: ", 0) == 0) why.erase(0, 7);
      return fail(st->source(), "sweep", why);
    }
    r.sweep.points = std::move(*pts);
    return std::nullopt;
  }

  std::optional<error> read_abort(const toml::table& root, recipe& r) {
    static const std::vector<cfg::option<abort_raw>> opts = {
        cfg::string_opt<abort_raw>("on_compliance", &abort_raw::on_compliance, "\"exclude\"",
                                   "fail the run | exclude the point | stop the sweep",
                                   one_of({"fail", "exclude", "stop"})),
        cfg::int_opt<abort_raw>("max_compliance_points", &abort_raw::max_compliance_points, "0", "",
                                "abort after this many compliance points (0 = no limit)", 0,
                                1000000),
        cfg::double_opt<abort_raw>("max_duration", &abort_raw::max_duration, "0", "s",
                                   "abort a run longer than this (0 = no limit)", 0, 1e7),
        cfg::double_opt<abort_raw>("max_abs_level", &abort_raw::max_abs_level, "0", "V or A",
                                   "refuse sweep levels beyond this magnitude (0 = no limit)", 0,
                                   kBig),
    };
    abort_raw raw;
    if (const toml::table* at = root["abort"].as_table()) {
      if (auto e = cfg::read_table<abort_raw>(raw, *at, opts, file_, "abort")) return wrap(*e);
      if (raw.max_abs_level > 0)
        for (double v : r.sweep.points)
          if (std::fabs(v) > raw.max_abs_level)
            return fail(at->source(), "abort.max_abs_level",
                        "sweep level " + std::to_string(v) + " exceeds the limit " +
                            std::to_string(raw.max_abs_level));
    } else if (root.contains("abort")) {
      return fail(root["abort"].node()->source(), "abort", "expected a table");
    }
    r.abort.compliance = raw.on_compliance == "fail"   ? on_compliance::fail
                         : raw.on_compliance == "stop" ? on_compliance::stop
                                                       : on_compliance::exclude;
    r.abort.max_compliance_points = raw.max_compliance_points;
    r.abort.max_duration = raw.max_duration;
    r.abort.max_abs_level = raw.max_abs_level;
    return std::nullopt;
  }

  std::optional<error> read_device(const toml::table& root, const method_info& mi, recipe& r) {
    using D = device_inputs;
    static const std::vector<cfg::option<D>> opts = {
        cfg::double_opt<D>("area", &D::area, "0", "m^2", "device area", 0, 1),
        cfg::double_opt<D>("width", &D::width, "0", "m", "channel width", 0, 1),
        cfg::double_opt<D>("length", &D::length, "0", "m", "channel length", 0, 1),
        cfg::string_opt<D>("polarity", &D::polarity, "\"\"", "n | p (channel or substrate type)",
                           one_of({"n", "p"})),
        cfg::double_opt<D>("probe_spacing", &D::probe_spacing, "0", "m", "four-point spacing", 0,
                           1),
        cfg::double_opt<D>("diameter", &D::diameter, "0", "m", "sample diameter (0 = infinite)", 0,
                           10),
        cfg::double_opt<D>("thickness", &D::thickness, "0", "m", "layer or wafer thickness", 0, 1),
        cfg::double_opt<D>("temperature", &D::temperature, "300", "K", "device temperature", 1,
                           2000),
        cfg::double_opt<D>("contact_width", &D::contact_width, "0", "m", "TLM contact width", 0, 1),
        doubles_opt<D>("gaps", &D::gaps, "m", "TLM gap lengths"),
        cfg::double_opt<D>("field", &D::field, "0", "T", "Hall field magnitude", 0, 100),
        cfg::double_opt<D>("nominal", &D::nominal, "0", "ohm", "check-standard value", 0, kBig),
    };
    const toml::table* dt = root["device"].as_table();
    static const toml::table empty;
    if (!dt && root.contains("device"))
      return fail(root["device"].node()->source(), "device", "expected a table");
    if (auto e = cfg::read_table<D>(r.device, dt ? *dt : empty, opts, file_, "device"))
      return wrap(*e);
    for (auto key : mi.device) {
      if (!dt || !dt->contains(key))
        return fail(dt ? dt->source() : root.source(), "device." + std::string(key),
                    "method " + std::string(mi.name) + " needs this device input");
      const double* v = nullptr;
      if (key == "area") v = &r.device.area;
      if (key == "width") v = &r.device.width;
      if (key == "length") v = &r.device.length;
      if (key == "probe_spacing") v = &r.device.probe_spacing;
      if (key == "contact_width") v = &r.device.contact_width;
      if (key == "field") v = &r.device.field;
      if (key == "nominal") v = &r.device.nominal;
      if (v && !(*v > 0))
        return fail((*dt)[key].node()->source(), "device." + std::string(key), "must be > 0");
    }
    if (mi.name == "tlm") {
      if (r.device.gaps.size() < 3)
        return fail((*dt)["gaps"].node()->source(), "device.gaps",
                    "TLM needs at least 3 gap lengths");
      for (double g : r.device.gaps)
        if (!(g > 0))
          return fail((*dt)["gaps"].node()->source(), "device.gaps", "gap lengths must be > 0");
    }
    if (r.device.diameter > 0 && r.device.probe_spacing > 0 &&
        !(r.device.diameter / r.device.probe_spacing > std::sqrt(3.0)))
      return fail((*dt)["diameter"].node()->source(), "device.diameter",
                  "must exceed sqrt(3) x probe_spacing (Smits correction)");
    return std::nullopt;
  }

  std::optional<error> read_limits(const toml::table& root, const method_info& mi, recipe& r) {
    static const std::vector<cfg::option<limit_raw>> opts = {
        cfg::double_opt<limit_raw>("min", &limit_raw::min, "none", "SI", "lowest passing value",
                                   -kBig, kBig),
        cfg::double_opt<limit_raw>("max", &limit_raw::max, "none", "SI", "highest passing value",
                                   -kBig, kBig),
    };
    const toml::node_view<const toml::node> lv = root["limits"];
    if (!lv) return std::nullopt;
    const toml::table* lt = lv.as_table();
    if (!lt) return fail(lv.node()->source(), "limits", "expected a table");
    for (auto&& [k, n] : *lt) {
      const std::string path = "limits." + std::string(k.str());
      bool known = false;
      for (auto p : mi.parameters) known = known || p == k.str();
      if (!known) {
        std::string why = "method " + std::string(mi.name) + " extracts no such parameter; it has";
        for (auto p : mi.parameters) why += " " + std::string(p);
        return fail(k.source(), path, why);
      }
      const toml::table* t = n.as_table();
      if (!t) return fail(n.source(), path, "expected a table { min = ..., max = ... }");
      limit_raw raw;
      if (auto e = cfg::read_table<limit_raw>(raw, *t, opts, file_, path)) return wrap(*e);
      if (std::isnan(raw.min) && std::isnan(raw.max))
        return fail(t->source(), path, "give min, max or both");
      if (!std::isnan(raw.min) && !std::isnan(raw.max) && raw.min > raw.max)
        return fail(t->source(), path, "min is above max");
      limit l;
      l.parameter = std::string(k.str());
      if (!std::isnan(raw.min)) l.min = raw.min;
      if (!std::isnan(raw.max)) l.max = raw.max;
      r.limits.push_back(l);
    }
    return std::nullopt;
  }

  std::optional<error> read_metadata(const toml::table& root, recipe& r) {
    const toml::node_view<const toml::node> mv = root["metadata"];
    if (!mv) return std::nullopt;
    const toml::table* mt = mv.as_table();
    if (!mt) return fail(mv.node()->source(), "metadata", "expected a table");
    static const std::vector<std::string_view> keys = {"sample", "wafer",    "lot",
                                                       "die",    "operator", "project"};
    for (auto&& [k, n] : *mt) {
      bool ok = false;
      for (auto key : keys) ok = ok || key == k.str();
      if (!ok)
        return fail(k.source(), "metadata." + std::string(k.str()),
                    "unknown key (sample, wafer, lot, die, operator, project)");
      if (!n.is_string())
        return fail(n.source(), "metadata." + std::string(k.str()), "expected a string");
      r.metadata[std::string(k.str())] = *n.value<std::string>();
    }
    return std::nullopt;
  }

  std::optional<error> read_prompts(const toml::table& root, recipe& r) {
    static const std::vector<cfg::option<prompt_raw>> opts = {
        cfg::string_opt<prompt_raw>("at", &prompt_raw::at, "\"start\"",
                                    "when the operator is asked",
                                    one_of({"start", "repeat", "end"})),
        cfg::string_opt<prompt_raw>("text", &prompt_raw::text, "", "what the operator is asked",
                                    [](const std::string& s) -> std::optional<std::string> {
                                      if (s.empty()) return "must not be empty";
                                      return std::nullopt;
                                    }),
    };
    const toml::node_view<const toml::node> pv = root["prompt"];
    if (!pv) return std::nullopt;
    const toml::array* arr = pv.as_array();
    if (!arr) return fail(pv.node()->source(), "prompt", "expected [[prompt]] tables");
    std::size_t i = 0;
    for (auto& n : *arr) {
      const std::string path = "prompt[" + std::to_string(i++) + "]";
      const toml::table* t = n.as_table();
      if (!t) return fail(n.source(), path, "expected a table");
      prompt_raw raw;
      if (auto e = cfg::read_table<prompt_raw>(raw, *t, opts, file_, path)) return wrap(*e);
      r.prompts.push_back({raw.at, raw.text});
    }
    return std::nullopt;
  }

  std::string file_;
};

}  // namespace

const role* recipe::find_role(std::string_view n) const noexcept {
  for (auto& r : roles)
    if (r.name == n) return &r;
  return nullptr;
}

std::span<const method_info> known_methods() {
  return methods_table();
}

std::string_view to_string(role_kind k) noexcept {
  switch (k) {
    case role_kind::source_measure:
      return "source-measure";
    case role_kind::impedance:
      return "impedance";
    case role_kind::voltmeter:
      return "voltmeter";
    case role_kind::switch_matrix:
      return "switch";
    case role_kind::magnet:
      return "magnet";
  }
  return "?";
}

result<recipe> load_recipe(const std::string& path) {
  toml::table root;
  if (auto e = cfg::parse_file(path, root)) return make_error(errc::bad_recipe, e->message);
  return parser(path).run(root);
}

result<recipe> parse_recipe(std::string_view text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    return make_error(errc::bad_recipe,
                      cfg::where(source_name, e.source()) + ": " + std::string(e.description()));
  }
  return parser(std::string(source_name)).run(root);
}

std::vector<std::string> check_limits(const recipe& r,
                                      const std::map<std::string, double>& values) {
  std::vector<std::string> out;
  for (auto& l : r.limits) {
    auto it = values.find(l.parameter);
    if (it == values.end() || !std::isfinite(it->second)) {
      out.push_back(l.parameter + ": not extracted");
      continue;
    }
    std::ostringstream os;
    if (l.min && it->second < *l.min)
      os << l.parameter << " = " << it->second << " below the minimum " << *l.min;
    else if (l.max && it->second > *l.max)
      os << l.parameter << " = " << it->second << " above the maximum " << *l.max;
    if (!os.str().empty()) out.push_back(os.str());
  }
  return out;
}

}  // namespace semilab::methods
