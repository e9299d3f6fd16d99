// Prometheus text exposition: the writer's output, and the agent's whole /metrics text from a
// real outbox, parsed by a strict reader of format 0.0.4.
#include <semilab/agent/recorder.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <cmath>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "instrument_runner.hpp"
#include "metrics.hpp"
#include "status_model.hpp"
#include "support/processes.hpp"

using namespace semilab;
using namespace semilab::agent;

namespace {

struct sample_line {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct parsed {
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, std::string> help;
  std::vector<sample_line> samples;
  double get(const std::string& name, const std::map<std::string, std::string>& l = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == l) return s.value;
    FAIL("no sample " << name);
    return NAN;
  }
};

double parse_value(const std::string& v) {
  if (v == "+Inf") return INFINITY;
  if (v == "-Inf") return -INFINITY;
  if (v == "NaN") return NAN;
  std::size_t used = 0;
  double d = std::stod(v, &used);
  REQUIRE(used == v.size());
  return d;
}

// Strict reader of the text format: every sample belongs to the family declared by the last
// # TYPE (histogram samples with _bucket/_sum/_count), names and labels are well formed, label
// values escaped, each family declared once.
parsed parse_exposition(const std::string& text) {
  static const std::regex name_re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  static const std::regex label_re(R"(([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^"\\\n]|\\[\\"n])*)\")");
  parsed p;
  std::istringstream in(text);
  std::string line, family, type;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  while (std::getline(in, line)) {
    REQUIRE_MESSAGE(!line.empty(), "empty line");
    if (line.rfind("# HELP ", 0) == 0) {
      auto rest = line.substr(7);
      auto sp = rest.find(' ');
      auto name = rest.substr(0, sp);
      REQUIRE(std::regex_match(name, name_re));
      REQUIRE_MESSAGE(!p.help.count(name), "HELP twice for " << name);
      p.help[name] = sp == std::string::npos ? "" : rest.substr(sp + 1);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream ls(line.substr(7));
      ls >> family >> type;
      REQUIRE(std::regex_match(family, name_re));
      REQUIRE((type == "counter" || type == "gauge" || type == "histogram"));
      REQUIRE_MESSAGE(!p.types.count(family), "TYPE twice for " << family);
      REQUIRE_MESSAGE(p.help.count(family), "TYPE before HELP for " << family);
      p.types[family] = type;
      continue;
    }
    REQUIRE_MESSAGE(line[0] != '#', line);
    sample_line s;
    auto brace = line.find('{');
    auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    s.name = line.substr(0, std::min(brace, space));
    REQUIRE(std::regex_match(s.name, name_re));
    if (brace != std::string::npos && brace < space) {
      auto close = line.rfind('}', space);
      REQUIRE(close != std::string::npos);
      std::string labels = line.substr(brace + 1, close - brace - 1);
      std::size_t pos = 0;
      while (pos < labels.size()) {
        std::smatch m;
        std::string tail = labels.substr(pos);
        REQUIRE_MESSAGE(std::regex_search(tail, m, label_re, std::regex_constants::match_continuous),
                        "bad labels: " << labels);
        s.labels[m[1]] = m[2];
        pos += static_cast<std::size_t>(m.length(0));
        if (pos < labels.size()) {
          REQUIRE(labels[pos] == ',');
          ++pos;
        }
      }
    }
    s.value = parse_value(line.substr(space + 1));
    // The sample belongs to the current family.
    if (type == "histogram") {
      bool ok = s.name == family + "_bucket" || s.name == family + "_sum" || s.name == family + "_count";
      REQUIRE_MESSAGE(ok, s.name << " outside histogram " << family);
    } else {
      REQUIRE_MESSAGE(s.name == family, s.name << " under family " << family);
    }
    if (type == "counter") REQUIRE(s.value >= 0);
    p.samples.push_back(std::move(s));
  }
  return p;
}

// Buckets cumulative and non-decreasing, +Inf equals _count, per label set.
void check_histograms(const parsed& p) {
  for (const auto& [fam, type] : p.types) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<std::pair<double, double>>> by_series;
    std::map<std::string, double> counts;
    for (const auto& s : p.samples) {
      auto l = s.labels;
      std::string le = l.count("le") ? l["le"] : "";
      l.erase("le");
      std::string key;
      for (auto& [k, v] : l) key += k + "=" + v + ";";
      if (s.name == fam + "_bucket") by_series[key].push_back({parse_value(le), s.value});
      if (s.name == fam + "_count") counts[key] = s.value;
    }
    for (auto& [key, buckets] : by_series) {
      REQUIRE(buckets.size() >= 2);
      for (std::size_t i = 1; i < buckets.size(); ++i) {
        CHECK(buckets[i].first > buckets[i - 1].first);
        CHECK(buckets[i].second >= buckets[i - 1].second);
      }
      CHECK(std::isinf(buckets.back().first));
      CHECK(buckets.back().second == counts.at(key));
    }
  }
}

