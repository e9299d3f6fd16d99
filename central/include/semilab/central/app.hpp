#pragma once
// `semilab-central run`: the whole service in one call (used by main.cpp and by tests that run
// the service in-process).
#include <semilab/central/config.hpp>

#include <cstdio>
#include <string_view>

namespace semilab::central {

// Exit codes of semilab-central (documented in `semilab-central --help`).
inline constexpr int kExitOk = 0;       // clean shutdown (SIGINT/SIGTERM) or command done
inline constexpr int kExitRuntime = 1;  // store, listener or broker client could not start
inline constexpr int kExitUsage = 2;    // bad command line or configuration

// Level of every component logger ("trace" ... "off"); unknown names mean "info".
void set_log_level(std::string_view level);

// Runs until SIGINT or SIGTERM, then shuts down cleanly: stop accepting HTTP connections, finish
// the in-flight group commit and publish its acks, publish the retained offline state, disconnect.
// Writes "http HOST:PORT" (the bound address) as the first line on `out`; logs go to stderr.
int run_service(const central_config& cfg, std::FILE* out);

}  // namespace semilab::central
