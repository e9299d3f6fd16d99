// Run executor (runs.hpp): lifecycle, persistence, the methods' measurement sequences as
// coroutines over the capability layer, analysis and result records.
#include "runs.hpp"

#include <semilab/drivers/capabilities.hpp>
#include <semilab/methods/cv.hpp>
#include <semilab/methods/diode.hpp>
#include <semilab/methods/mosfet.hpp>
#include <semilab/methods/recipe.hpp>
#include <semilab/methods/resistivity.hpp>
#include <semilab/schemas/run_metadata.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <future>
#include <random>
#include <thread>

#include "health.hpp"
#include "instrument_runner.hpp"

namespace semilab::agent {

namespace asio = boost::asio;
namespace json = boost::json;

std::string_view to_string(run_state s) noexcept {
  switch (s) {
    case run_state::queued: return "queued";
    case run_state::running: return "running";
    case run_state::completed: return "completed";
    case run_state::aborted: return "aborted";
    case run_state::failed: return "failed";
  }
  return "failed";
}

std::optional<run_state> parse_run_state(std::string_view s) noexcept {
  for (auto st : {run_state::queued, run_state::running, run_state::completed, run_state::aborted,
                  run_state::failed})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

namespace {

json::object map_json(const std::map<std::string, std::string>& m) {
  json::object o;
  for (const auto& [k, v] : m) o[k] = v;
  return o;
}

std::map<std::string, std::string> json_map(std::string_view text) {
  std::map<std::string, std::string> m;
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return m;
  for (const auto& [k, x] : v.as_object())
    if (x.is_string()) m[std::string(k)] = std::string(x.as_string());
  return m;
}

// Methods the executor measures live, and the role each sweep role must be.
bool live_method(std::string_view m) {
  return m == "diode-iv" || m == "four-point" || m == "mosfet-idvg" || m == "cv-mos" ||
         m == "cv-schottky";
}

}  // namespace

std::string run_json(const run_view& r) {
  json::object o{{"run_id", r.id},
                 {"state", to_string(r.state)},
                 {"recipe", r.recipe_name},
                 {"recipe_version", r.recipe_version},
                 {"recipe_file", r.recipe_file},
                 {"method", r.method},
                 {"step", r.step},
                 {"steps", r.steps},
                 {"reason", r.reason},
                 {"prompt", r.prompt},
                 // ns timestamps as strings: beyond 2^53 (DESIGN-NOTES)
                 {"created_ns", std::to_string(r.created_ns)},
                 {"started_ns", std::to_string(r.started_ns)},
                 {"finished_ns", std::to_string(r.finished_ns)},
                 {"metadata", map_json(r.metadata)},
                 {"bindings", map_json(r.bindings)}};
  if (!r.result_json.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(r.result_json, ec);
    if (!ec) o["result"] = std::move(v);
  }
  return json::serialize(o);
}

// ---- the runs table, on its own worker thread -------------------------------------------------

struct run_executor::db {
  sqlite3* conn = nullptr;
  std::thread th;
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::function<void()>> q;
  bool quit = false;

  bool open(const std::filesystem::path& path, std::string& error) {
    if (sqlite3_open_v2(path.c_str(), &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      error = "runs: cannot open " + path.string() + ": " +
              (conn ? sqlite3_errmsg(conn) : "out of memory");
      return false;
    }
    sqlite3_busy_timeout(conn, 5000);  // the outbox writer holds short write transactions
    sqlite3_exec(conn, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(conn, "SELECT 1 FROM runs LIMIT 1", -1, &st, nullptr) != SQLITE_OK) {
      error = "runs: the outbox database has no runs table (" + std::string(sqlite3_errmsg(conn)) + ")";
      return false;
    }
    sqlite3_finalize(st);
    th = std::thread([this] {
      pthread_setname_np(pthread_self(), "runs-db");
      for (;;) {
        std::function<void()> f;
        {
          std::unique_lock lk(m);
          cv.wait(lk, [&] { return quit || !q.empty(); });
          if (q.empty()) return;
          f = std::move(q.front());
          q.pop_front();
        }
        f();
      }
    });
    return true;
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(m);
      q.push_back(std::move(f));
    }
    cv.notify_one();
  }
  void close() {
    {
      std::lock_guard lk(m);
      quit = true;
    }
    cv.notify_one();
    if (th.joinable()) th.join();
    if (conn) sqlite3_close(conn);
    conn = nullptr;
  }
  ~db() { close(); }

  // Worker thread (or before it starts). Returns SQLite's message on failure, "" on success.
  std::string upsert(const run_view& v, const std::string& toml) {
    static constexpr const char* kSql =
        "INSERT INTO runs(run_id, state, recipe_name, recipe_version, method, recipe_toml, metadata,"
        " bindings, step, steps, reason, result, created_ns, started_ns, finished_ns)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
        " ON CONFLICT(run_id) DO UPDATE SET state=excluded.state, step=excluded.step,"
        " steps=excluded.steps, reason=excluded.reason, result=excluded.result,"
        " started_ns=excluded.started_ns, finished_ns=excluded.finished_ns";
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(conn, kSql, -1, &st, nullptr) != SQLITE_OK) return sqlite3_errmsg(conn);
    auto text = [&](int i, const std::string& s) {
      sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    };
    text(1, v.id);
    text(2, std::string(to_string(v.state)));
    text(3, v.recipe_name);
    text(4, v.recipe_version);
    text(5, v.method);
    text(6, toml);
    text(7, json::serialize(map_json(v.metadata)));
    text(8, json::serialize(map_json(v.bindings)));
    sqlite3_bind_int64(st, 9, static_cast<sqlite3_int64>(v.step));
    sqlite3_bind_int64(st, 10, static_cast<sqlite3_int64>(v.steps));
    text(11, v.reason);
    if (v.result_json.empty()) sqlite3_bind_null(st, 12);
    else text(12, v.result_json);
    sqlite3_bind_int64(st, 13, v.created_ns);
    if (v.started_ns) sqlite3_bind_int64(st, 14, v.started_ns);
    else sqlite3_bind_null(st, 14);
    if (v.finished_ns) sqlite3_bind_int64(st, 15, v.finished_ns);
    else sqlite3_bind_null(st, 15);
    std::string err;
    if (sqlite3_step(st) != SQLITE_DONE) err = sqlite3_errmsg(conn);
    sqlite3_finalize(st);
    return err;
  }

  // Before the worker starts: the recent runs, newest first.
  std::vector<run_view> load(std::size_t limit) {
    std::vector<run_view> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(conn,
                           "SELECT run_id, state, recipe_name, recipe_version, method, metadata,"
                           " bindings, step, steps, reason, result, created_ns, started_ns,"
                           " finished_ns FROM runs ORDER BY created_ns DESC LIMIT ?1",
                           -1, &st, nullptr) != SQLITE_OK)
      return out;
    sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(limit));
    auto col = [&](int i) {
      auto* p = sqlite3_column_text(st, i);
      return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
    };
    while (sqlite3_step(st) == SQLITE_ROW) {
      run_view v;
      v.id = col(0);
      v.state = parse_run_state(col(1)).value_or(run_state::failed);
      v.recipe_name = col(2);
      v.recipe_version = col(3);
      v.method = col(4);
      v.metadata = json_map(col(5));
      v.bindings = json_map(col(6));
      v.step = static_cast<std::uint64_t>(sqlite3_column_int64(st, 7));
      v.steps = static_cast<std::uint64_t>(sqlite3_column_int64(st, 8));
      v.reason = col(9);
      v.result_json = col(10);
      v.created_ns = sqlite3_column_int64(st, 11);
      v.started_ns = sqlite3_column_int64(st, 12);
      v.finished_ns = sqlite3_column_int64(st, 13);
      out.push_back(std::move(v));
    }
    sqlite3_finalize(st);
    return out;
  }
};

