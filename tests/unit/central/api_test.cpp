#include <semilab/central/store.hpp>
#include <semilab/central/api.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/schemas/run_metadata.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include "test_util.hpp"

#include <set>

using namespace semilab::central;
namespace sc = semilab::schemas;
namespace json = boost::json;

TEST_CASE("api: agents, stats, healthz, 404 and 405") {
  central_test::temp_dir d;
  std::string err;
  auto w = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(w.has_value());
  sc::frame_decoder dec;
  auto bytes = central_test::encode(central_test::sample_batch("agent-01", 3, 1, 1, 6));
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
  REQUIRE((*w)->store_batch(t, *f, bytes.size(), "c").has_value());

  auto r = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(r.has_value());
  ingest_stats fake;
  fake.received = 11;
  fake.rejected = 2;
  std::int64_t last_ack = (*w)->agents()->front().last_ack_ns;
  api a(api_sources{r->get(), [&] { return fake; }, [] { return true; }, "central-x",
                    [&] { return last_ack + 2'500'000'000; }});

  auto res = a.handle("GET", "/api/v1/agents");
  CHECK(res.status == 200);
  CHECK(res.content_type == "application/json");
  auto v = json::parse(res.body);
  auto& list = v.at("agents").as_array();
  REQUIRE(list.size() == 1);
  auto& o = list[0].as_object();
  CHECK(o.at("agent_id").as_string() == "agent-01");
  CHECK(o.at("site").as_string() == "lab1");
  CHECK(o.at("records").to_number<std::int64_t>() == 6);
  CHECK(o.at("batches").to_number<std::int64_t>() == 1);
  CHECK(o.at("duplicates").to_number<std::int64_t>() == 0);
  CHECK(o.at("last_ack_ns").as_string() == std::to_string(last_ack));  // string: > 2^53
  CHECK(o.at("first_seen_ns").is_string());
  CHECK(o.at("last_ack_age_s").as_double() == doctest::Approx(2.5));

  res = a.handle("GET", "/api/v1/stats?x=1");
  CHECK(res.status == 200);
  v = json::parse(res.body);
  CHECK(v.at("records").to_number<std::int64_t>() == 6);
  CHECK(v.at("quarantined").to_number<std::int64_t>() == 0);
  CHECK(v.at("batches_received").to_number<std::int64_t>() == 11);
  CHECK(v.at("rejected").to_number<std::int64_t>() == 2);
  CHECK(v.at("instance").as_string() == "central-x");
  CHECK(v.at("mqtt_connected").as_bool());

  res = a.handle("GET", "/healthz");
  CHECK(res.status == 200);
  CHECK(res.body == "ok\n");

  res = a.handle("GET", "/api/v1/nothing");
  CHECK(res.status == 404);
  CHECK(json::parse(res.body).at("error").is_string());

  res = a.handle("POST", "/api/v1/agents");
  CHECK(res.status == 405);
  CHECK(res.allow == "GET, HEAD");
}

namespace {
struct api_fixture {
  central_test::temp_dir d;
  std::unique_ptr<sqlite_store> w, r;
  bool connected = true;
  std::unique_ptr<api> a;
  api_fixture() {
    std::string err;
    auto ws = sqlite_store::open(store_options{d.file("central.db")}, err);
    REQUIRE(ws.has_value());
    w = std::move(*ws);
    sc::frame_decoder dec;
    for (auto [agent, first] : {std::pair{"agent-01", 1}, std::pair{"agent-02", 1}}) {
      auto b = central_test::sample_batch(agent, 3, 1, static_cast<std::uint64_t>(first), 8);
      b.records[1].instrument = "dmm1";
      auto bytes = central_test::encode(b);
      auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
      REQUIRE(f.has_value());
      sc::agent_topic_parts t{"lab1", agent, sc::agent_topic_kind::batch};
      REQUIRE(w->store_batch(t, *f, bytes.size(), "c").has_value());
    }
    auto rs = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
    REQUIRE(rs.has_value());
    r = std::move(*rs);
    ingest_stats st;
    st.received = 7;
    st.quota_rejected = 1;
    a = std::make_unique<api>(api_sources{r.get(), [st] { return st; }, [this] { return connected; },
                                          "central-x"});
  }
};
}  // namespace

TEST_CASE("api: measurements with filters, time range and keyset pages, JSON and CSV") {
  api_fixture fx;
  auto res = fx.a->handle("GET", "/api/v1/measurements?limit=5");
  REQUIRE(res.status == 200);
  auto v = json::parse(res.body);
  auto& rows = v.at("measurements").as_array();
  REQUIRE(rows.size() == 5);
  // Same timestamps for both agents: (ts, agent) order interleaves them.
  CHECK(rows[0].at("agent_id").as_string() == "agent-01");
  CHECK(rows[1].at("agent_id").as_string() == "agent-02");
  CHECK(rows[0].at("seq").as_string() == "1");
  CHECK(rows[0].at("class").as_string() == "telemetry");
  CHECK(rows[0].at("value").as_double() == 0.0);
  CHECK(rows[2].at("instrument").as_string() == "dmm1");
  CHECK(rows[2].at("value").as_string() == std::to_string(-(1ll << 60)));  // exact integer
  REQUIRE(v.at("next").is_string());
  // Walk every page: 16 rows, each once.
  std::set<std::string> seen;
  std::string after;
  int pages = 0;
  for (;;) {
    std::string target = "/api/v1/measurements?limit=5";
    if (!after.empty()) target += "&after=" + after;
    auto page = json::parse(fx.a->handle("GET", target).body);
    for (auto& m : page.at("measurements").as_array())
      seen.insert(std::string(m.at("agent_id").as_string()) + "/" +
                  std::string(m.at("seq").as_string()));
    ++pages;
    if (page.at("next").is_null()) break;
    after = std::string(page.at("next").as_string());
    REQUIRE(pages < 10);
  }
  CHECK(seen.size() == 16);
  CHECK(pages == 4);

  v = json::parse(fx.a->handle("GET", "/api/v1/measurements?agent=agent-02&instrument=smu1").body);
  CHECK(v.at("measurements").as_array().size() == 7);
  CHECK(v.at("next").is_null());
  const std::int64_t t0 = 1'764'250'001'000'000'000;
  v = json::parse(fx.a->handle("GET", "/api/v1/measurements?agent=agent-01&from_ns=" +
                                          std::to_string(t0 + 2) + "&to_ns=" +
                                          std::to_string(t0 + 4)).body);
  auto& ranged = v.at("measurements").as_array();
  REQUIRE(ranged.size() == 2);
  CHECK(ranged[0].at("seq").as_string() == "3");
  CHECK(ranged[0].at("value_repr").is_string());
  CHECK(ranged[1].at("value").as_string() == "text");

  res = fx.a->handle("GET", "/api/v1/measurements?agent=agent-01&channel=curr&format=csv&limit=3");
  CHECK(res.status == 200);
  CHECK(res.content_type.rfind("text/csv", 0) == 0);
  CHECK(res.body.rfind("agent_id,store_epoch,seq,class,ts_ns,", 0) == 0);
  CHECK(res.body.find("\nagent-01,3,1,telemetry,") != std::string::npos);
  CHECK(res.body.find("# next=") != std::string::npos);

  CHECK(fx.a->handle("GET", "/api/v1/measurements?limit=0").status == 400);
  CHECK(fx.a->handle("GET", "/api/v1/measurements?from_ns=abc").status == 400);
  CHECK(fx.a->handle("GET", "/api/v1/measurements?after=1:2").status == 400);
  CHECK(fx.a->handle("GET", "/api/v1/measurements?format=xml").status == 400);
  CHECK(fx.a->handle("GET", "/api/v1/measurements?agent=%zz").status == 400);
  auto unknown = fx.a->handle("GET", "/api/v1/measurements?colour=red");
  CHECK(unknown.status == 400);
  CHECK(unknown.body.find("colour") != std::string::npos);
  CHECK(json::parse(fx.a->handle("GET", "/api/v1/measurements?agent=agent%2D01").body)
            .at("measurements").as_array().size() == 8);
}

TEST_CASE("api: readyz follows the store and MQTT; metrics in Prometheus text") {
  api_fixture fx;
  auto res = fx.a->handle("GET", "/readyz");
  CHECK(res.status == 200);
  fx.connected = false;
  res = fx.a->handle("GET", "/readyz");
  CHECK(res.status == 503);
  CHECK(res.body.find("mqtt: not connected") != std::string::npos);

  res = fx.a->handle("GET", "/metrics");
  CHECK(res.status == 200);
  CHECK(res.content_type.rfind("text/plain; version=0.0.4", 0) == 0);
  const auto& m = res.body;
  CHECK(m.find("# TYPE semilab_central_ingest_messages_total counter\n"
               "semilab_central_ingest_messages_total 7\n") != std::string::npos);
  CHECK(m.find("semilab_central_ingest_quota_rejected_total 1\n") != std::string::npos);
  CHECK(m.find("semilab_central_store_records 16\n") != std::string::npos);
  CHECK(m.find("semilab_central_quarantine_entries 0\n") != std::string::npos);
  CHECK(m.find("semilab_central_mqtt_connected 0\n") != std::string::npos);
  CHECK(m.find("semilab_central_agent_records{agent=\"agent-02\",site=\"lab1\"} 8\n") !=
        std::string::npos);
  CHECK(m.find("semilab_central_agent_last_batch_timestamp_seconds{agent=\"agent-01\",site=\"lab1\"} ") !=
        std::string::npos);
}

TEST_CASE("api: /api/v1/spc charts a stored parameter (NIST §6.3.2.2 data) over the store") {
  central_test::temp_dir d;
  std::string err;
  auto w = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(w.has_value());
  // The NIST flow-rate example as measurements of instrument "fm1", channel "flow", with a
  // text value and another channel interleaved (both must be left out of the chart).
  const double flow[] = {49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1};
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 9;
  b.batch_id = 1;
  std::uint64_t seq = 0;
  const std::int64_t t0 = 1'764'250'001'000'000'000;
  for (int i = 0; i < 10; ++i) {
    sc::record r;
    r.seq = ++seq;
    r.ts_ns = t0 + i * 1'000'000'000ll;
    r.instrument = "fm1";
    r.channel = "flow";
    r.unit = "L/min";
    r.val = i == 4 ? sc::value(sc::decimal{478, -1}) : sc::value(flow[i]);
    b.records.push_back(r);
    r.seq = ++seq;
    r.channel = "temp";
    r.val = 100.0;
    b.records.push_back(r);
  }
  sc::record txt;
  txt.seq = ++seq;
  txt.ts_ns = t0 + 500;
  txt.instrument = "fm1";
  txt.channel = "flow";
  txt.val = std::string("OVERFLOW");
  b.records.push_back(txt);
  auto bytes = central_test::encode(b);
  sc::frame_decoder dec;
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
  REQUIRE((*w)->store_batch(t, *f, bytes.size(), "c").has_value());
  auto r = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(r.has_value());
  api a(api_sources{r->get(), {}, {}, "central-x"});

  auto res = a.handle("GET", "/api/v1/spc?parameter=flow&instrument=fm1&lsl=44&usl=58");
  REQUIRE_MESSAGE(res.status == 200, res.body);
  auto v = json::parse(res.body);
  CHECK(v.at("chart").as_string() == "imr");
  CHECK(v.at("values").to_number<std::int64_t>() == 10);
  CHECK(v.at("truncated").as_bool() == false);
  CHECK(v.at("center").at("ucl").as_double() == doctest::Approx(55.8041).epsilon(1e-6));
  CHECK(v.at("center").at("lcl").as_double() == doctest::Approx(45.8159).epsilon(1e-6));
  CHECK(v.at("dispersion").at("name").as_string() == "MR");
  CHECK(v.at("dispersion").at("cl").as_double() == doctest::Approx(1.8778).epsilon(1e-4));
  auto& pts = v.at("points").as_array();
  REQUIRE(pts.size() == 10);
  CHECK(pts[0].at("dispersion").is_null());
  CHECK(pts[1].at("dispersion").as_double() == doctest::Approx(2.0));
  CHECK(pts[9].at("ts_ns").as_string() == std::to_string(t0 + 9'000'000'000ll));
  CHECK(v.at("violations").as_array().empty());
  auto& cap = v.at("capability").as_object();
  // Cp = (58 − 44) / (6 · MR̄/1.128)
  CHECK(cap.at("cp").as_double() == doctest::Approx(14.0 / (6 * (16.9 / 9) / 1.128)));
  CHECK(cap.at("cpk").is_double());

  // The path form; a subgroup chart; only the first max_points values.
  res = a.handle("GET", "/api/v1/spc/flow?chart=xbar_r&subgroup=2&max_points=8");
  REQUIRE_MESSAGE(res.status == 200, res.body);
  v = json::parse(res.body);
  CHECK(v.at("truncated").as_bool());
  CHECK(v.at("points").as_array().size() == 4);
  CHECK(v.at("dispersion").at("name").as_string() == "R");
  CHECK(v.at("capability").at("cp").is_null());

  CHECK(a.handle("GET", "/api/v1/spc?parameter=flow&chart=xbar_r&subgroup=101").status == 400);
  auto big = a.handle("GET", "/api/v1/spc?parameter=flow&chart=xbar_r&subgroup=30");
  CHECK(big.status == 422);
  CHECK(big.body.find("xbar_s") != std::string::npos);
  CHECK(a.handle("GET", "/api/v1/spc?parameter=flow&chart=xbar_r&subgroup=20").status == 422);
  CHECK(a.handle("GET", "/api/v1/spc?parameter=nothing").status == 422);
  CHECK(a.handle("GET", "/api/v1/spc").status == 400);
  CHECK(a.handle("GET", "/api/v1/spc?parameter=flow&chart=p").status == 400);
  CHECK(a.handle("GET", "/api/v1/spc?parameter=flow&lsl=5&usl=1").status == 400);
  CHECK(a.handle("GET", "/api/v1/spc?parameter=flow&usl=abc").status == 400);
}

TEST_CASE("api: instruments, daily, runs, run detail, results and gaps") {
  central_test::temp_dir d;
  std::string err;
  auto w = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(w.has_value());
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 4;
  b.batch_id = 1;
  const std::int64_t t0 = 20'400ll * 86'400'000'000'000;  // a UTC midnight
  auto rec = [&](std::uint64_t seq, sc::record_class cls, std::string ch, std::string run) {
    sc::record r;
    r.seq = seq;
    r.cls = cls;
    r.ts_ns = t0 + static_cast<std::int64_t>(seq) * 1'000'000'000;
    r.instrument = "smu1";
    r.channel = std::move(ch);
    r.unit = "V";
    r.val = 0.5 * static_cast<double>(seq);
    r.run_id = std::move(run);
    return r;
  };
  using rc = sc::record_class;
  b.records = {rec(1, rc::telemetry, "curr", "run-9"), rec(2, rc::run_result, "vth", "run-9"),
               rec(3, rc::run_result, "gm", "run-9"), rec(6, rc::run_result, "vth", "run-10")};
  auto bytes = central_test::encode(b);
  sc::frame_decoder dec;
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
  REQUIRE((*w)->store_batch(t, *f, bytes.size(), "c").has_value());
  auto r = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(r.has_value());
  api a(api_sources{r->get(), {}, {}, "central-x"});

  auto v = json::parse(a.handle("GET", "/api/v1/instruments").body);
  REQUIRE(v.at("instruments").as_array().size() == 1);
  CHECK(v.at("instruments").at(0).at("records").to_number<int>() == 4);
  CHECK(v.at("instruments").at(0).at("calibration_due_ns").is_null());

  v = json::parse(a.handle("GET", "/api/v1/daily?instrument=smu1&from_day=20400&to_day=20400").body);
  REQUIRE(v.at("daily").as_array().size() == 1);
  auto& day = v.at("daily").at(0);
  CHECK(day.at("measurements").to_number<int>() == 1);
  CHECK(day.at("results").to_number<int>() == 3);
  CHECK(day.at("runs").to_number<int>() == 2);
  CHECK(day.at("active_minutes").to_number<int>() == 1);
  CHECK(day.at("utilisation").as_double() == doctest::Approx(1.0 / 1440));

  v = json::parse(a.handle("GET", "/api/v1/runs?instrument=smu1").body);
  REQUIRE(v.at("runs").as_array().size() == 2);
  CHECK(v.at("runs").at(0).at("run_id").as_string() == "run-9");
  CHECK(v.at("runs").at(0).at("results").to_number<int>() == 2);

  auto res = a.handle("GET", "/api/v1/runs/run-9");
  REQUIRE_MESSAGE(res.status == 200, res.body);
  v = json::parse(res.body);
  CHECK(v.at("records").to_number<int>() == 3);
  CHECK(v.at("records_list").as_array().size() == 3);
  CHECK(v.at("records_list").at(1).at("channel").as_string() == "vth");
  CHECK(a.handle("GET", "/api/v1/runs/run-77").status == 404);

  v = json::parse(a.handle("GET", "/api/v1/results?parameter=vth").body);
  REQUIRE(v.at("results").as_array().size() == 2);
  CHECK(v.at("results").at(0).at("parameter").as_string() == "vth");
  CHECK(v.at("results").at(0).at("value").as_double() == doctest::Approx(1.0));
  CHECK(v.at("results").at(0).at("uncertainty").is_null());
  v = json::parse(a.handle("GET", "/api/v1/results?run=run-10").body);
  REQUIRE(v.at("results").as_array().size() == 1);
  CHECK(v.at("results").at(0).at("run_id").as_string() == "run-10");
  // Keyset pages: 3 results, pages of 2.
  v = json::parse(a.handle("GET", "/api/v1/results?limit=2").body);
  REQUIRE(v.at("results").as_array().size() == 2);
  REQUIRE(v.at("next").is_string());
  v = json::parse(a.handle("GET", "/api/v1/results?limit=2&after=" +
                                      std::string(v.at("next").as_string())).body);
  CHECK(v.at("results").as_array().size() == 1);
  CHECK(v.at("next").is_null());
  CHECK(a.handle("GET", "/api/v1/results?colour=1").status == 400);
  CHECK(a.handle("GET", "/api/v1/daily?limit=0").status == 400);

  v = json::parse(a.handle("GET", "/api/v1/gaps").body);
  REQUIRE(v.at("gaps").as_array().size() == 1);  // seqs 4-5
  CHECK(v.at("gaps").at(0).at("first").as_string() == "4");
  CHECK(v.at("gaps").at(0).at("last").as_string() == "5");
  CHECK_FALSE(v.at("gaps").at(0).at("explained").as_bool());
  CHECK(v.at("unexplained").to_number<int>() == 1);
}

TEST_CASE("api: /api/v1/samples (groups, filters, keyset pages, CSV) and its OpenAPI entry") {
  central_test::temp_dir d;
  std::string err;
  auto w = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(w.has_value());
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 4;
  b.batch_id = 1;
  const std::int64_t t0 = 20'400ll * 86'400'000'000'000;
  auto meta = [&](std::uint64_t seq, std::string run, sc::run_metadata m) {
    sc::record r;
    r.seq = seq;
    r.cls = sc::record_class::event;
    r.ts_ns = t0 + static_cast<std::int64_t>(seq) * 1'000'000'000;
    r.instrument = "smu1";
    r.channel = std::string(sc::kRunMetadataChannel);
    r.val = sc::encode_run_metadata(m);
    r.run_id = std::move(run);
    return r;
  };
  b.records = {meta(1, "r1", {"S-1", "W1", "L,1", "0,0", "", "", {}, {}}),
               meta(2, "r2", {"S-2", "W1", "L,1", "0,1", "", "", {}, {}}),
               meta(3, "r3", {"S-3", "W2", "L,1", "1,\"1\"", "", "", {}, {}})};
  auto bytes = central_test::encode(b);
  sc::frame_decoder dec;
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
  REQUIRE((*w)->store_batch(t, *f, bytes.size(), "c").has_value());
  auto r = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(r.has_value());
  api a(api_sources{r->get(), {}, {}, "central-x"});

  auto v = json::parse(a.handle("GET", "/api/v1/samples").body);
  auto& list = v.at("samples").as_array();
  REQUIRE(list.size() == 3);
  CHECK(list.at(0).at("sample").as_string() == "S-1");
  CHECK(list.at(0).at("lot").as_string() == "L,1");
  CHECK(list.at(1).at("die_y").to_number<int>() == 1);
  CHECK(list.at(2).at("die_x").is_null());  // "1,\"1\"" is a label, not coordinates
  CHECK(list.at(0).at("runs").to_number<int>() == 1);
  CHECK(list.at(0).at("first_seen_ns").as_string() == std::to_string(t0 + 1'000'000'000));
  CHECK(v.at("next").is_null());

  // Pages of two, the cursor given back.
  v = json::parse(a.handle("GET", "/api/v1/samples?limit=2").body);
  REQUIRE(v.at("samples").as_array().size() == 2);
  const std::string next(v.at("next").as_string());
  v = json::parse(a.handle("GET", "/api/v1/samples?limit=2&after=" + next).body);
  REQUIRE(v.at("samples").as_array().size() == 1);
  CHECK(v.at("samples").at(0).at("sample").as_string() == "S-3");

  v = json::parse(a.handle("GET", "/api/v1/samples?group=wafer").body);
  REQUIRE(v.at("samples").as_array().size() == 2);
  CHECK(v.at("samples").at(0).at("samples").to_number<int>() == 2);
  CHECK(v.at("samples").at(0).at("runs").to_number<int>() == 2);
  CHECK_FALSE(v.at("samples").at(0).as_object().contains("sample"));
  v = json::parse(a.handle("GET", "/api/v1/samples?group=lot&limit=1").body);
  REQUIRE(v.at("samples").as_array().size() == 1);
  CHECK(v.at("samples").at(0).at("samples").to_number<int>() == 3);
  v = json::parse(a.handle("GET", "/api/v1/samples?wafer=W2").body);
  REQUIRE(v.at("samples").as_array().size() == 1);
  v = json::parse(a.handle("GET", "/api/v1/samples?agent=agent-02").body);
  CHECK(v.at("samples").as_array().empty());

  auto csv = a.handle("GET", "/api/v1/samples?format=csv&wafer=W2");
  CHECK(csv.status == 200);
  CHECK(csv.content_type.starts_with("text/csv"));
  CHECK(csv.body == "lot,wafer,sample,die,die_x,die_y,first_seen_ns,last_seen_ns,runs,samples\n"
                    "\"L,1\",W2,S-3,\"1,\"\"1\"\"\",,," +
                        std::to_string(t0 + 3'000'000'000) + "," +
                        std::to_string(t0 + 3'000'000'000) + ",1,1\n");

  CHECK(a.handle("GET", "/api/v1/samples?group=die").status == 400);
  CHECK(a.handle("GET", "/api/v1/samples?after=zz").status == 400);
  CHECK(a.handle("GET", "/api/v1/samples?group=lot&after=" + next).status == 400);
  CHECK(a.handle("GET", "/api/v1/samples?colour=1").status == 400);

  auto doc = json::parse(a.handle("GET", "/api/v1/openapi.json").body);
  auto& op = doc.at("paths").at("/api/v1/samples").at("get");
  std::set<std::string> names;
  for (auto& prm : op.at("parameters").as_array()) names.insert(std::string(prm.at("name").as_string()));
  CHECK(names.count("group") == 1);
  CHECK(names.count("after") == 1);
  CHECK(names.count("format") == 1);
}
