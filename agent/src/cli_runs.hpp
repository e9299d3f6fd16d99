#pragma once
// `semilab-agent run-recipe RECIPE --sample ID [--wafer W] [--lot L] [--die D] [--operator O]
//  [--bind ROLE=INSTRUMENT ...] [--no-follow] [--timeout S] [--json] -c CONFIG`
// Submits the recipe to the running daemon (POST /api/v1/runs on its status server, with the
// [runs] token or the [status] operator_token as bearer token) and follows the run's progress
// (step i of n, repeat k of N, state, operator prompts on stderr) until it ends. Ctrl-C asks the
// daemon to abort the run (outputs off) and keeps following until it has. When the run waits for
// the operator (state `waiting`), the prompt is printed and Enter confirms it (POST
// /api/v1/runs/ID/confirm naming the prompt's number); with stdin closed or not a terminal the
// prompt is only shown: confirm it with `runs confirm ID` or on the status page.
//
// `semilab-agent runs list|show ID|confirm ID [--prompt N]|abort ID -c CONFIG [--json]`: the
// daemon's runs (GET /api/v1/runs), one run, confirming the prompt a run waits for, aborting.
// Exit codes as run-recipe: 0 done, 1 refused (e.g. 409: not waiting), 2 usage, 3 the daemon's
// status server is not reachable, 404 an unknown run: 1.
// stdout: the run's parameters (customary units) or, with --json, the run object of
// GET /api/v1/runs/ID. Exit codes: 0 completed and within the recipe's limits, 1 failed,
// 2 usage error or the daemon refused the submission (the reason on stderr), 3 the daemon's
// status server is not reachable, 4 --timeout passed (the run goes on), 5 aborted,
// 6 completed with a parameter outside the recipe's limits.
#include <CLI/CLI.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace semilab::agent {

class run_recipe_cli {
 public:
  explicit run_recipe_cli(CLI::App& app);
  [[nodiscard]] bool parsed() const;  // run-recipe or runs
  int run();

 private:
  int runs_cmd();
  CLI::App* cmd_ = nullptr;
  CLI::App *runs_ = nullptr, *list_ = nullptr, *show_ = nullptr, *confirm_ = nullptr,
           *abort_ = nullptr;
  std::string run_id_;
  std::int64_t prompt_ = 0;
  std::string config_, recipe_, sample_, wafer_, lot_, die_, operator_;
  std::vector<std::string> bind_;
  bool no_follow_ = false, json_ = false;
  double timeout_s_ = 0;
};

}  // namespace semilab::agent