// ---- a run in execution -----------------------------------------------------------------------

namespace {

struct role_binding {
  methods::role role;
  std::string instrument;
  std::shared_ptr<instrument_runner> runner;
  drivers::scpi_session* session = nullptr;
  const drivers::model_profile* model = nullptr;
  asio::any_io_executor ex;  // the instrument's strand
  std::shared_ptr<drivers::source_measure> smu;
  std::shared_ptr<drivers::impedance_meter> lcr;
  std::shared_ptr<drivers::voltmeter> dmm;
};

// One measured curve: named quantities (SI units) per point, with quality and time.
struct curve {
  std::vector<std::string> names, units;
  std::string instrument;
  std::vector<std::vector<double>> points;
  std::vector<std::uint32_t> quality;
  std::vector<std::int64_t> ts;
  void add(std::vector<double> p, std::uint32_t q, std::int64_t t) {
    points.push_back(std::move(p));
    quality.push_back(q);
    ts.push_back(t);
  }
};

constexpr std::size_t kChunk = 25;  // points per instrument-side sweep (progress, abort latency)

// Posts `start(cb)` to `ex` (an instrument strand) and resumes the awaiting coroutine on its own
// executor with the value `cb` receives.
// Not a coroutine itself: it returns the awaitable of the initiation. GCC 12 destroys
// temporaries with non-trivial destructors that appear in a co_await expression twice, so callers
// pass the executor and a named callable as lvalues (taken by reference, copied here).
template <class T, class Start>
asio::awaitable<T> call_on(const asio::any_io_executor& ex, const Start& start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [ex](auto handler, Start st) mutable {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        asio::post(ex, [h, st = std::move(st)]() mutable {
          st([h](T v) {
            auto back = asio::get_associated_executor(*h);
            asio::post(back, [h, v = std::move(v)]() mutable { (*h)(std::move(v)); });
          });
        });
      },
      asio::use_awaitable, Start(start));
}

std::string err_text(const drivers::error_info& e) {
  return e.message.empty() ? e.code.message() : e.message;
}

}  // namespace

struct run_executor::active {
  std::string id;
  methods::recipe rcp;
  std::string toml;
  std::vector<role_binding> roles;
  std::atomic<bool> abort{false};
  std::chrono::steady_clock::time_point t0;
  std::uint64_t compliance_points = 0;

  role_binding* role(std::string_view name) {
    for (auto& r : roles)
      if (r.role.name == name) return &r;
    return nullptr;
  }
};

// The coroutine body of one run, with the executor's helpers.
struct run_task {
  run_executor& ex;
  std::shared_ptr<run_executor::active> a;

  void progress(std::uint64_t step) {
    ex.update(a->id, [&](run_view& v) { v.step = step; }, false);
  }