// A runner that reports a fixed status (no instrument needed).
class fake_runner : public runner {
 public:
  explicit fake_runner(instrument_status s) : st_(std::move(s)) {}
  void start() override {}
  void stop() override {}
  instrument_status status() const override { return st_; }

 private:
  instrument_status st_;
};

}  // namespace

TEST_CASE("the exposition writer: families once, escaped labels, cumulative histogram") {
  metrics::exposition x;
  x.family("semilab_test_total", metrics::exposition::type::counter, "A \\ counter\nwith newline");
  x.sample({{"instrument", "a\"b\\c\nd"}}, 3);
  x.sample({{"instrument", "plain"}}, 1e20);
  metrics::latency_histogram h;
  h.observe(0.0001);
  h.observe(0.003);
  h.observe(0.003);
  h.observe(60);  // beyond every bound: +Inf only
  x.family("semilab_test_seconds", metrics::exposition::type::histogram, "Durations");
  x.histogram({{"instrument", "smu1"}}, h);
  const auto& t = x.text();
  CHECK(t.find("# HELP semilab_test_total A \\\\ counter\\nwith newline\n") != std::string::npos);
  CHECK(t.find("semilab_test_total{instrument=\"a\\\"b\\\\c\\nd\"} 3\n") != std::string::npos);
  CHECK(t.find("semilab_test_seconds_bucket{instrument=\"smu1\",le=\"0.0005\"} 1\n") != std::string::npos);
  CHECK(t.find("semilab_test_seconds_bucket{instrument=\"smu1\",le=\"0.005\"} 3\n") != std::string::npos);
  CHECK(t.find("semilab_test_seconds_bucket{instrument=\"smu1\",le=\"+Inf\"} 4\n") != std::string::npos);
  auto p = parse_exposition(t);
  check_histograms(p);
  CHECK(p.get("semilab_test_total", {{"instrument", "a\\\"b\\\\c\\nd"}}) == 3);
  CHECK(p.get("semilab_test_seconds_count", {{"instrument", "smu1"}}) == 4);
  CHECK(p.get("semilab_test_seconds_sum", {{"instrument", "smu1"}}) == doctest::Approx(60.0061));
  CHECK(metrics::format_value(0.1) == "0.1");
  CHECK(metrics::format_value(INFINITY) == "+Inf");
  CHECK(metrics::format_value(NAN) == "NaN");
}

