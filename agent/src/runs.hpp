#pragma once
// Run executor: a recipe (methods/recipe.hpp) plus sample metadata becomes a run, executed by the
// daemon through the instrument sessions it already holds (instruments accept one client).
//
// Lifecycle: queued -> running (<-> waiting) -> completed | aborted | failed, persisted in the
// outbox database (table `runs`, schemas/sql/agent/0004_runs.sql). At start the executor closes
// every run a previous daemon left queued or running as failed, with the reason. One run executes
// at a time; the others wait in submission order.
//
// Operator prompts ([[prompt]] at = start | repeat | end): the run waits in state `waiting`, its
// sources off, until the prompt is confirmed (confirm(): POST /api/v1/runs/ID/confirm or
// `semilab-agent runs confirm ID`) or the run is aborted. `start` comes once the instruments are
// leased and before any output goes on; `repeat` before every repeat but the first; `end` after
// the last sweep (outputs off, results not yet stored). Time spent waiting does not count
// against abort.max_duration. `waiting` is a sub-state of running: the runs table stores it as
// `running` (its CHECK constraint predates prompts), so a daemon killed while a run waits fails
// that run at the next start like any running one.
//
// Repeats (sweep.repeats = N): the sweep is measured N times; progress counts the points of all
// of them (steps = points x N). With N > 1 each repeat's records carry the prefix "rep<k>."
// (rep1.curve.v, rep2.param.n, ...), the run's own param.<name> records hold the mean over the
// repeats whose analysis succeeded (uncertainty: sqrt(s^2/n + sum(u_i^2)/n^2)), and the summary
// lists every repeat; the run passes when every repeat is within the recipe's limits.
//
// Roles: each recipe role is bound to a configured SCPI instrument: the submission's binding,
// else the role's `instrument` key in the recipe, else [runs.roles] in the agent configuration.
// The instrument's model must have the role's capability (source-measure, impedance, voltmeter).
// While a run owns an instrument, that instrument's polling pauses (instrument_runner::lease);
// afterwards its init sequence runs again and polling resumes.
//
// Methods run live: diode-iv and four-point (one source-measure role: instrument-side list
// sweeps in chunks; four-point with a voltmeter role steps the current and reads the voltmeter),
// mosfet-idvg (the swept gate role stepped point by point, the drain role held at its level and
// measured), mosfet-idvd (the gate role held at its level, the swept drain role in list sweeps:
// one output curve), cv-mos and cv-schottky (impedance role: DC-bias list sweeps in chunks),
// check-standard (a reference resistor: like four-point, current sourced, the voltmeter role
// optional). The analysis is methods::analyze_table on the curve's named columns, the code
// `semilab-agent analyze` runs. Dual sweeps
// are measured both ways; the analysis uses the forward branch. Safety: compliance is set before
// any output goes on; an abort cancels the operation in flight and switches every source off
// (capabilities.hpp); every ending, failed ones included, switches the outputs off.
//
// Results: the raw curve (one run_result record per point and quantity, channel "curve.<q>"),
// the extracted parameters ("param.<name>", with "param.<name>.u" for the uncertainty), and a
// JSON summary ("run.summary") go to the outbox with the run id, then flow to central like any
// record; lifecycle changes are events ("run.state"). A run is `completed` only after its
// records are committed.
//
// Threads: the executor's coroutines run on their own strand of the daemon's io_context; every
// capability call is posted to its instrument's strand and the result posted back. SQLite writes
// of the `runs` table happen on the executor's own worker thread ("runs-db"): a second, rare
// writer next to the outbox's (WAL, busy timeout). Public members are thread-safe.
#include <semilab/agent/recorder.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "health.hpp"
#include "status_routes.hpp"

namespace semilab::agent {

class instrument_runner;

enum class run_state { queued, running, waiting, completed, aborted, failed };
[[nodiscard]] std::string_view to_string(run_state s) noexcept;
[[nodiscard]] std::optional<run_state> parse_run_state(std::string_view s) noexcept;
[[nodiscard]] inline bool finished(run_state s) noexcept {
  return s == run_state::completed || s == run_state::aborted || s == run_state::failed;
}

struct run_submission {
  std::string recipe_toml;
  std::string recipe_file = "recipe.toml";  // for messages
  std::map<std::string, std::string> metadata;  // sample, wafer, lot, die, operator, ...
  std::map<std::string, std::string> bindings;  // role -> instrument id
};

struct run_view {
  std::string id;
  run_state state = run_state::queued;
  std::string recipe_name, recipe_version, method, recipe_file;
  std::string reason;  // failed / aborted: why
  std::uint64_t step = 0, steps = 0;
  std::int64_t created_ns = 0, started_ns = 0, finished_ns = 0;
  std::map<std::string, std::string> metadata, bindings;
  std::string prompt;       // the operator prompt of the present stage, if any
  std::uint64_t prompt_seq = 0;  // number of the prompt being waited for (1, 2, ...); 0 = none
  std::uint64_t repeat = 0, repeats = 1;  // the repeat being measured (1-based; 0 = not yet)
  std::string result_json;  // summary once finished ("" before)
};

[[nodiscard]] std::string run_json(const run_view& r);

// The latest completed check-standard run of an instrument (method "check-standard"); feeds
// instrument health (health.hpp judges it against the recipe's limits).
struct check_standard_status : health::check_standard {
  std::string instrument;
};
// From a finished run: its bindings, its summary JSON and the recipe TOML it ran. nullopt when
// the run is no check-standard run or holds no deviation. One entry per bound instrument.
[[nodiscard]] std::vector<check_standard_status> check_standard_of(const run_view& v,
                                                                   std::string_view recipe_toml);

struct runs_options {
  std::filesystem::path db_path;                        // the outbox database
  std::map<std::string, std::string> default_bindings;  // [runs.roles]
  std::size_t history = 50;                             // finished runs kept for the API
  // Calibration due dates by instrument id ("YYYY-MM-DD"): a past date marks results
  // non-traceable.
  std::map<std::string, std::string> calibration_due;
};

class run_executor : public std::enable_shared_from_this<run_executor> {
 public:
  using find_runner = std::function<std::shared_ptr<instrument_runner>(std::string_view id)>;