  // Stop conditions between steps: abort request, max_duration.
  std::optional<std::string> should_stop() {
    if (a->abort) return std::string("aborted");
    double max = a->rcp.abort.max_duration;
    if (max > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - a->t0).count() > max)
      return "abort.max_duration of " + std::to_string(max) + " s exceeded";
    return std::nullopt;
  }

  // Compliance policy of the recipe for one point; a message when the run must end.
  std::optional<std::string> on_point_quality(std::uint32_t q, std::size_t index, bool& stop_sweep) {
    if (!(q & schemas::quality::compliance)) return std::nullopt;
    ++a->compliance_points;
    const auto& ab = a->rcp.abort;
    if (ab.compliance == methods::on_compliance::fail)
      return "compliance at point " + std::to_string(index + 1) + " (abort.on_compliance = fail)";
    if (ab.max_compliance_points > 0 &&
        a->compliance_points > static_cast<std::uint64_t>(ab.max_compliance_points))
      return "more than " + std::to_string(ab.max_compliance_points) +
             " compliance points (abort.max_compliance_points)";
    if (ab.compliance == methods::on_compliance::stop) stop_sweep = true;
    return std::nullopt;
  }

  // `f` must capture only trivially destructible values (see call_on).
  template <class F>
  asio::awaitable<drivers::result<void>> smu_do(role_binding& rb, F f) {
    auto op = [smu = rb.smu, f](auto cb) { f(*smu, drivers::done_handler(cb)); };
    return call_on<drivers::result<void>>(rb.ex, op);
  }

  // Source function, compliance, NPLC, range, output on, (level).
  asio::awaitable<std::optional<std::string>> smu_setup(role_binding& rb, bool with_level) {
    const auto& r = rb.role;
    auto fn = r.source == "current" ? drivers::source_function::current
                                    : drivers::source_function::voltage;
    auto check = [&](const drivers::result<void>& res, std::string_view what)
        -> std::optional<std::string> {
      if (res) return std::nullopt;
      return rb.instrument + " (role " + r.name + "): " + std::string(what) + ": " +
             err_text(res.error());
    };
    // One awaited step per statement (GCC 12 and temporaries around co_await in conditions).
    auto r1 = co_await smu_do(rb, [fn](auto& s, auto h) { s.async_set_function(fn, h); });
    if (auto e = check(r1, "source function")) co_return e;
    double comp = r.compliance;
    auto r2 = co_await smu_do(rb, [comp](auto& s, auto h) { s.async_set_compliance(comp, h); });
    if (auto e = check(r2, "compliance")) co_return e;
    double nplc = r.nplc;
    auto r3 = co_await smu_do(rb, [nplc](auto& s, auto h) { s.async_set_nplc(nplc, h); });
    if (auto e = check(r3, "nplc")) co_return e;
    double range = r.range;
    auto r4 = co_await smu_do(rb, [range](auto& s, auto h) { s.async_set_range(range, h); });
    if (auto e = check(r4, "range")) co_return e;
    auto r5 = co_await smu_do(rb, [](auto& s, auto h) { s.async_output_on(h); });
    if (auto e = check(r5, "output on")) co_return e;
    if (with_level) {
      double lvl = r.level;
      auto r6 = co_await smu_do(rb, [lvl](auto& s, auto h) { s.async_set_level(lvl, h); });
      if (auto e = check(r6, "level")) co_return e;
    }
    co_return std::nullopt;
  }

  asio::awaitable<drivers::result<drivers::smu_point>> smu_measure(role_binding& rb) {
    auto op = [smu = rb.smu](auto cb) { smu->async_measure(drivers::source_measure::point_handler(cb)); };
    return call_on<drivers::result<drivers::smu_point>>(rb.ex, op);
  }

  // The loops below declare every non-trivial local before the loop and leave it with `break`,
  // never with `co_return` (GCC 12 destroys loop-scoped locals of a coroutine twice otherwise).

  // One source-measure role swept through `levels` with instrument-side list sweeps in chunks.
  // x = source readback, y = measurement.
  asio::awaitable<std::optional<std::string>> sweep_smu(role_binding& rb,
                                                        const std::vector<double>& levels,
                                                        curve& c) {
    auto delay = std::chrono::milliseconds(
        static_cast<std::int64_t>(std::llround(a->rcp.sweep.delay * 1000)));
    std::optional<std::string> err;
    std::vector<double> sub;
    std::vector<drivers::smu_point> pts;
    drivers::result<void> lr;
    drivers::result<drivers::smu_point> m;
    drivers::result<std::vector<drivers::smu_point>> sr;
    bool stop = false;
    for (std::size_t i = 0; i < levels.size() && !stop && !err; i += kChunk) {
      err = should_stop();
      if (err) break;
      sub.assign(levels.begin() + static_cast<std::ptrdiff_t>(i),
                 levels.begin() + static_cast<std::ptrdiff_t>(std::min(levels.size(), i + kChunk)));
      pts.clear();
      if (sub.size() == 1) {
        lr = co_await smu_do(rb, [lvl = sub[0]](auto& s, auto h) { s.async_set_level(lvl, h); });
        if (!lr) {
          err = rb.instrument + ": level: " + err_text(lr.error());
          break;
        }
        m = co_await smu_measure(rb);
        if (!m) {
          err = rb.instrument + ": measure: " + err_text(m.error());
          break;
        }
        pts.push_back(*m);
      } else {
        auto op = [smu = rb.smu, sub, delay](auto cb) {
          smu->async_sweep_list(sub, delay, drivers::source_measure::sweep_handler(cb));
        };
        sr = co_await call_on<drivers::result<std::vector<drivers::smu_point>>>(rb.ex, op);
        if (!sr) {
          err = rb.instrument + ": sweep: " + err_text(sr.error());
          break;
        }
        pts = std::move(*sr);
      }
      add_smu_points(pts, c, stop, err);
    }
    co_return err;
  }

  void add_smu_points(const std::vector<drivers::smu_point>& pts, curve& c, bool& stop,
                      std::optional<std::string>& err) {
    auto ts = ex.rec_.stamp().ts_ns;
    for (const auto& p : pts) {
      c.add({p.source.value.to_double(), p.measure.value.to_double()}, p.quality, ts);
      err = on_point_quality(p.quality, c.points.size() - 1, stop);
      if (err) return;
    }
    progress(c.points.size());
  }

  void add_point(curve& c, std::vector<double> values, std::uint32_t q, std::size_t index,
                 std::uint32_t compliance_q, bool& stop, std::optional<std::string>& err) {
    c.add(std::move(values), q, ex.rec_.stamp().ts_ns);
    err = on_point_quality(compliance_q, index, stop);
    progress(c.points.size());
  }

  // Four-point probe with a voltmeter role: the SMU steps the current, the DMM reads.
  asio::awaitable<std::optional<std::string>> step_smu_dmm(role_binding& src, role_binding& dmm,
                                                           const std::vector<double>& levels,
                                                           curve& c) {
    std::optional<std::string> err;
    drivers::result<void> lr;
    drivers::result<drivers::smu_point> m;
    drivers::result<drivers::reading> rd;
    bool stop = false;
    for (std::size_t i = 0; i < levels.size() && !stop && !err; ++i) {
      err = should_stop();
      if (err) break;
      lr = co_await smu_do(src, [lvl = levels[i]](auto& s, auto h) { s.async_set_level(lvl, h); });
      if (!lr) {
        err = src.instrument + ": level: " + err_text(lr.error());
        break;
      }
      m = co_await smu_measure(src);
      if (!m) {
        err = src.instrument + ": measure: " + err_text(m.error());
        break;
      }
      auto op = [vm = dmm.dmm](auto cb) { vm->async_read(drivers::voltmeter::reading_handler(cb)); };
      rd = co_await call_on<drivers::result<drivers::reading>>(dmm.ex, op);
      if (!rd) {
        err = dmm.instrument + ": read: " + err_text(rd.error());
        break;
      }
      add_point(c, {m->source.value.to_double(), rd->value.to_double()}, m->quality | rd->quality, i,
                m->quality, stop, err);
    }
    co_return err;
  }

  // MOSFET transfer: drain held at its level, gate stepped; x = VGS, y = ID, z = IG. The gate is
  // measured before the drain: a query answered by the gate proves its new level is applied
  // (two instruments, two links: a command written to one is not ordered against a query on the
  // other).
  asio::awaitable<std::optional<std::string>> step_gate(role_binding& gate, role_binding& drain,
                                                        const std::vector<double>& levels,
                                                        curve& c) {
    std::optional<std::string> err;
    drivers::result<void> lr;
    drivers::result<drivers::smu_point> m, g;
    bool stop = false;
    for (std::size_t i = 0; i < levels.size() && !stop && !err; ++i) {
      err = should_stop();
      if (err) break;
      lr = co_await smu_do(gate, [lvl = levels[i]](auto& s, auto h) { s.async_set_level(lvl, h); });
      if (!lr) {
        err = gate.instrument + ": level: " + err_text(lr.error());
        break;
      }
      g = co_await smu_measure(gate);
      if (!g) {
        err = gate.instrument + ": measure: " + err_text(g.error());
        break;
      }
      m = co_await smu_measure(drain);
      if (!m) {
        err = drain.instrument + ": measure: " + err_text(m.error());
        break;
      }
      add_point(c, {levels[i], m->measure.value.to_double(), g->measure.value.to_double()},
                m->quality, i, m->quality, stop, err);
    }
    co_return err;
  }

  // C-V: DC-bias list sweeps in chunks; x = bias, y = A (Cp), z = B (G, D, ...).
  asio::awaitable<std::optional<std::string>> sweep_lcr(role_binding& rb,
                                                        const std::vector<double>& levels,
                                                        curve& c) {
    std::optional<std::string> err;
    drivers::impedance_config cfg;
    cfg.function = rb.role.function;
    cfg.frequency = rb.role.frequency;
    cfg.ac_level = rb.role.ac_level;
    cfg.bias_on = true;
    std::vector<double> sub;
    drivers::result<std::vector<drivers::impedance_point>> res;
    auto conf_op = [lcr = rb.lcr, cfg](auto cb) { lcr->async_configure(cfg, drivers::done_handler(cb)); };
    auto conf = co_await call_on<drivers::result<void>>(rb.ex, conf_op);
    if (!conf) err = rb.instrument + ": configure: " + err_text(conf.error());
    for (std::size_t i = 0; i < levels.size() && !err; i += kChunk) {
      err = should_stop();
      if (err) break;
      sub.assign(levels.begin() + static_cast<std::ptrdiff_t>(i),
                 levels.begin() + static_cast<std::ptrdiff_t>(std::min(levels.size(), i + kChunk)));
      auto op = [lcr = rb.lcr, sub](auto cb) {
        lcr->async_bias_list_sweep(sub, drivers::impedance_meter::sweep_handler(cb));
      };
      res = co_await call_on<drivers::result<std::vector<drivers::impedance_point>>>(rb.ex, op);
      if (!res) {
        err = rb.instrument + ": bias sweep: " + err_text(res.error());
        break;
      }
      add_cv_points(*res, c);
    }
    co_return err;
  }

  void add_cv_points(const std::vector<drivers::impedance_point>& pts, curve& c) {
    auto ts = ex.rec_.stamp().ts_ns;
    for (const auto& p : pts) c.add({p.bias, p.a.value.to_double(), p.b.value.to_double()}, p.quality, ts);
    progress(c.points.size());
  }

  // Every source of the run off (ramped), whatever happened; errors only logged (the driver
  // switches the output off at its next operation when the link was down).
  asio::awaitable<void> outputs_off() {
    drivers::result<void> r;
    for (auto& rb : a->roles) {
      if (!rb.smu) continue;
      r = co_await smu_do(rb, [](auto& s, auto h) { s.async_output_off(h); });
      if (!r) log_off_failure(rb, r.error());
    }
  }
  void log_off_failure(const role_binding& rb, const drivers::error_info& e) {
    spdlog::warn("[runs] {}: {}: output off failed: {}", a->id, rb.instrument, err_text(e));
  }

  // Lease a role's instrument (its polling pauses) and build its capability on its strand.
  asio::awaitable<bool> lease(role_binding& rb) {
    auto op = [runner = rb.runner](auto cb) { runner->lease(instrument_runner::lease_handler(cb)); };
    asio::any_io_executor home = ex.strand_;
    rb.session = co_await call_on<drivers::scpi_session*>(home, op);
    if (!rb.session) co_return false;
    rb.ex = rb.session->get_executor();
    auto make = [&rb, this](auto cb) {
      std::lock_guard lk(ex.mu_);
      if (rb.role.kind == methods::role_kind::source_measure)
        rb.smu = std::make_shared<drivers::source_measure>(*rb.session, *rb.model);
      else if (rb.role.kind == methods::role_kind::impedance)
        rb.lcr = std::make_shared<drivers::impedance_meter>(*rb.session, *rb.model);
      else
        rb.dmm = std::make_shared<drivers::voltmeter>(*rb.session, *rb.model);
      cb(0);
    };
    co_await call_on<int>(rb.ex, make);
    co_return true;
  }

  // Capabilities die on their strands (a source_measure's destructor may queue :OUTP OFF), then
  // the instrument goes back to polling.
  asio::awaitable<void> unlease(role_binding& rb) {
    auto drop = [&rb, this](auto cb) {
      {
        std::lock_guard lk(ex.mu_);
        rb.smu.reset();
        rb.lcr.reset();
        rb.dmm.reset();
      }
      cb(0);
    };
    co_await call_on<int>(rb.ex, drop);
    rb.runner->release();
    rb.session = nullptr;
  }

  // Names and units of the curve's quantities, and the instrument its records carry.
  void name_curve(curve& c, const role_binding& sw, const role_binding* dmm, const role_binding* drain) {
    const auto& m = a->rcp.method;
    if (m == "mosfet-idvg") {
      c.names = {"vgs", "id", "ig"};
      c.units = {"V", "A", "A"};
      c.instrument = drain->instrument;
    } else if (m == "cv-mos" || m == "cv-schottky") {
      bool g = sw.role.function == "CPG";
      c.names = {"vg", "cp", g ? "gp" : "b"};
      c.units = {"V", "F", g ? "S" : ""};
      c.instrument = sw.instrument;
    } else if (m == "four-point" || sw.role.source == "current") {
      c.names = {"i", "v"};
      c.units = {"A", "V"};
      c.instrument = dmm ? dmm->instrument : sw.instrument;
    } else {
      c.names = {"v", "i"};
      c.units = {"V", "A"};
      c.instrument = sw.instrument;
    }
  }

  asio::awaitable<std::optional<std::string>> configure_dmm(role_binding& d) {
    drivers::voltmeter_config vc;
    vc.nplc = d.role.nplc;
    vc.range = d.role.range;
    auto op = [vm = d.dmm, vc](auto cb) { vm->async_configure(vc, drivers::done_handler(cb)); };
    auto r = co_await call_on<drivers::result<void>>(d.ex, op);
    std::optional<std::string> err;
    if (!r) err = d.instrument + ": configure: " + err_text(r.error());
    co_return err;
  }

  // The method's measurement sequence (flat: see the note on loops above).
  asio::awaitable<std::optional<std::string>> measure(curve& c) {
    const auto& rcp = a->rcp;
    const auto& levels = rcp.sweep.points;
    role_binding* sw = a->role(rcp.sweep.role);
    role_binding* dmm = nullptr;
    role_binding* drain = nullptr;
    for (auto& rb : a->roles) {
      if (rb.role.kind == methods::role_kind::voltmeter) dmm = &rb;
      if (&rb != sw && rb.role.kind == methods::role_kind::source_measure) drain = &rb;
    }
    name_curve(c, *sw, dmm, drain);
    std::optional<std::string> err;
    if (rcp.method == "mosfet-idvg") {
      err = co_await smu_setup(*drain, true);
      if (!err) err = co_await smu_setup(*sw, false);
      if (!err) err = co_await step_gate(*sw, *drain, levels, c);
    } else if (rcp.method == "cv-mos" || rcp.method == "cv-schottky") {
      err = co_await sweep_lcr(*sw, levels, c);
    } else {
      err = co_await smu_setup(*sw, false);
      if (!err && dmm) err = co_await configure_dmm(*dmm);
      if (!err && dmm) err = co_await step_smu_dmm(*sw, *dmm, levels, c);
      else if (!err) err = co_await sweep_smu(*sw, levels, c);
    }
    co_return err;
  }

  asio::awaitable<void> run();
};

