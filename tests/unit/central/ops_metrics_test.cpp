// Central's operations metrics (ops_metrics.hpp) on both backends: verified backups, data_dir
// disk, unexplained gaps per agent, SPC violations of run results, and database_up on /metrics
// (a PostgreSQL reader whose server connection is killed scrapes 0, then reconnects to 1).
#include <semilab/central/api.hpp>
#include <semilab/central/ops_metrics.hpp>
#include <semilab/central/pg_store.hpp>
#include <semilab/central/storage.hpp>

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <utime.h>

#include <fstream>

#include "../../support/postgres.hpp"
#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::temp_dir;

namespace {

std::unique_ptr<semilab::test::postgres_server>& pg_server(std::string& error) {
  static std::string err;
  static auto s = semilab::test::postgres_server::start(err);
  error = err;
  return s;
}

struct env {
  temp_dir dir;
  storage_options opts;
  explicit env(storage_backend b) {
    opts.backend = b;
    opts.busy_timeout = std::chrono::milliseconds(2000);
    if (b == storage_backend::sqlite) {
      opts.sqlite_path = dir.file("central.db");
    } else {
      static int next = 0;
      std::string why;
      auto& s = pg_server(why);
      REQUIRE_MESSAGE(s != nullptr, "PostgreSQL test server: " << why);
      const std::string db = "ops" + std::to_string(++next);
      REQUIRE(s->create_database(db) == 0);
      opts.url = s->url(db);
    }
  }
  std::unique_ptr<storage> open(open_mode m) {
    auto o = opts;
    o.mode = m;
    std::string err;
    auto s = open_storage(o, err);
    REQUIRE_MESSAGE(s.has_value(), err);
    return std::move(*s);
  }
};

void store(storage& w, const sc::batch& b) {
  auto bytes = central_test::encode(b);
  sc::frame_decoder dec;
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", b.agent_id, sc::agent_topic_kind::batch};
  REQUIRE_MESSAGE(w.store_batch(t, *f, bytes.size(), "c").has_value(), w.last_error());
}

// Run results "vth" of smu1 alternating 0.5 ± 0.01 (in control for every Western Electric rule),
// at seqs `seqs`, one second apart from `t0`.
sc::batch results(const std::string& agent, std::uint64_t batch_id,
                  const std::vector<std::uint64_t>& seqs, std::int64_t t0, double last = 0) {
  sc::batch b;
  b.agent_id = agent;
  b.store_epoch = 7;
  b.batch_id = batch_id;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    sc::record r;
    r.seq = seqs[i];
    r.cls = sc::record_class::run_result;
    r.ts_ns = t0 + static_cast<std::int64_t>(seqs[i]) * 1'000'000'000;
    r.instrument = "smu1";
    r.channel = "vth";
    r.unit = "V";
    r.run_id = "run-" + std::to_string(seqs[i]);
    r.val = (last != 0 && i + 1 == seqs.size()) ? last : (seqs[i] % 2 ? 0.51 : 0.49);
    b.records.push_back(r);
  }
  return b;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> v;
  for (auto s = first; s <= last; ++s) v.push_back(s);
  return v;
}

bool has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

void gaps_and_spc(storage_backend backend) {
  env e(backend);
  auto w = e.open(open_mode::read_write);
  auto r = e.open(open_mode::read_only);
  const std::int64_t t0 = 1'764'250'000'000'000'000;
  // a1: seqs 1..9 and 13..40 (10..12 missing, no drop notice); a2: 1..25 without a hole.
  auto seqs = range(1, 9);
  for (auto s : range(13, 40)) seqs.push_back(s);
  store(*w, results("a1", 1, seqs, t0));
  store(*w, results("a2", 1, range(1, 25), t0));

  ops_metrics_options o;
  o.data_dir = e.dir.path.string();
  o.backup_dir = e.dir.file("backups");
  ops_metrics m(o);
  REQUIRE(m.refresh(*r));
  auto g = m.gaps();
  REQUIRE(g.size() == 1);
  CHECK(g[0].agent_id == "a1");
  CHECK(g[0].gaps == 1);
  CHECK(g[0].missing == 3);
  auto s = m.spc();
  REQUIRE(s.size() == 2);
  for (const auto& x : s) {
    CHECK(x.instrument == "smu1");
    CHECK(x.parameter == "vth");
    CHECK(x.violations == 0);
  }

  // a1's newest result far outside its limits: WE1 on the newest point.
  store(*w, results("a1", 2, {41}, t0, 0.9));
  REQUIRE(m.refresh(*r));
  s = m.spc();
  REQUIRE(s.size() == 2);
  CHECK(s[0].agent_id == "a1");  // most recently measured first
  CHECK(s[0].values == 38);
  CHECK(s[0].violations >= 1);
  CHECK(s[1].violations == 0);

  // Through the API: the lines an alert rule reads, database_up 1.
  auto agents = r->agents();
  REQUIRE(agents.has_value());
  api_sources src{r.get()};
  src.more_metrics = [&](std::string& out, storage* db, const std::vector<agent_row>& a) {
    m.append(out, db, a, now_ns());
  };
  api a(std::move(src));
  auto res = a.handle("GET", "/metrics");
  REQUIRE(res.status == 200);
  const auto& t = res.body;
  INFO(t);
  CHECK(has(t, "semilab_central_database_up 1\n"));
  CHECK(has(t, "semilab_central_agent_unexplained_gaps{agent=\"a1\",site=\"lab1\"} 1\n"));
  CHECK(has(t, "semilab_central_agent_unexplained_gaps{agent=\"a2\",site=\"lab1\"} 0\n"));
  CHECK(has(t, "semilab_central_agent_unexplained_missing_records{agent=\"a1\",site=\"lab1\"} 3\n"));
  CHECK(has(t, "semilab_central_spc_series 2\n"));
  CHECK(has(t, "semilab_central_spc_violations{agent=\"a2\",instrument=\"smu1\",parameter=\"vth\"} 0\n"));
  CHECK_FALSE(has(t, "semilab_central_spc_violations{agent=\"a1\",instrument=\"smu1\",parameter=\"vth\"} 0\n"));
  CHECK(has(t, "semilab_central_backup_last_success_timestamp_seconds 0\n"));
  CHECK(has(t, "semilab_central_data_dir_free_bytes "));
  CHECK(has(t, "semilab_central_data_dir_size_bytes "));
}

}  // namespace