TEST_CASE("the agent's /metrics text parses and counts what the outbox holds") {
  test::temp_dir d;
  std::string err;
  auto box = sync::outbox::open({d.path() / "o.db", "agent-m", sync::durability::normal}, err);
  REQUIRE(box.has_value());
  auto& outbox = **box;
  recorder rec(outbox);
  live_values values;
  rec.set_observer([&](std::span<const schemas::record> r) { values.observe(r); });
  // Three readings, one in compliance.
  std::vector<drivers::reading> rd{{"curr", "A", schemas::decimal{1234500, -9}, schemas::quality::compliance},
                                   {"volt", "V", schemas::decimal{5, 0}, 0}};
  auto ts = rec.stamp();
  std::promise<void> p1;
  rec.submit("smu1", ts, rd, [&](boost::system::error_code ec, schemas::seq_range) {
    CHECK_FALSE(ec);
    p1.set_value();
  });
  p1.get_future().get();

  boost::asio::io_context io;
  sync::engine_options eo;
  eo.agent_id = "agent-m";
  eo.site = "lab";
  sync::mqtt_options mo;
  mo.broker_url = "tcp://127.0.0.1:1";  // never started: no traffic
  sync::engine engine(boost::asio::make_strand(io), outbox, eo, mo);

  agent_config cfg;
  cfg.id = "agent-m";
  cfg.site = "lab";
  cfg.data_dir = d.path().string();
  instrument_config ic;
  ic.id = "smu1";
  ic.model = "keithley2450";
  cfg.instruments.push_back(ic);
  instrument_status st;
  st.id = "smu1";
  st.connected = true;
  st.readings = 2;
  st.errors = 1;
  st.last_good_ns = utc_now_ns();
  st.poll_latency.observe(0.002);
  st.poll_latency.observe(0.004);
  std::vector<std::shared_ptr<runner>> runners{std::make_shared<fake_runner>(st)};
  event_log events;
  status_sampler sampler({cfg, outbox, engine, rec, runners, values, events}, utc_now_ns());
  auto s = sampler.take(utc_now_ns(), boost::json::object{});
  auto p = parse_exposition(s.metrics);
  check_histograms(p);
  auto c = outbox.counters();
  CHECK(p.types.at("semilab_agent_records_produced_total") == "counter");
  CHECK(p.types.at("semilab_agent_records_held") == "gauge");
  CHECK(p.types.at("semilab_agent_instrument_poll_duration_seconds") == "histogram");
  CHECK(p.get("semilab_agent_records_produced_total") == static_cast<double>(c.produced));
  CHECK(p.get("semilab_agent_records_produced_total") == 2);
  CHECK(p.get("semilab_agent_records_acked_total") == 0);
  CHECK(p.get("semilab_agent_records_dropped_total") == 0);
  CHECK(p.get("semilab_agent_records_held") == 2);
  CHECK(p.get("semilab_agent_broker_connected") == 0);
  CHECK(p.get("semilab_agent_instrument_readings_total", {{"instrument", "smu1"}}) == 2);
  CHECK(p.get("semilab_agent_instrument_errors_total", {{"instrument", "smu1"}}) == 1);
  CHECK(p.get("semilab_agent_instrument_compliance_total", {{"instrument", "smu1"}}) == 1);
  CHECK(p.get("semilab_agent_instrument_poll_duration_seconds_count", {{"instrument", "smu1"}}) == 2);
  CHECK(p.get("semilab_agent_instrument_poll_duration_seconds_bucket",
              {{"instrument", "smu1"}, {"le", "0.0025"}}) == 1);

  // The page JSON shows the exact digits the outbox holds, and the health of the instrument.
  auto page = boost::json::parse(s.page_json).as_object();
  auto& ins = page.at("instruments").as_array().at(0).as_object();
  auto& ch = ins.at("channels").as_array();
  REQUIRE(ch.size() == 2);
  CHECK(ch[0].as_object().at("channel") == "curr");
  CHECK(ch[0].as_object().at("value") == "1.234500E-03");
  CHECK(ch[0].as_object().at("points").as_array().size() == 1);
  CHECK(ins.at("compliance_hits") == 1);
  CHECK(page.at("health").as_object().at("instruments").as_array()[0].as_object().at("state") ==
        "degraded");  // the compliance reading is recent
  // The file `status` reads has no plot points.
  auto file = boost::json::parse(s.file_json).as_object();
  CHECK_FALSE(file.at("instruments").as_array()[0].as_object().at("channels").as_array()[0]
                  .as_object().contains("points"));
  CHECK(s.health_changed);
  CHECK_FALSE(sampler.take(utc_now_ns(), boost::json::object{}).health_changed);
}