// The forward branch of a dual sweep (up to and including the turning point).
static std::size_t forward_count(const methods::recipe& r, std::size_t n) {
  if (!r.sweep.spec.dual || n < 3) return n;
  std::size_t half = (r.sweep.points.size() + 1) / 2;
  return std::min(n, half);
}

asio::awaitable<void> run_task::run() {
  auto& rcp = a->rcp;
  a->t0 = std::chrono::steady_clock::now();
  std::string failure;
  bool aborted = false;
  std::optional<std::string> err;
  curve c;
  const auto& levels = rcp.sweep.points;

  // Lease every role's instrument (polling pauses), then build its capability on its strand.
  bool leased = true;
  for (std::size_t i = 0; i < a->roles.size() && leased; ++i) {
    leased = co_await lease(a->roles[i]);
    if (!leased)
      failure = "instrument " + a->roles[i].instrument +
                " is not available (stopped, or used by another run)";
  }

  if (failure.empty()) {
    ex.update(a->id, [&](run_view& v) {
      v.steps = levels.size();
      for (const auto& p : rcp.prompts)
        if (p.at == "start") v.prompt = p.text;
    }, false);
    err = co_await measure(c);
    if (err) {
      if (a->abort) aborted = true;
      failure = a->abort ? "aborted by request after " + std::to_string(c.points.size()) + " point(s)"
                         : *err;
    }
    co_await outputs_off();
  }

  for (std::size_t i = 0; i < a->roles.size(); ++i)
    if (a->roles[i].session) co_await unlease(a->roles[i]);
  if (!failure.empty() && c.points.empty()) {
    ex.finish(a, aborted ? run_state::aborted : run_state::failed, failure, {});
    co_return;
  }

  // Analysis of the forward branch, through the same code as `analyze`.
  std::vector<methods::sample> samples;
  std::vector<methods::cv_point> cvp;
  std::size_t n = forward_count(rcp, c.points.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto& p = c.points[i];
    if (c.names[0] == "i" && rcp.method == "diode-iv")
      samples.push_back({p[1], p[0], c.quality[i]});  // x = V, y = I
    else if (rcp.method == "cv-mos" || rcp.method == "cv-schottky")
      cvp.push_back({p[0], p[1], c.names[2] == "gp" ? p[2] : NAN, c.quality[i]});
    else
      samples.push_back({p[0], p[1], c.quality[i]});
  }
  methods::result<methods::extraction> ex_result =
      methods::make_error(methods::errc::insufficient_data, "no data measured");
  const auto& dev = rcp.device;
  if (failure.empty()) {
    if (rcp.method == "diode-iv") {
      methods::diode_options o;
      o.temperature = dev.temperature;
      auto r = methods::analyze_diode(samples, o);
      ex_result = r ? methods::result<methods::extraction>(r->ex) : r.error();
    } else if (rcp.method == "mosfet-idvg") {
      methods::mosfet_options o;
      for (const auto& rb : a->roles)
        if (rb.role.name != rcp.sweep.role && rb.role.kind == methods::role_kind::source_measure)
          o.vds = rb.role.level;
      o.polarity = dev.polarity == "p" ? methods::channel::p : methods::channel::n;
      o.width = dev.width;
      o.length = dev.length;
      o.temperature = dev.temperature;
      ex_result = methods::analyze_mosfet_transfer(samples, o);
    } else if (rcp.method == "four-point") {
      methods::four_point_geometry g;
      g.spacing = dev.probe_spacing;
      g.diameter = dev.diameter;
      g.thickness = dev.thickness;
      ex_result = methods::analyze_four_point(samples, g);
    } else if (rcp.method == "cv-mos") {
      methods::cv_mos_options o;
      o.area = dev.area;
      o.type = dev.polarity == "n" ? methods::substrate::n : methods::substrate::p;
      o.temperature = dev.temperature;
      if (c.names[2] == "gp") o.frequency = a->role(rcp.sweep.role)->role.frequency;
      auto r = methods::analyze_cv_mos(cvp, o);
      ex_result = r ? methods::result<methods::extraction>(r->ex) : r.error();
    } else if (rcp.method == "cv-schottky") {
      methods::cv_schottky_options o;
      o.area = dev.area;
      o.temperature = dev.temperature;
      ex_result = methods::analyze_cv_schottky(cvp, o);
    }
  }

  // Calibration: the earliest due date of the run's instruments decides traceability.
  std::optional<std::chrono::sys_days> due;
  for (const auto& rb : a->roles) {
    auto it = ex.opt_.calibration_due.find(rb.instrument);
    if (it == ex.opt_.calibration_due.end() || it->second.empty()) continue;
    if (auto ns = health::parse_date_ns(it->second)) {
      auto d = std::chrono::floor<std::chrono::days>(
          std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::nanoseconds(*ns)));
      if (!due || d < *due) due = d;
    }
  }
  if (ex_result && due)
    methods::apply_calibration(*ex_result, due,
                               std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now()));

  // Records: curve, parameters, summary; the state follows once they are committed.
  const auto ts_end = ex.rec_.stamp();
  std::vector<schemas::record> recs;
  for (std::size_t i = 0; i < c.points.size(); ++i)
    for (std::size_t k = 0; k < c.names.size(); ++k) {
      schemas::record r;
      r.cls = schemas::record_class::run_result;
      r.ts_ns = c.ts[i];
      r.instrument = c.instrument;
      r.channel = "curve." + c.names[k];
      r.unit = c.units[k];
      r.quality = c.quality[i];
      r.val = c.points[i][k];
      r.run_id = a->id;
      recs.push_back(std::move(r));
    }
  json::object params;
  std::map<std::string, double> values;
  json::array warnings;
  std::uint32_t result_quality = 0;
  if (ex_result) {
    result_quality = ex_result->quality;
    for (const auto& p : ex_result->parameters) {
      schemas::record r;
      r.cls = schemas::record_class::run_result;
      r.ts_ns = ts_end.ts_ns;
      r.instrument = c.instrument;
      r.channel = "param." + p.name;
      r.unit = p.unit;
      r.quality = ex_result->quality | ts_end.quality;
      r.run_id = a->id;
      json::object po;
      if (!p.text.empty()) {
        r.val = p.text;
        po["value"] = p.text;
      } else {
        r.val = p.value;
        po["value"] = p.value;
        values[p.name] = p.value;
      }
      po["unit"] = p.unit;
      if (p.uncertainty) po["uncertainty"] = *p.uncertainty;
      if (p.lower_bound) po["lower_bound"] = true;
      params[p.name] = std::move(po);
      if (p.uncertainty) {
        schemas::record u = r;
        u.channel += ".u";
        u.val = *p.uncertainty;
        recs.push_back(std::move(r));
        recs.push_back(std::move(u));
      } else {
        recs.push_back(std::move(r));
      }
    }
    for (const auto& w : ex_result->warnings) warnings.push_back(json::value(w));
  }
  json::array limit_failures;
  if (ex_result)
    for (const auto& f : methods::check_limits(rcp, values)) limit_failures.push_back(json::value(f));
  json::object summary{{"recipe", rcp.name},
                       {"recipe_version", rcp.version},
                       {"method", rcp.method},
                       {"algorithm", ex_result ? ex_result->version : std::string()},
                       {"points", c.points.size()},
                       {"analysed_points", n},
                       {"compliance_points", a->compliance_points},
                       {"traceable", !(result_quality & schemas::quality::non_traceable)},
                       {"parameters", std::move(params)},
                       {"warnings", std::move(warnings)},
                       {"limit_failures", limit_failures},
                       {"pass", ex_result && limit_failures.empty()}};
  if (!ex_result && failure.empty())
    failure = "analysis: " + ex_result.error().message;
  if (!failure.empty()) summary["error"] = failure;
  std::string summary_text = json::serialize(summary);
  // Which sample the run measured, for central's samples/wafers/lots model (schemas/WIRE.md,
  // "Run metadata"): an event committed in the same batch as the results.
  if (auto view = ex.get(a->id)) {
    auto field = [&](const char* k) {
      auto it = view->metadata.find(k);
      return it == view->metadata.end() ? std::string() : it->second.substr(0, schemas::kRunMetadataMaxField);
    };
    schemas::run_metadata m{field("sample"), field("wafer"), field("lot"), field("die"),
                            field("operator"), field("project"), std::nullopt, std::nullopt};
    schemas::record r;
    r.cls = schemas::record_class::event;
    r.ts_ns = ts_end.ts_ns;
    r.instrument = c.instrument;
    r.channel = std::string(schemas::kRunMetadataChannel);
    r.quality = ts_end.quality;
    r.val = schemas::encode_run_metadata(m);
    r.run_id = a->id;
    recs.push_back(std::move(r));
  }
  {
    schemas::record r;
    r.cls = schemas::record_class::run_result;
    r.ts_ns = ts_end.ts_ns;
    r.instrument = c.instrument;
    r.channel = "run.summary";
    r.quality = result_quality;
    if (summary_text.size() > schemas::kMaxTextBytes) {
      // Text values are bounded: the parameters are records of their own anyway.
      summary.erase("warnings");
      summary.erase("parameters");
      summary["truncated"] = true;
      summary_text = json::serialize(summary);
    }
    r.val = summary_text;
    r.run_id = a->id;
    recs.push_back(std::move(r));
  }
  // (An error_code as the completion value would make co_await throw: a message instead.)
  auto shared_recs = std::make_shared<std::vector<schemas::record>>(std::move(recs));
  auto store = [&rec = ex.rec_, shared_recs](auto cb) {
    rec.submit(std::move(*shared_recs), [cb](boost::system::error_code ec, schemas::seq_range) {
      cb(ec ? ec.message() : std::string());
    });
  };
  asio::any_io_executor home = ex.strand_;
  auto stored = co_await call_on<std::string>(home, store);
  if (!stored.empty()) {
    ex.finish(a, run_state::failed, "storing the results failed: " + stored, summary_text);
    co_return;
  }
  if (aborted) ex.finish(a, run_state::aborted, failure, summary_text);
  else if (!failure.empty()) ex.finish(a, run_state::failed, failure, summary_text);
  else ex.finish(a, run_state::completed, {}, summary_text);
}

