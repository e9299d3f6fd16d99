// Run executor (runs.hpp): lifecycle, persistence, the methods' measurement sequences as
// coroutines over the capability layer, analysis and result records.
#include "runs.hpp"

#include <semilab/drivers/capabilities.hpp>
#include <semilab/methods/analyze.hpp>
#include <semilab/methods/cv.hpp>
#include <semilab/methods/diode.hpp>
#include <semilab/methods/mosfet.hpp>
#include <semilab/methods/recipe.hpp>
#include <semilab/methods/resistivity.hpp>
#include <semilab/schemas/run_metadata.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
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
    case run_state::waiting: return "waiting";
    case run_state::completed: return "completed";
    case run_state::aborted: return "aborted";
    case run_state::failed: return "failed";
  }
  return "failed";
}

std::optional<run_state> parse_run_state(std::string_view s) noexcept {
  for (auto st : {run_state::queued, run_state::running, run_state::waiting, run_state::completed,
                  run_state::aborted, run_state::failed})
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
  return m == "diode-iv" || m == "four-point" || m == "mosfet-idvg" || m == "mosfet-idvd" ||
         m == "cv-mos" || m == "cv-schottky" || m == "check-standard" || m == "vdp" ||
         m == "hall" || m == "tlm";
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
                 {"prompt_seq", r.prompt_seq},
                 {"repeat", r.repeat},
                 {"repeats", r.repeats},
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
    // `waiting` is stored as `running` (runs.hpp: the table's CHECK constraint predates it).
    text(2, std::string(to_string(v.state == run_state::waiting ? run_state::running : v.state)));
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

  // Before the worker starts: the recent runs, newest first (with their recipe TOML when
  // `tomls` is given). `check_standards`: only completed check-standard runs.
  std::vector<run_view> load(std::size_t limit, bool check_standards = false,
                             std::vector<std::string>* tomls = nullptr) {
    std::vector<run_view> out;
    sqlite3_stmt* st = nullptr;
    std::string sql =
        "SELECT run_id, state, recipe_name, recipe_version, method, metadata,"
        " bindings, step, steps, reason, result, created_ns, started_ns,"
        " finished_ns, recipe_toml FROM runs";
    if (check_standards)
      sql += " WHERE method = 'check-standard' AND state = 'completed' ORDER BY finished_ns DESC";
    else
      sql += " ORDER BY created_ns DESC";
    sql += " LIMIT ?1";
    if (sqlite3_prepare_v2(conn, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return out;
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
      if (tomls) tomls->push_back(col(14));
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

// Switch-matrix and magnet roles: the models the executor drives and their SCPI. Matrix rows are
// 1 force HI, 2 force LO, 3 sense HI, 4 sense LO; the column is the contact or pad.
struct switch_commands {
  std::string_view model;
  std::string_view open_all;
  std::string_view close;  // "{list}" = "r!c,r!c,..."
};
constexpr switch_commands kSwitchModels[] = {
    {"keithley7001", ":ROUT:OPEN:ALL", ":ROUT:CLOS (@{list})"},
};
struct magnet_commands {
  std::string_view model;
  std::string_view current;  // "{value}" = coil current, A
  std::string_view output_on, output_off;
};
constexpr magnet_commands kMagnetModels[] = {
    {"kepco-bop", ":CURR {value}", ":OUTP ON", ":OUTP OFF"},
};
const switch_commands* switch_of(const drivers::model_profile* m) {
  for (const auto& s : kSwitchModels)
    if (m && s.model == m->name) return &s;
  return nullptr;
}
const magnet_commands* magnet_of(const drivers::model_profile* m) {
  for (const auto& s : kMagnetModels)
    if (m && s.model == m->name) return &s;
  return nullptr;
}
std::string with_arg(std::string_view templ, std::string_view key, const std::string& value) {
  std::string out(templ);
  if (auto at = out.find(key); at != std::string::npos) out.replace(at, key.size(), value);
  return out;
}

// Writes `cmds` in order on the session (called on its strand), then reads the error queue: its
// answer also proves the commands were executed. `done` gets "" or what went wrong.
void write_checked(drivers::scpi_session* s, std::shared_ptr<const std::vector<std::string>> cmds,
                   std::size_t i, std::function<void(std::string)> done) {
  if (i == cmds->size()) {
    drivers::async_drain_errors(*s, [cmds, done](boost::system::error_code ec,
                                                 std::vector<drivers::scpi_error_entry> e) {
      std::string all;
      for (const auto& c : *cmds) all += (all.empty() ? "" : "; ") + c;
      if (ec) done(all + ": error queue: " + ec.message());
      else if (!e.empty())
        done(all + ": instrument error " + std::to_string(e.front().code) + " " + e.front().text);
      else done({});
    });
    return;
  }
  s->async_write((*cmds)[i], [s, cmds, i, done](boost::system::error_code ec) {
    if (ec) done((*cmds)[i] + ": " + ec.message());
    else write_checked(s, cmds, i + 1, done);
  });
}

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
  // Operator prompts: the executor strand's timer the run waits on, woken by confirm()/abort().
  std::unique_ptr<asio::steady_timer> wait;
  std::atomic<bool> confirmed{false};
  std::uint64_t prompt_seq = 0;  // guarded by the executor's mu_
  std::uint64_t points_before = 0;  // points of the earlier repeats (progress)

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
    ex.update(a->id, [&](run_view& v) { v.step = a->points_before + step; }, false);
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
    // Then the field off and every relay open (nothing is sourcing any more).
    std::optional<std::string> e;
    std::vector<std::string> cmds;
    for (auto& rb : a->roles) {
      if (!rb.session) continue;
      if (const auto* mg = magnet_of(rb.model); mg && rb.role.kind == methods::role_kind::magnet) {
        cmds = {with_arg(mg->current, "{value}", "0"), std::string(mg->output_off)};
        e = co_await scpi_send(rb, cmds);
        if (e) spdlog::warn("[runs] {}: {}: magnet off failed: {}", a->id, rb.instrument, *e);
      }
      if (const auto* sw = switch_of(rb.model);
          sw && rb.role.kind == methods::role_kind::switch_matrix) {
        cmds = {std::string(sw->open_all)};
        e = co_await scpi_send(rb, cmds);
        if (e) spdlog::warn("[runs] {}: {}: opening the relays failed: {}", a->id, rb.instrument, *e);
      }
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
      else if (rb.role.kind == methods::role_kind::voltmeter)
        rb.dmm = std::make_shared<drivers::voltmeter>(*rb.session, *rb.model);
      // switch-matrix and magnet roles: raw SCPI on the session (kSwitchModels, kMagnetModels)
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
    } else if (m == "mosfet-idvd") {
      c.names = {"vds", "id"};  // the gate's level joins as column vgs in the analysis
      c.units = {"V", "A"};
      c.instrument = sw.instrument;
    } else if (m == "cv-mos" || m == "cv-schottky") {
      bool g = sw.role.function == "CPG";
      c.names = {"vg", "cp", g ? "gp" : "b"};
      c.units = {"V", "F", g ? "S" : ""};
      c.instrument = sw.instrument;
    } else if (m == "vdp" || m == "hall") {
      c.names = {"i_from", "i_to", "v_plus", "v_minus", "i", "v"};
      c.units = {"1", "1", "1", "1", "A", "V"};
      if (m == "hall") {
        c.names.insert(c.names.begin() + 4, "b");
        c.units.insert(c.units.begin() + 4, "T");
      }
      c.instrument = dmm ? dmm->instrument : sw.instrument;
    } else if (m == "tlm") {
      const bool iv = dmm || sw.role.source == "current";
      c.names = {"d", iv ? "i" : "v", iv ? "v" : "i"};
      c.units = {"m", iv ? "A" : "V", iv ? "V" : "A"};
      c.instrument = dmm ? dmm->instrument : sw.instrument;
    } else if (m == "four-point" || m == "check-standard" || sw.role.source == "current") {
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

  // SCPI commands to a switch or magnet role, checked against the error queue.
  asio::awaitable<std::optional<std::string>> scpi_send(role_binding& rb,
                                                        const std::vector<std::string>& cmds) {
    auto op = [s = rb.session, c = std::make_shared<const std::vector<std::string>>(cmds)](
                  auto cb) { write_checked(s, c, 0, std::function<void(std::string)>(cb)); };
    auto r = co_await call_on<std::string>(rb.ex, op);
    std::optional<std::string> err;
    if (!r.empty()) err = rb.instrument + " (role " + rb.role.name + "): " + r;
    co_return err;
  }

  role_binding* role_of_kind(methods::role_kind k) {
    for (auto& rb : a->roles)
      if (rb.role.kind == k) return &rb;
    return nullptr;
  }

  // Matrix routes per sweep: vdp the 8 configurations; hall those at zero field and the 4 Hall
  // ones at +B and -B; tlm one pad pair per gap.
  std::size_t routes_per_sweep() const {
    const auto& m = a->rcp.method;
    if (m == "vdp") return methods::vdp_configs().size();
    if (m == "hall") return methods::vdp_configs().size() + 2 * methods::hall_configs().size();
    if (m == "tlm") return a->rcp.device.gaps.size();
    return 1;
  }

  // Source to zero, relays open, then the route closed: force HI/LO on rows 1/2, sense HI/LO on
  // rows 3/4 (0 = that pair stays open). The source never switches live current.
  asio::awaitable<std::optional<std::string>> route(role_binding& src, role_binding& mx, int f_hi,
                                                    int f_lo, int s_hi, int s_lo) {
    std::optional<std::string> err;
    auto z = co_await smu_do(src, [](auto& s, auto h) { s.async_set_level(0.0, h); });
    if (!z) {
      err = src.instrument + ": level 0 before switching: " + err_text(z.error());
      co_return err;
    }
    const auto* sw = switch_of(mx.model);
    std::string list = "1!" + std::to_string(f_hi) + ",2!" + std::to_string(f_lo);
    if (s_hi > 0 && s_lo > 0) list += ",3!" + std::to_string(s_hi) + ",4!" + std::to_string(s_lo);
    std::vector<std::string> cmds{std::string(sw->open_all), with_arg(sw->close, "{list}", list)};
    err = co_await scpi_send(mx, cmds);
    co_return err;
  }

  // Prepends `front` to the points added since `from` (the route's contacts, the gap, the field).
  static void tag_points(curve& c, std::size_t from, const std::vector<double>& front) {
    for (std::size_t i = from; i < c.points.size(); ++i)
      c.points[i].insert(c.points[i].begin(), front.begin(), front.end());
  }

  // van der Pauw and Hall: for each configuration the matrix routes the current pair to the SMU
  // and the voltage pair to the DMM, the SMU steps the current through `levels` (a reversal when
  // they hold both signs), the DMM reads. Hall: the vdp configurations at zero field, then the
  // Hall ones with the magnet at +level and at -level (field reversal), b = +-device.field.
  asio::awaitable<std::optional<std::string>> measure_four_terminal(role_binding& src,
                                                                    role_binding& dmm,
                                                                    const std::vector<double>& levels,
                                                                    curve& c) {
    const bool hall = a->rcp.method == "hall";
    role_binding* mx = role_of_kind(methods::role_kind::switch_matrix);
    role_binding* mag = hall ? role_of_kind(methods::role_kind::magnet) : nullptr;
    const auto* mgc = mag ? magnet_of(mag->model) : nullptr;
    std::optional<std::string> err;
    std::vector<methods::contact_config> cfgs;
    std::vector<double> fields;  // sign of the field per configuration
    for (const auto& k : methods::vdp_configs()) {
      cfgs.push_back(k);
      fields.push_back(0);
    }
    if (hall)
      for (double sgn : {1.0, -1.0})
        for (const auto& k : methods::hall_configs()) {
          cfgs.push_back(k);
          fields.push_back(sgn);
        }
    double field_now = 0;
    std::size_t from = 0;
    drivers::result<void> z;
    std::vector<std::string> cmds;
    std::vector<double> front;
    for (std::size_t j = 0; j < cfgs.size() && !err; ++j) {
      err = should_stop();
      if (err) break;
      if (mag && fields[j] != field_now) {
        // The field changes with no current through the sample.
        z = co_await smu_do(src, [](auto& s, auto h) { s.async_set_level(0.0, h); });
        if (!z) {
          err = src.instrument + ": level 0 before the field: " + err_text(z.error());
          break;
        }
        cmds = {with_arg(mgc->current, "{value}", fmt_num(fields[j] * mag->role.level)),
                std::string(mgc->output_on)};
        err = co_await scpi_send(*mag, cmds);
        if (err) break;
        field_now = fields[j];
      }
      err = co_await route(src, *mx, cfgs[j].i_from, cfgs[j].i_to, cfgs[j].v_plus, cfgs[j].v_minus);
      if (err) break;
      from = c.points.size();
      err = co_await step_smu_dmm(src, dmm, levels, c);
      front = {static_cast<double>(cfgs[j].i_from), static_cast<double>(cfgs[j].i_to),
               static_cast<double>(cfgs[j].v_plus), static_cast<double>(cfgs[j].v_minus)};
      if (hall) front.push_back(fields[j] * a->rcp.device.field);
      tag_points(c, from, front);
    }
    co_return err;
  }

  // TLM: for each gap k the matrix routes pads k and k+1 to the SMU (force rows) and, with a
  // voltmeter role, to the DMM (sense rows: the pad metal, no lead resistance); the SMU sweeps
  // `levels`. Each point carries its gap d.
  asio::awaitable<std::optional<std::string>> measure_tlm(role_binding& src, role_binding* dmm,
                                                          const std::vector<double>& levels,
                                                          curve& c) {
    role_binding* mx = role_of_kind(methods::role_kind::switch_matrix);
    const auto& gaps = a->rcp.device.gaps;
    std::optional<std::string> err;
    std::size_t from = 0;
    std::vector<double> front;
    for (std::size_t k = 0; k < gaps.size() && !err; ++k) {
      err = should_stop();
      if (err) break;
      const int pad = static_cast<int>(k) + 1;
      err = co_await route(src, *mx, pad, pad + 1, dmm ? pad : 0, dmm ? pad + 1 : 0);
      if (err) break;
      from = c.points.size();
      if (dmm) err = co_await step_smu_dmm(src, *dmm, levels, c);
      else err = co_await sweep_smu(src, levels, c);
      front = {gaps[k]};
      tag_points(c, from, front);
    }
    co_return err;
  }

  static std::string fmt_num(double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.9g", v);
    return b;
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
    } else if (rcp.method == "mosfet-idvd") {
      // Output curve: the gate (the other source-measure role) held at its level, the drain
      // swept. A query answered by the gate proves its level is applied before the drain sweep
      // starts (two instruments, two links).
      err = co_await smu_setup(*drain, true);
      if (!err) {
        auto g = co_await smu_measure(*drain);
        if (!g) err = drain->instrument + ": measure: " + err_text(g.error());
      }
      if (!err) err = co_await smu_setup(*sw, false);
      if (!err) err = co_await sweep_smu(*sw, levels, c);
    } else if (rcp.method == "cv-mos" || rcp.method == "cv-schottky") {
      err = co_await sweep_lcr(*sw, levels, c);
    } else if (rcp.method == "vdp" || rcp.method == "hall") {
      err = co_await smu_setup(*sw, false);
      if (!err) err = co_await configure_dmm(*dmm);
      if (!err) err = co_await measure_four_terminal(*sw, *dmm, levels, c);
    } else if (rcp.method == "tlm") {
      err = co_await smu_setup(*sw, false);
      if (!err && dmm) err = co_await configure_dmm(*dmm);
      if (!err) err = co_await measure_tlm(*sw, dmm, levels, c);
    } else {
      err = co_await smu_setup(*sw, false);
      if (!err && dmm) err = co_await configure_dmm(*dmm);
      if (!err && dmm) err = co_await step_smu_dmm(*sw, *dmm, levels, c);
      else if (!err) err = co_await sweep_smu(*sw, levels, c);
    }
    co_return err;
  }

  asio::awaitable<void> run();
  // Lifecycle (runs.hpp): operator prompts and the results of every repeat.
  asio::awaitable<std::optional<std::string>> wait_for_operator(const std::string& text);
  asio::awaitable<std::optional<std::string>> prompt_at(std::string_view stage);
  methods::result<methods::extraction> analyse(const curve& c);
  methods::param_map analysis_params(const curve& c) const;
  std::vector<schemas::record> results(const std::vector<curve>& curves, bool per_repeat,
                                       std::string& failure, std::string& summary_text);
};

// The forward branch of a dual sweep (up to and including the turning point).
static std::size_t forward_count(const methods::recipe& r, std::size_t n) {
  if (!r.sweep.spec.dual || n < 3) return n;
  std::size_t half = (r.sweep.points.size() + 1) / 2;
  return std::min(n, half);
}

asio::awaitable<std::optional<std::string>> run_task::wait_for_operator(const std::string& text) {
  std::optional<std::string> err;
  if (a->abort) {
    err = "aborted";
    co_return err;
  }
  // Sources off while the operator handles the sample (polling may have left an output on
  // before the run leased the instrument; between repeats and at the end it is off already).
  co_await outputs_off();
  std::uint64_t seq = 0;
  {
    std::lock_guard lk(ex.mu_);
    seq = ++a->prompt_seq;
    a->confirmed = false;
  }
  ex.update(a->id, [&](run_view& v) {
    v.state = run_state::waiting;
    v.prompt = text;
    v.prompt_seq = seq;
  }, true);
  spdlog::info("[runs] {} waiting for the operator (prompt {}): {}", a->id, seq, text);
  ex.state_event(a->id, run_state::waiting);
  const auto t_wait = std::chrono::steady_clock::now();
  boost::system::error_code ec;
  while (!a->confirmed && !a->abort) {
    a->wait->expires_at(asio::steady_timer::time_point::max());
    co_await a->wait->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  a->t0 += std::chrono::steady_clock::now() - t_wait;  // waiting is not measuring time
  ex.update(a->id, [&](run_view& v) {
    v.state = run_state::running;
    v.prompt.clear();
    v.prompt_seq = 0;
  }, true);
  if (a->abort) {
    err = "aborted while waiting for the operator";
    co_return err;
  }
  spdlog::info("[runs] {} prompt {} confirmed", a->id, seq);
  ex.state_event(a->id, run_state::running);
  co_return err;
}

asio::awaitable<std::optional<std::string>> run_task::prompt_at(std::string_view stage) {
  std::optional<std::string> err;
  for (std::size_t i = 0; i < a->rcp.prompts.size() && !err; ++i) {
    if (a->rcp.prompts[i].at != stage) continue;
    err = co_await wait_for_operator(a->rcp.prompts[i].text);
  }
  co_return err;
}

asio::awaitable<void> run_task::run() {
  auto& rcp = a->rcp;
  a->t0 = std::chrono::steady_clock::now();
  std::string failure;
  bool aborted = false;
  std::optional<std::string> err;
  const auto& levels = rcp.sweep.points;
  const std::size_t repeats = static_cast<std::size_t>(std::max<std::int64_t>(1, rcp.sweep.repeats));
  std::vector<curve> curves(repeats);
  std::size_t measured = 0;  // repeats started

  // Lease every role's instrument (polling pauses), then build its capability on its strand.
  bool leased = true;
  for (std::size_t i = 0; i < a->roles.size() && leased; ++i) {
    leased = co_await lease(a->roles[i]);
    if (!leased)
      failure = "instrument " + a->roles[i].instrument +
                " is not available (stopped, paused or used by another run)";
  }

  if (failure.empty()) {
    ex.update(a->id, [&](run_view& v) {
      v.steps = levels.size() * routes_per_sweep() * repeats;
      v.repeats = repeats;
    }, false);
    // Outputs are off at every prompt: before the first sweep (nothing is on yet), between
    // repeats and at the end (outputs_off() after each sweep).
    err = co_await prompt_at("start");
    for (std::size_t k = 0; k < repeats && !err; ++k) {
      if (k > 0) err = co_await prompt_at("repeat");
      if (err) break;
      a->points_before = k * levels.size() * routes_per_sweep();
      ex.update(a->id, [k](run_view& v) { v.repeat = k + 1; }, false);
      ++measured;
      err = co_await measure(curves[k]);
      co_await outputs_off();
    }
    if (!err) err = co_await prompt_at("end");
    if (err) {
      if (a->abort) aborted = true;
      std::size_t pts = 0;
      for (std::size_t k = 0; k < measured; ++k) pts += curves[k].points.size();
      failure = a->abort ? "aborted by request after " + std::to_string(pts) + " point(s)" : *err;
    }
  }

  for (std::size_t i = 0; i < a->roles.size(); ++i)
    if (a->roles[i].session) co_await unlease(a->roles[i]);
  curves.resize(measured);
  while (!curves.empty() && curves.back().points.empty()) curves.pop_back();
  if (curves.empty()) {
    ex.finish(a, aborted ? run_state::aborted : run_state::failed,
              failure.empty() ? std::string("no data measured") : failure, {});
    co_return;
  }

  std::string summary_text;
  auto shared_recs = std::make_shared<std::vector<schemas::record>>(
      results(curves, repeats > 1, failure, summary_text));
  // (An error_code as the completion value would make co_await throw: a message instead.)
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

// The analysis parameters (methods/analyze.hpp) of the recipe's device inputs and roles.
methods::param_map run_task::analysis_params(const curve& c) const {
  const auto& rcp = a->rcp;
  const auto& dev = rcp.device;
  auto num = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  methods::param_map pm;
  const auto& m = rcp.method;
  const bool has_t = m != "four-point" && m != "vdp" && m != "hall" && m != "tlm" &&
                     m != "check-standard" && m != "mosfet-idvd";
  if (has_t) pm["temperature"] = num(dev.temperature);
  if (m == "mosfet-idvg" || m == "mosfet-idvd" || m == "cv-mos")
    if (!dev.polarity.empty()) pm["polarity"] = dev.polarity;
  if (m == "mosfet-idvg") {
    for (const auto& rb : a->roles)
      if (rb.role.name != rcp.sweep.role && rb.role.kind == methods::role_kind::source_measure)
        pm["vds"] = num(rb.role.level);
    if (dev.width > 0 && dev.length > 0) {
      pm["width"] = num(dev.width);
      pm["length"] = num(dev.length);
    }
  } else if (m == "cv-mos" || m == "cv-schottky") {
    pm["area"] = num(dev.area);
    if (m == "cv-mos" && c.names.size() > 2 && c.names[2] == "gp")
      pm["frequency"] = num(a->role(rcp.sweep.role)->role.frequency);
  } else if (m == "four-point") {
    pm["probe_spacing"] = num(dev.probe_spacing);
    if (dev.diameter > 0) pm["diameter"] = num(dev.diameter);
    if (dev.thickness > 0) pm["thickness"] = num(dev.thickness);
  } else if (m == "vdp" || m == "hall") {
    if (dev.thickness > 0) pm["thickness"] = num(dev.thickness);
  } else if (m == "tlm") {
    pm["contact_width"] = num(dev.contact_width);
  } else if (m == "check-standard") {
    pm["nominal"] = num(dev.nominal);
  }
  return pm;
}

// Analysis of the forward branch of one curve, through the same code as `analyze`.
methods::result<methods::extraction> run_task::analyse(const curve& c) {
  auto& rcp = a->rcp;
  // The curve as a table of named columns and the recipe's device inputs as parameters:
  // methods::analyze_table is what `semilab-agent analyze METHOD FILE.csv` runs too.
  methods::data_table t;
  t.columns = c.names;
  std::size_t n = forward_count(rcp, c.points.size());
  for (std::size_t i = 0; i < n; ++i) {
    t.rows.push_back(c.points[i]);
    t.quality.push_back(c.quality[i]);
  }
  if (rcp.method == "mosfet-idvd") {
    // One output curve: VGS is the gate role's constant level.
    double vgs = 0;
    for (const auto& rb : a->roles)
      if (rb.role.name != rcp.sweep.role && rb.role.kind == methods::role_kind::source_measure)
        vgs = rb.role.level;
    t.columns.push_back("vgs");
    for (auto& row : t.rows) row.push_back(vgs);
  }
  methods::param_map pm = analysis_params(c);
  auto ex_result = methods::analyze_table(rcp.method, t, pm);

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
  return ex_result;
}

// Records of the measured curves: raw points, parameters (per repeat with the "rep<k>." prefix
// when `per_repeat`, then their mean), run metadata and the summary; `failure` gets the
// analysis error of a single sweep.
std::vector<schemas::record> run_task::results(const std::vector<curve>& curves, bool per_repeat,
                                               std::string& failure, std::string& summary_text) {
  auto& rcp = a->rcp;
  const auto ts_end = ex.rec_.stamp();
  const std::string instrument = curves.front().instrument;
  std::vector<schemas::record> recs;
  // One parameter record (and its ".u" record) per extracted value.
  auto param_records = [&](const std::string& prefix, const methods::parameter& p, std::uint32_t q,
                           json::object& params, std::map<std::string, double>& values) {
    schemas::record r;
    r.cls = schemas::record_class::run_result;
    r.ts_ns = ts_end.ts_ns;
    r.instrument = instrument;
    r.channel = prefix + "param." + p.name;
    r.unit = p.unit;
    r.quality = q | ts_end.quality;
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
  };

  json::array repeat_summaries;
  json::object params;  // the run's parameters: the single sweep's, or the mean over repeats
  std::map<std::string, double> values;
  json::array warnings;
  json::array limit_failures;
  std::uint32_t result_quality = 0;
  bool all_pass = true;
  std::size_t points = 0, analysed = 0;
  std::string first_error, algorithm;
  std::size_t analysed_ok = 0;  // sweeps whose analysis succeeded
  // Per parameter over the repeats: values, uncertainties, unit (numeric parameters only).
  struct stat {
    std::vector<double> v, u;
    std::string unit;
  };
  std::map<std::string, stat> stats;
  std::vector<std::string> order;
  for (std::size_t k = 0; k < curves.size(); ++k) {
    const auto& c = curves[k];
    const std::string prefix = per_repeat ? "rep" + std::to_string(k + 1) + "." : std::string();
    for (std::size_t i = 0; i < c.points.size(); ++i)
      for (std::size_t q = 0; q < c.names.size(); ++q) {
        schemas::record r;
        r.cls = schemas::record_class::run_result;
        r.ts_ns = c.ts[i];
        r.instrument = c.instrument;
        r.channel = prefix + "curve." + c.names[q];
        r.unit = c.units[q];
        r.quality = c.quality[i];
        r.val = c.points[i][q];
        r.run_id = a->id;
        recs.push_back(std::move(r));
      }
    points += c.points.size();
    std::size_t n = forward_count(rcp, c.points.size());
    analysed += n;
    methods::result<methods::extraction> ex_result =
        methods::make_error(methods::errc::insufficient_data, "no data measured");
    if (failure.empty()) ex_result = analyse(c);
    json::object rp;
    std::map<std::string, double> rv;
    json::array rw, rf;
    if (ex_result) {
      result_quality |= ex_result->quality;
      ++analysed_ok;
      if (algorithm.empty()) algorithm = ex_result->version;
      for (const auto& p : ex_result->parameters) {
        param_records(prefix, p, ex_result->quality, per_repeat ? rp : params, per_repeat ? rv : values);
        if (!p.text.empty()) continue;
        auto& s = stats[p.name];
        if (s.v.empty() && std::find(order.begin(), order.end(), p.name) == order.end())
          order.push_back(p.name);
        s.v.push_back(p.value);
        s.u.push_back(p.uncertainty.value_or(0));
        s.unit = p.unit;
      }
      for (const auto& w : ex_result->warnings)
        (per_repeat ? rw : warnings).push_back(json::value((per_repeat ? prefix : "") + w));
      for (const auto& f : methods::check_limits(rcp, per_repeat ? rv : values))
        (per_repeat ? rf : limit_failures).push_back(json::value(f));
    } else if (first_error.empty()) {
      first_error = ex_result.error().message;
    }
    bool pass = ex_result && (per_repeat ? rf.empty() : limit_failures.empty());
    all_pass = all_pass && pass;
    if (per_repeat) {
      json::object rs{{"repeat", k + 1},
                       {"points", c.points.size()},
                       {"analysed_points", n},
                       {"parameters", std::move(rp)},
                       {"warnings", rw},
                       {"limit_failures", rf},
                       {"pass", pass}};
      if (!ex_result) rs["error"] = ex_result.error().message;
      for (auto& w : rw) warnings.push_back(w);
      for (auto& f : rf)
        limit_failures.push_back(json::value("repeat " + std::to_string(k + 1) + ": " +
                                             std::string(f.as_string())));
      repeat_summaries.push_back(std::move(rs));
    }
  }
  if (per_repeat) {
    // The mean over the repeats whose analysis succeeded, as the run's own parameters.
    for (const auto& name : order) {
      const auto& s = stats[name];
      double nn = static_cast<double>(s.v.size());
      double mean = 0, var = 0, uu = 0;
      for (double x : s.v) mean += x / nn;
      for (double x : s.v) var += (x - mean) * (x - mean);
      var = s.v.size() > 1 ? var / (nn - 1) : 0;
      for (double u : s.u) uu += u * u;
      methods::parameter p;
      p.name = name;
      p.value = mean;
      p.unit = s.unit;
      p.uncertainty = std::sqrt(var / nn + uu / (nn * nn));
      param_records("", p, result_quality, params, values);
      params[name].as_object()["repeats"] = s.v.size();
    }
  }
  if (failure.empty() && analysed_ok == 0)
    failure = "analysis: " + (first_error.empty() ? std::string("no data measured") : first_error);
  json::object summary{{"recipe", rcp.name},
                       {"recipe_version", rcp.version},
                       {"method", rcp.method},
                       {"algorithm", std::string()},
                       {"points", points},
                       {"analysed_points", analysed},
                       {"compliance_points", a->compliance_points},
                       {"traceable", !(result_quality & schemas::quality::non_traceable)},
                       {"parameters", std::move(params)},
                       {"warnings", std::move(warnings)},
                       {"limit_failures", limit_failures},
                       {"pass", failure.empty() && all_pass && limit_failures.empty()}};
  if (per_repeat) {
    summary["repeats"] = std::move(repeat_summaries);
    summary["repeats_planned"] = rcp.sweep.repeats;
  }
  summary["algorithm"] = algorithm;
  if (!failure.empty()) summary["error"] = failure;
  summary_text = json::serialize(summary);
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
    r.instrument = instrument;
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
    r.instrument = instrument;
    r.channel = "run.summary";
    r.quality = result_quality;
    if (summary_text.size() > schemas::kMaxTextBytes) {
      // Text values are bounded: the parameters are records of their own anyway.
      summary.erase("warnings");
      summary.erase("parameters");
      summary.erase("repeats");
      summary["truncated"] = true;
      summary_text = json::serialize(summary);
    }
    r.val = summary_text;
    r.run_id = a->id;
    recs.push_back(std::move(r));
  }
  return recs;
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
  // The latest check standard of each instrument (instrument health), newest run first.
  std::vector<std::string> tomls;
  auto cs_runs = d->load(200, true, &tomls);
  for (std::size_t i = 0; i < cs_runs.size(); ++i)
    for (auto& cs : check_standard_of(cs_runs[i], tomls[i]))
      if (!ex->check_std_.contains(cs.instrument)) ex->check_std_[cs.instrument] = std::move(cs);
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
    v.prompt_seq = 0;
  }, true);
  if (s == run_state::completed && a->rcp.method == "check-standard")
    if (auto v = get(a->id)) {
      std::lock_guard lk(mu_);
      for (auto& cs : check_standard_of(*v, a->toml)) check_std_[cs.instrument] = std::move(cs);
    }
  if (reason.empty()) spdlog::info("[runs] {} {}", a->id, to_string(s));
  else spdlog::warn("[runs] {} {}: {}", a->id, to_string(s), reason);
  state_event(a->id, s);
  asio::post(strand_, [self = shared_from_this(), a] {
    {
      std::lock_guard lk(self->mu_);
      if (self->current_ == a) self->current_.reset();
    }
    self->trim_history();
    self->pump();
  });
}

void run_executor::state_event(const std::string& id, run_state s) {
  schemas::record r;
  r.cls = schemas::record_class::event;
  r.ts_ns = utc_now_ns();
  r.instrument = "agent";
  r.channel = "run.state";
  r.val = std::string(to_string(s));
  r.run_id = id;
  rec_.submit({std::move(r)}, [](boost::system::error_code ec, schemas::seq_range) {
    if (ec) spdlog::error("[runs] storing a run.state event failed: {}", ec.message());
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
  next->wait = std::make_unique<asio::steady_timer>(strand_);
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

std::optional<std::string> run_executor::submit(run_submission s, std::string& error,
                                                unsigned* status) {
  if (status) *status = 422;
  if (paused_ && paused_()) {
    if (status) *status = 409;
    error = "acquisition is paused: resume it (semilab-agent resume, or the page) before "
            "submitting a run";
    return std::nullopt;
  }
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
            "' is not measured live by the run executor (diode-iv, mosfet-idvg, mosfet-idvd, "
            "cv-mos, cv-schottky, four-point, check-standard, vdp, hall, tlm); analyse its "
            "exported data with `semilab-agent analyze`";
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
                        (role.kind == methods::role_kind::voltmeter && model->voltmeter) ||
                        (role.kind == methods::role_kind::switch_matrix && switch_of(model)) ||
                        (role.kind == methods::role_kind::magnet && magnet_of(model)));
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
  if (rcp.method == "mosfet-idvd" &&
      std::count_if(a->roles.begin(), a->roles.end(), [](const role_binding& r) {
        return r.role.kind == methods::role_kind::source_measure;
      }) < 2) {
    error = rcp.file + ": mosfet-idvd needs two source-measure roles (drain swept, gate at its level)";
    return std::nullopt;
  }
  if (rcp.method == "vdp" || rcp.method == "hall" || rcp.method == "tlm") {
    auto has = [&](methods::role_kind k) {
      return std::any_of(a->roles.begin(), a->roles.end(),
                         [k](const role_binding& r) { return r.role.kind == k; });
    };
    if (!has(methods::role_kind::switch_matrix)) {
      error = rcp.file + ": " + rcp.method +
              " is measured live through a switch role (kind = \"switch\") routing the contacts";
      return std::nullopt;
    }
    if (rcp.method != "tlm" && !has(methods::role_kind::voltmeter)) {
      error = rcp.file + ": " + rcp.method + " needs a voltmeter role reading the sense pair";
      return std::nullopt;
    }
    for (const auto& rb : a->roles)
      if (rb.role.kind == methods::role_kind::magnet && !(std::fabs(rb.role.level) > 0)) {
        error = rcp.file + ": roles." + rb.role.name +
                ".level (the coil current giving device.field, A) must be non-zero";
        return std::nullopt;
      }
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
  v.repeats = static_cast<std::uint64_t>(std::max<std::int64_t>(1, rcp.sweep.repeats));
  v.steps = rcp.sweep.points.size() * v.repeats;
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
      // Wakes a run waiting for the operator (the timer lives on the executor's strand).
      asio::post(strand_, [a = current_] {
        if (a->wait) a->wait->cancel();
      });
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

run_executor::confirm_outcome run_executor::confirm(std::string_view id,
                                                    std::optional<std::uint64_t> seq) {
  std::lock_guard lk(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) return confirm_outcome::not_found;
  if (it->second.state != run_state::waiting || !current_ || current_->id != id)
    return confirm_outcome::not_waiting;
  if (seq && *seq != current_->prompt_seq) return confirm_outcome::wrong_prompt;
  if (current_->confirmed.exchange(true)) return confirm_outcome::not_waiting;
  asio::post(strand_, [a = current_] {
    if (a->wait) a->wait->cancel();
  });
  return confirm_outcome::accepted;
}

std::vector<std::string> run_executor::unfinished() const {
  std::vector<std::pair<std::int64_t, std::string>> v;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, r] : runs_)
      if (!finished(r.state)) v.emplace_back(r.created_ns, id);
  }
  std::sort(v.begin(), v.end());
  std::vector<std::string> out;
  for (auto& [t, id] : v) out.push_back(std::move(id));
  return out;
}

void run_executor::set_paused_check(std::function<bool()> paused) {
  std::lock_guard lk(mu_);
  paused_ = std::move(paused);
}

std::vector<check_standard_status> run_executor::check_standards() const {
  std::lock_guard lk(mu_);
  std::vector<check_standard_status> out;
  for (const auto& [k, v] : check_std_) out.push_back(v);
  return out;
}

std::vector<check_standard_status> check_standard_of(const run_view& v,
                                                     std::string_view recipe_toml) {
  std::vector<check_standard_status> out;
  if (v.method != "check-standard" || v.state != run_state::completed || v.result_json.empty())
    return out;
  boost::system::error_code ec;
  auto j = json::parse(v.result_json, ec);
  if (ec || !j.is_object()) return out;
  const auto* params = j.as_object().if_contains("parameters");
  if (!params || !params->is_object()) return out;
  auto number = [&](const char* name) -> std::optional<double> {
    const auto* p = params->as_object().if_contains(name);
    if (!p || !p->is_object()) return std::nullopt;
    const auto* x = p->as_object().if_contains("value");
    if (!x || !x->is_number()) return std::nullopt;
    return x->to_number<double>();
  };
  auto dev = number("deviation");
  if (!dev) return out;
  check_standard_status cs;
  cs.run_id = v.id;
  cs.finished_ns = v.finished_ns;
  cs.deviation = *dev;
  cs.r = number("r");
  cs.deviation_rel = number("deviation_rel");
  if (auto rcp = methods::parse_recipe(recipe_toml, v.recipe_file.empty() ? "recipe" : v.recipe_file))
    for (const auto& l : rcp->limits) {
      if (l.parameter == "deviation") {
        cs.min = l.min;
        cs.max = l.max;
      } else if (l.parameter == "deviation_rel") {
        cs.rel_min = l.min;
        cs.rel_max = l.max;
      }
    }
  for (const auto& [role, inst] : v.bindings) {
    cs.instrument = inst;
    out.push_back(cs);
  }
  return out;
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
  if (post && !req.preauthorized) {
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
  } else if (!post && req.method != "GET" && req.method != "HEAD") {
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
    unsigned refused = 422;
    auto id = ex.submit(std::move(s), err, &refused);
    if (!id) return reply_error(refused, err);
    return reply_json(201, json::serialize(json::object{{"run_id", *id}, {"state", "queued"}}));
  }
  auto slash = rest.find('/');
  auto id = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    auto action = rest.substr(slash + 1);
    if (action != "abort" && action != "confirm") return reply_error(404, "not found");
    if (!post) {
      auto r = reply_error(405, "use POST");
      r.allow = "POST";
      return r;
    }
    if (action == "confirm") {
      // Optional {"prompt": N}: confirm only that prompt (a second click must not confirm the
      // next one).
      std::optional<std::uint64_t> seq;
      if (!req.body.empty()) {
        boost::system::error_code ec;
        auto body = json::parse(req.body, ec);
        if (ec || !body.is_object()) return reply_error(400, "the body must be a JSON object");
        if (auto* p = body.as_object().if_contains("prompt")) {
          if (!p->is_int64() || p->as_int64() < 1)
            return reply_error(400, "\"prompt\" must be the prompt's number (1, 2, ...)");
          seq = static_cast<std::uint64_t>(p->as_int64());
        }
      }
      switch (ex.confirm(id, seq)) {
        case run_executor::confirm_outcome::not_found: return reply_error(404, "no such run");
        case run_executor::confirm_outcome::not_waiting:
          return reply_error(409, "the run is not waiting for the operator");
        case run_executor::confirm_outcome::wrong_prompt:
          return reply_error(409, "the run waits for another prompt");
        case run_executor::confirm_outcome::accepted: break;
      }
      return reply_json(202, json::serialize(json::object{{"run_id", id}, {"confirm", "accepted"}}));
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
