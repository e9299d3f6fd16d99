#pragma once
#include <semilab/agent/config.hpp>

namespace semilab::agent {

// Runs the agent until SIGINT/SIGTERM: instruments polled on their strands, every reading
// committed to the outbox first, the sync engine uploading and deleting on central's acks.
// Returns the process exit code (0 clean stop, 1 runtime failure).
int run_daemon(const agent_config& cfg);

// `semilab-agent status --json`: reads the outbox (daemon running or not) and the daemon's live
// status file when the daemon runs. Returns the exit code.
int print_status(const agent_config& cfg, bool json);

// `semilab-agent queue dead-letters [--retry] [--json]`. Returns the exit code.
int run_queue_dead_letters(const agent_config& cfg, bool retry, bool json);

}  // namespace semilab::agent