// ---- the executor -----------------------------------------------------------------------------

run_executor::run_executor(asio::io_context& io, runs_options opt, recorder& rec, find_runner find)
    : io_(io), strand_(asio::make_strand(io)), opt_(std::move(opt)), rec_(rec), find_(std::move(find)) {}

run_executor::~run_executor() {
  if (db_) db_->close();
}

std::shared_ptr<run_executor> run_executor::create(asio::io_context& io, runs_options opt,
                                                   recorder& rec, find_runner find,
                                                   std::string& error) {
  std::shared_ptr<run_executor> ex(new run_executor(io, std::move(opt), rec, std::move(find)));
  auto d = std::make_unique<db>();
  if (!d->open(ex->opt_.db_path, error)) return nullptr;
  // Close what a previous daemon left open (before the worker gets any other write: the
  // worker thread has started but its queue is empty).
  auto recent = d->load(1000);
  auto now = utc_now_ns();
  std::vector<schemas::record> events;
  for (auto& v : recent) {
    if (finished(v.state)) continue;
    v.reason = v.state == run_state::running
                   ? "the daemon stopped while the run was running; the instruments' outputs are "
                     "switched off when their sessions are next opened"
                   : "the daemon stopped before the run started";
    v.state = run_state::failed;
    v.finished_ns = now;
    std::promise<std::string> done;
    auto fut = done.get_future();
    d->post([&d, &v, &done] { done.set_value(d->upsert(v, {})); });
    if (auto e = fut.get(); !e.empty()) {
      error = "runs: closing run " + v.id + ": " + e;
      return nullptr;
    }
    spdlog::warn("[runs] {} marked failed: {}", v.id, v.reason);
    schemas::record r;
    r.cls = schemas::record_class::event;
    r.ts_ns = now;
    r.instrument = "agent";
    r.channel = "run.state";
    r.val = std::string("failed");
    r.run_id = v.id;
    events.push_back(std::move(r));
  }
  if (!events.empty())
    rec.submit(std::move(events), [](boost::system::error_code ec, schemas::seq_range) {
      if (ec) spdlog::error("[runs] storing run.state events failed: {}", ec.message());
    });
  std::size_t kept = 0;
  for (auto& v : recent) {
    if (kept++ >= ex->opt_.history) break;
    ex->runs_[v.id] = std::move(v);
  }
  ex->db_ = std::move(d);
  return ex;
}