  // Opens the runs table, closes runs a previous daemon left open (failed, with the reason) and
  // loads the recent ones. nullptr and `error` set when the database cannot be used.
  static std::shared_ptr<run_executor> create(boost::asio::io_context& io, runs_options opt,
                                              recorder& rec, find_runner find, std::string& error);
  ~run_executor();
  run_executor(const run_executor&) = delete;
  run_executor& operator=(const run_executor&) = delete;

  // Validates (recipe, method, roles, instruments, metadata) and queues. The run id, or
  // nullopt with `error` naming what is wrong.
  // `status` (when given) gets the HTTP status of a refusal: 409 while acquisition is paused,
  // 422 otherwise.
  std::optional<std::string> submit(run_submission s, std::string& error,
                                    unsigned* status = nullptr);
  enum class abort_outcome { accepted, not_found, already_finished };
  abort_outcome abort(std::string_view id);
  // Confirms the prompt a run waits for; `seq` (when given) must name that prompt, so that a
  // second click does not confirm the next one.
  enum class confirm_outcome { accepted, not_found, not_waiting, wrong_prompt };
  confirm_outcome confirm(std::string_view id, std::optional<std::uint64_t> seq = std::nullopt);
  // Runs queued, running or waiting (pause refuses while there is one), oldest first.
  [[nodiscard]] std::vector<std::string> unfinished() const;
  // Acquisition paused (control.hpp): submissions are refused while it says true.
  void set_paused_check(std::function<bool()> paused);
  // The latest completed check-standard run per instrument (loaded at start, then updated).
  [[nodiscard]] std::vector<check_standard_status> check_standards() const;
  [[nodiscard]] std::optional<run_view> get(std::string_view id) const;
  [[nodiscard]] std::vector<run_view> list() const;  // newest first
  // Daemon shutdown: aborts the running run (outputs off), refuses new ones, and waits for the
  // database worker to finish its writes. Call from the io thread, before io.run() returns.
  void stop();

  struct active;  // a run being executed (runs.cpp)
  struct db;      // the runs table on its worker thread

 private:
  run_executor(boost::asio::io_context& io, runs_options opt, recorder& rec, find_runner find);
  void pump();  // starts the next queued run when idle (strand)
  void update(const std::string& id, const std::function<void(run_view&)>& f, bool persist);
  void finish(const std::shared_ptr<active>& a, run_state s, std::string reason,
              std::string result_json);
  void trim_history();
  void state_event(const std::string& id, run_state s);  // a "run.state" event record

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  runs_options opt_;
  recorder& rec_;
  find_runner find_;
  std::unique_ptr<db> db_;
  mutable std::mutex mu_;
  std::map<std::string, run_view, std::less<>> runs_;
  std::deque<std::shared_ptr<active>> queue_;
  std::shared_ptr<active> current_;
  bool stopped_ = false;
  std::uint64_t counter_ = 0;
  std::function<bool()> paused_;
  std::map<std::string, check_standard_status, std::less<>> check_std_;  // by instrument

  friend struct run_task;
};

// The /api/v1/runs endpoints (status_routes.hpp):
//   POST /api/v1/runs               {"recipe": TOML text, "recipe_file": name, "metadata": {...},
//                                    "bindings": {role: instrument}} -> 201 {"run_id", "state"}
//   GET  /api/v1/runs               {"runs": [run, ...]} newest first (the status page)
//   GET  /api/v1/runs/ID            one run: state, step/steps, reason, result
//   POST /api/v1/runs/ID/abort      202 accepted, 404 unknown, 409 already finished
//   POST /api/v1/runs/ID/confirm    [{"prompt": seq}] 202 accepted, 404 unknown, 409 not waiting
//                                   (or waiting for another prompt than `seq`)
// POSTs need "Authorization: Bearer <token>" when a token is configured ([runs] token, else
// [status] operator_token); without any token they are accepted only on a loopback bind.
// nullopt: not a runs route.
[[nodiscard]] std::optional<http_reply> handle_runs_request(run_executor& ex,
                                                            const http_request_view& req,
                                                            std::string_view target,
                                                            const std::string& token,
                                                            bool loopback_bind);

}  // namespace semilab::agent