TEST_CASE("ops metrics[sqlite]: unexplained gaps per agent and SPC violations of run results") {
  gaps_and_spc(storage_backend::sqlite);
}
TEST_CASE("ops metrics[postgresql]: unexplained gaps per agent and SPC violations of run results") {
  gaps_and_spc(storage_backend::postgresql);
}

TEST_CASE("ops metrics: only verified backups count, the newest manifest's time") {
  temp_dir d;
  auto touch = [&](const std::string& name, std::int64_t mtime) {
    std::ofstream(d.file(name)) << "x";
    utimbuf t{static_cast<time_t>(mtime), static_cast<time_t>(mtime)};
    REQUIRE(::utime(d.file(name).c_str(), &t) == 0);
  };
  CHECK(scan_backups(d.file("missing")).count == 0);
  touch("central-20261101T000000Z.db", 1000);
  touch("central-20261101T000000Z.db.json", 1'700'000'000);
  touch("central-20261102T000000Z.pgdump", 1000);
  touch("central-20261102T000000Z.pgdump.json", 1'700'000'500);
  touch("central-20261103T000000Z.db.partial", 1'800'000'000);  // never verified
  touch("central-20261104T000000Z.db", 1'800'000'000);          // no manifest
  touch("other.db.json", 1'900'000'000);
  auto b = scan_backups(d.path.string());
  CHECK(b.count == 2);
  CHECK(b.last_success_s == 1'700'000'500);

  ops_metrics_options o;
  o.data_dir = d.path.string();
  o.backup_dir = d.path.string();
  ops_metrics m(o);
  std::string out;
  m.append(out, nullptr, {}, now_ns());
  CHECK(has(out, "semilab_central_backup_last_success_timestamp_seconds 1700000500\n"));
  CHECK(has(out, "semilab_central_backups 2\n"));
  CHECK_FALSE(has(out, "semilab_central_agent_unexplained_gaps"));  // no store: left out
}

TEST_CASE("ops metrics[postgresql]: database_up 0 while the reader's connection is lost, then 1") {
  env e(storage_backend::postgresql);
  auto w = e.open(open_mode::read_write);
  store(*w, results("a1", 1, range(1, 5), 1'764'250'000'000'000'000));
  auto r = e.open(open_mode::read_only);
  ops_metrics_options o;
  o.data_dir = e.dir.path.string();
  o.backup_dir = e.dir.file("backups");
  ops_metrics m(o);
  api_sources src{r.get()};
  src.more_metrics = [&](std::string& out, storage* db, const std::vector<agent_row>& a) {
    m.append(out, db, a, now_ns());
  };
  api a(std::move(src));
  CHECK(has(a.handle("GET", "/metrics").body, "semilab_central_database_up 1\n"));

  auto* pg = dynamic_cast<pg_store*>(r.get());
  REQUIRE(pg != nullptr);
  const int pid = PQbackendPID(pg->native_handle());
  auto killer = e.open(open_mode::read_write);
  auto* kpg = dynamic_cast<pg_store*>(killer.get());
  PGresult* kr = PQexec(kpg->native_handle(),
                        ("SELECT pg_terminate_backend(" + std::to_string(pid) + ")").c_str());
  REQUIRE(PQresultStatus(kr) == PGRES_TUPLES_OK);
  PQclear(kr);

  auto res = a.handle("GET", "/metrics");
  CHECK(res.status == 200);  // the scrape works: the store's state is a metric
  CHECK(has(res.body, "semilab_central_database_up 0\n"));
  CHECK_FALSE(has(res.body, "semilab_central_store_records"));
  CHECK(has(res.body, "semilab_central_data_dir_free_bytes "));
  // The next scrape reconnects.
  res = a.handle("GET", "/metrics");
  CHECK(has(res.body, "semilab_central_database_up 1\n"));
  CHECK(has(res.body, "semilab_central_agent_unexplained_gaps{agent=\"a1\",site=\"lab1\"} 0\n"));
}