void run_executor::update(const std::string& id, const std::function<void(run_view&)>& f,
                          bool persist) {
  run_view copy;
  {
    std::lock_guard lk(mu_);
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    f(it->second);
    if (!persist) return;
    copy = it->second;
  }
  db_->post([this, copy = std::move(copy)] {
    if (auto e = db_->upsert(copy, {}); !e.empty())
      spdlog::error("[runs] {}: persisting state {} failed: {}", copy.id, to_string(copy.state), e);
  });
}

void run_executor::finish(const std::shared_ptr<active>& a, run_state s, std::string reason,
                          std::string result_json) {
  auto now = utc_now_ns();
  update(a->id, [&](run_view& v) {
    v.state = s;
    v.reason = reason;
    v.finished_ns = now;
    v.result_json = result_json;
    v.prompt.clear();
    for (const auto& p : a->rcp.prompts)
      if (p.at == "end") v.prompt = p.text;
  }, true);
  if (reason.empty()) spdlog::info("[runs] {} {}", a->id, to_string(s));
  else spdlog::warn("[runs] {} {}: {}", a->id, to_string(s), reason);
  schemas::record r;
  r.cls = schemas::record_class::event;
  r.ts_ns = now;
  r.instrument = "agent";
  r.channel = "run.state";
  r.val = std::string(to_string(s));
  r.run_id = a->id;
  rec_.submit({std::move(r)}, [](boost::system::error_code ec, schemas::seq_range) {
    if (ec) spdlog::error("[runs] storing a run.state event failed: {}", ec.message());
  });
  asio::post(strand_, [self = shared_from_this(), a] {
    {
      std::lock_guard lk(self->mu_);
      if (self->current_ == a) self->current_.reset();
    }
    self->trim_history();
    self->pump();
  });
}

