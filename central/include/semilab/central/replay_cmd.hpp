#pragma once
// `semilab-central replay`: asks an agent to re-send a range of its retained (acked) records,
// e.g. after this central was restored from a backup. Publishes a signed replay command
// (schemas/command.hpp) on the agent's cmd topic; ingest deduplicates what comes back.
#include <semilab/central/config.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace semilab::central {

struct replay_request {
  std::string agent_id;
  std::string site;  // "" = looked up in the store (the agent must have sent a batch)
  std::uint64_t store_epoch = 0;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::chrono::milliseconds timeout{10'000};  // connect + PUBACK
};

// Exit codes: 0 published (the broker acknowledged it; the agent gets it when connected, its
// session queues it meanwhile), 1 broker or store unreachable, 2 bad request or no command key.
int run_replay(const central_config& cfg, const replay_request& req, std::FILE* out,
               std::FILE* err);

}  // namespace semilab::central
