#pragma once
// Bench figures: printed, and merged into build/bench/results.json as a list of
// {"name", "value", "unit", "baseline", "ratio"}; entries of other benches are kept.
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace semilab::bench {

struct figure {
  std::string name;
  double value;
  std::string unit;
  double baseline;  // measured in the same run
  std::string baseline_what;
  double ratio() const { return baseline != 0 ? value / baseline : 0; }
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

inline void publish(const std::string& path, const std::vector<figure>& figs) {
  boost::json::array all;
  {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    boost::system::error_code ec;
    auto v = boost::json::parse(ss.str(), ec);
    if (!ec && v.is_array()) all = v.as_array();
  }
  for (const auto& f : figs) {
    boost::json::object o{{"name", f.name},         {"value", f.value},
                          {"unit", f.unit},         {"baseline", f.baseline},
                          {"ratio", f.ratio()},     {"baseline_what", f.baseline_what}};
    auto it = std::find_if(all.begin(), all.end(), [&](const boost::json::value& e) {
      return e.is_object() && e.as_object().contains("name") &&
             e.as_object().at("name") == boost::json::value(f.name);
    });
    if (it != all.end()) *it = o;
    else all.push_back(o);
    std::printf("%-28s %14.4g %-14s baseline %12.4g  ratio %7.3f  (%s)\n", f.name.c_str(), f.value,
                f.unit.c_str(), f.baseline, f.ratio(), f.baseline_what.c_str());
  }
  std::ofstream(path, std::ios::trunc) << boost::json::serialize(all) << "\n";
}

// --results FILE --bin-dir DIR from argv.
struct args {
  std::string results = "build/bench/results.json";
  std::string bin_dir = "build/bin";
  int reps = 5;
  args(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
      std::string a = argv[i];
      if (a == "--results") results = argv[++i];
      else if (a == "--bin-dir") bin_dir = argv[++i];
      else if (a == "--reps") reps = std::stoi(argv[++i]);
    }
  }
};

}  // namespace semilab::bench