void run_executor::trim_history() {
  std::lock_guard lk(mu_);
  std::size_t done = 0;
  for (const auto& [id, v] : runs_) done += finished(v.state);
  while (done > opt_.history) {
    auto oldest = runs_.end();
    for (auto it = runs_.begin(); it != runs_.end(); ++it)
      if (finished(it->second.state) &&
          (oldest == runs_.end() || it->second.created_ns < oldest->second.created_ns))
        oldest = it;
    if (oldest == runs_.end()) break;
    runs_.erase(oldest);
    --done;
  }
}

void run_executor::pump() {
  std::shared_ptr<active> next;
  {
    std::lock_guard lk(mu_);
    if (current_ || queue_.empty() || stopped_) return;
    next = queue_.front();
    queue_.pop_front();
    current_ = next;
  }
  auto now = utc_now_ns();
  update(next->id, [&](run_view& v) {
    v.state = run_state::running;
    v.started_ns = now;
  }, true);
  spdlog::info("[runs] {} running: recipe {} {} ({})", next->id, next->rcp.name, next->rcp.version,
               next->rcp.method);
  schemas::record r;
  r.cls = schemas::record_class::event;
  r.ts_ns = now;
  r.instrument = "agent";
  r.channel = "run.state";
  r.val = std::string("running");
  r.run_id = next->id;
  rec_.submit({std::move(r)}, [](boost::system::error_code, schemas::seq_range) {});
  auto task = std::make_shared<run_task>(run_task{*this, next});
  asio::co_spawn(strand_, [task]() -> asio::awaitable<void> { co_await task->run(); },
                 [self = shared_from_this(), next, task](std::exception_ptr e) {
                   if (!e) return;
                   std::string why = "internal error";
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& x) {
                     why += std::string(": ") + x.what();
                   } catch (...) {
                   }
                   self->finish(next, run_state::failed, why, {});
                 });
}

std::optional<std::string> run_executor::submit(run_submission s, std::string& error) {
  auto parsed = methods::parse_recipe(s.recipe_toml, s.recipe_file);
  if (!parsed) {
    error = parsed.error().message;
    return std::nullopt;
  }
  auto a = std::make_shared<active>();
  a->rcp = std::move(*parsed);
  a->toml = std::move(s.recipe_toml);
  auto& rcp = a->rcp;
  if (!live_method(rcp.method)) {
    error = rcp.file + ": method '" + rcp.method +
            "' is not measured live by the run executor (diode-iv, mosfet-idvg, cv-mos, "
            "cv-schottky, four-point); analyse its exported data with `semilab-agent analyze`";
    return std::nullopt;
  }
  if (rcp.sweep.repeats != 1) {
    error = rcp.file + ": sweep.repeats = " + std::to_string(rcp.sweep.repeats) +
            ": the run executor measures one sweep per run; submit the run again instead";
    return std::nullopt;
  }
  std::map<std::string, std::string> bindings;
  for (const auto& role : rcp.roles) {
    std::string inst;
    if (auto it = s.bindings.find(role.name); it != s.bindings.end()) inst = it->second;
    else if (!role.instrument.empty()) inst = role.instrument;
    else if (auto d = opt_.default_bindings.find(role.name); d != opt_.default_bindings.end())
      inst = d->second;
    if (inst.empty()) {
      error = rcp.file + ": role '" + role.name +
              "' is bound to no instrument (bind it in the submission, in the recipe's "
              "roles." + role.name + ".instrument, or in [runs.roles] of the agent configuration)";
      return std::nullopt;
    }
    auto runner = find_ ? find_(inst) : nullptr;
    if (!runner) {
      error = "role '" + role.name + "': no SCPI instrument '" + inst + "' is configured";
      return std::nullopt;
    }
    const auto* model = drivers::find_model(runner->config().model);
    bool ok = model && ((role.kind == methods::role_kind::source_measure && model->source_measure) ||
                        (role.kind == methods::role_kind::impedance && model->impedance) ||
                        (role.kind == methods::role_kind::voltmeter && model->voltmeter));
    if (!ok) {
      error = "role '" + role.name + "' (" + std::string(methods::to_string(role.kind)) +
              "): instrument '" + inst + "' (model " + runner->config().model +
              ") does not have that capability";
      return std::nullopt;
    }
    for (const auto& rb : a->roles)
      if (rb.instrument == inst) {
        error = "roles '" + rb.role.name + "' and '" + role.name + "' are bound to the same instrument '" +
                inst + "'";
        return std::nullopt;
      }
    bindings[role.name] = inst;
    a->roles.push_back({role, inst, runner, nullptr, model, {}, {}, {}, {}});
  }
  if (rcp.method == "mosfet-idvg" &&
      std::count_if(a->roles.begin(), a->roles.end(), [](const role_binding& r) {
        return r.role.kind == methods::role_kind::source_measure;
      }) < 2) {
    error = rcp.file + ": mosfet-idvg needs two source-measure roles (gate swept, drain at its level)";
    return std::nullopt;
  }
  auto* sr = a->role(rcp.sweep.role);
  if (!sr) {
    error = rcp.file + ": sweep.role '" + rcp.sweep.role + "' is not a role of the recipe";
    return std::nullopt;
  }
  bool cv = rcp.method == "cv-mos" || rcp.method == "cv-schottky";
  if (cv != (sr->role.kind == methods::role_kind::impedance) ||
      (!cv && sr->role.kind != methods::role_kind::source_measure)) {
    error = rcp.file + ": sweep.role '" + rcp.sweep.role + "' must be " +
            (cv ? "an impedance" : "a source-measure") + " role for " + rcp.method;
    return std::nullopt;
  }
  auto meta = rcp.metadata;
  for (const auto& [k, v] : s.metadata)
    if (!v.empty()) meta[k] = v;
  if (meta["sample"].empty()) {
    error = "a run needs a sample id (--sample, or [metadata] sample in the recipe)";
    return std::nullopt;
  }
  run_view v;
  v.created_ns = utc_now_ns();
  {
    std::lock_guard lk(mu_);
    if (stopped_) {
      error = "the daemon is stopping";
      return std::nullopt;
    }
    std::random_device rd;
    char buf[64];
    std::snprintf(buf, sizeof buf, "run-%lld-%04x", static_cast<long long>(v.created_ns / 1'000'000),
                  static_cast<unsigned>((rd() ^ ++counter_) & 0xffff));
    a->id = buf;
  }
  v.id = a->id;
  v.recipe_name = rcp.name;
  v.recipe_version = rcp.version;
  v.recipe_file = s.recipe_file;
  v.method = rcp.method;
  v.metadata = std::move(meta);
  v.bindings = std::move(bindings);
  v.steps = rcp.sweep.points.size();
  {
    std::lock_guard lk(mu_);
    runs_[v.id] = v;
    queue_.push_back(a);
  }
  db_->post([this, v, toml = a->toml] {
    if (auto e = db_->upsert(v, toml); !e.empty())
      spdlog::error("[runs] {}: persisting the submission failed: {}", v.id, e);
  });
  spdlog::info("[runs] {} queued: recipe {} ({}) for sample {}", v.id, rcp.name, rcp.method,
               v.metadata["sample"]);
  asio::post(strand_, [self = shared_from_this()] { self->pump(); });
  return v.id;
}

run_executor::abort_outcome run_executor::abort(std::string_view id) {
  std::shared_ptr<active> queued;
  {
    std::lock_guard lk(mu_);
    auto it = runs_.find(id);
    if (it == runs_.end()) return abort_outcome::not_found;
    if (finished(it->second.state)) return abort_outcome::already_finished;
    if (current_ && current_->id == id) {
      current_->abort = true;
      // Cancels the operation in flight; :ABOR and :OUTP OFF follow (capabilities.hpp).
      for (auto& rb : current_->roles)
        if (rb.smu) asio::post(rb.ex, [smu = rb.smu] { smu->abort(); });
      spdlog::warn("[runs] {}: abort requested", current_->id);
      return abort_outcome::accepted;
    }
    for (auto q = queue_.begin(); q != queue_.end(); ++q)
      if ((*q)->id == id) {
        queued = *q;
        queue_.erase(q);
        break;
      }
  }
  if (!queued) return abort_outcome::already_finished;
  finish(queued, run_state::aborted, "aborted before it started", {});
  return abort_outcome::accepted;
}

std::optional<run_view> run_executor::get(std::string_view id) const {
  std::lock_guard lk(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

std::vector<run_view> run_executor::list() const {
  std::vector<run_view> out;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, v] : runs_) out.push_back(v);
  }
  std::sort(out.begin(), out.end(),
            [](const run_view& x, const run_view& y) { return x.created_ns > y.created_ns; });
  return out;
}

void run_executor::stop() {
  std::vector<std::string> open;
  {
    std::lock_guard lk(mu_);
    stopped_ = true;
    for (const auto& q : queue_) open.push_back(q->id);
    if (current_) open.push_back(current_->id);
  }
  for (const auto& id : open) abort(id);
}

// ---- HTTP ---------------------------------------------------------------------------------------

namespace {

http_reply reply_json(unsigned status, std::string body) {
  http_reply r;
  r.status = status;
  r.body = std::move(body) + "\n";
  return r;
}
http_reply reply_error(unsigned status, std::string_view msg) {
  return reply_json(status, json::serialize(json::object{{"error", msg}}));
}

}  // namespace

std::optional<http_reply> handle_runs_request(run_executor& ex, const http_request_view& req,
                                              std::string_view target, const std::string& token,
                                              bool loopback_bind) {
  constexpr std::string_view kRuns = "/api/v1/runs";
  if (!target.starts_with(kRuns)) return std::nullopt;
  auto rest = target.substr(kRuns.size());
  if (!rest.empty() && rest.front() != '/') return std::nullopt;
  if (!rest.empty()) rest.remove_prefix(1);
  bool post = req.method == "POST";
  if (post) {
    constexpr std::string_view kBearer = "Bearer ";
    if (!token.empty()) {
      if (!req.authorization.starts_with(kBearer))
        return reply_error(401, "submitting or aborting a run needs a token (Authorization: Bearer ...)");
      if (!same_secret(req.authorization.substr(kBearer.size()), token))
        return reply_error(403, "wrong token");
    } else if (!loopback_bind) {
      return reply_error(403, "runs are refused on a non-loopback bind without a [runs] token or "
                              "[status] operator_token");
    } else if (!req.content_type.starts_with("application/json")) {
      // Without a token, a loopback bind accepts runs from local clients only. A web page in the
      // technician's browser cannot send a JSON body cross-origin without a CORS preflight, which
      // this server never grants, so requiring it keeps other sites from submitting runs (CSRF).
      return reply_error(415, "submitting or aborting a run needs Content-Type: application/json");
    }
  } else if (req.method != "GET" && req.method != "HEAD") {
    auto r = reply_error(405, "use GET or POST");
    r.allow = "GET, HEAD, POST";
    return r;
  }
  if (rest.empty()) {
    if (!post) {
      json::array arr;
      for (const auto& v : ex.list()) arr.push_back(json::parse(run_json(v)));
      return reply_json(200, json::serialize(json::object{{"runs", std::move(arr)}}));
    }
    boost::system::error_code ec;
    auto body = json::parse(req.body, ec);
    if (ec || !body.is_object()) return reply_error(400, "the body must be a JSON object");
    const auto& o = body.as_object();
    run_submission s;
    auto* recipe = o.if_contains("recipe");
    if (!recipe || !recipe->is_string())
      return reply_error(400, "\"recipe\" (the recipe's TOML text) is required");
    s.recipe_toml = std::string(recipe->as_string());
    if (auto* f = o.if_contains("recipe_file"); f && f->is_string())
      s.recipe_file = std::string(f->as_string());
    for (auto [key, dst] : {std::pair{"metadata", &s.metadata}, std::pair{"bindings", &s.bindings}}) {
      auto* m = o.if_contains(key);
      if (!m) continue;
      if (!m->is_object()) return reply_error(400, std::string(key) + " must be an object of strings");
      for (const auto& [k, v] : m->as_object()) {
        if (!v.is_string()) return reply_error(400, std::string(key) + "." + std::string(k) + " must be a string");
        (*dst)[std::string(k)] = std::string(v.as_string());
      }
    }
    std::string err;
    auto id = ex.submit(std::move(s), err);
    if (!id) return reply_error(422, err);
    return reply_json(201, json::serialize(json::object{{"run_id", *id}, {"state", "queued"}}));
  }
  auto slash = rest.find('/');
  auto id = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    if (rest.substr(slash + 1) != "abort") return reply_error(404, "not found");
    if (!post) {
      auto r = reply_error(405, "use POST");
      r.allow = "POST";
      return r;
    }
    switch (ex.abort(id)) {
      case run_executor::abort_outcome::not_found: return reply_error(404, "no such run");
      case run_executor::abort_outcome::already_finished: return reply_error(409, "the run has finished");
      case run_executor::abort_outcome::accepted: break;
    }
    return reply_json(202, json::serialize(json::object{{"run_id", id}, {"abort", "accepted"}}));
  }
  if (post) return reply_error(405, "use GET");
  auto v = ex.get(id);
  if (!v) return reply_error(404, "no such run");
  return reply_json(200, run_json(*v));
}

}  // namespace semilab::agent
