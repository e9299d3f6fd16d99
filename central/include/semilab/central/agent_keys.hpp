#pragma once
// Approved Ed25519 public keys of agents (0005_agent_keys.sql / central-pg 0004), the same code
// for both backends through storage::query/execute. Batch verification (ingest.cpp) looks them up;
// `semilab-central agents approve|keys|revoke-key` manage them.
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/signing.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::central {

struct agent_key_row {
  std::string agent_id;
  std::string key_id;
  schemas::ed25519_public_key public_key{};
  std::int64_t approved_ns = 0;
  std::optional<std::int64_t> revoked_ns;
};

// Approves `pub` for `agent_id`. Approving a key already approved changes nothing (false);
// approving a revoked key again makes it valid again (true). The agent id must be a valid id.
result<bool> approve_agent_key(storage& db, std::string_view agent_id,
                               const schemas::ed25519_public_key& pub, std::int64_t now_ns,
                               std::string& error);
// Keys of one agent ("" = all agents), ordered by agent and approval time.
result<std::vector<agent_key_row>> list_agent_keys(storage& db, std::string_view agent_id,
                                                   bool include_revoked);
// Revokes one key of an agent; returns the rows changed (0: no such valid key).
result<std::uint64_t> revoke_agent_key(storage& db, std::string_view agent_id,
                                       std::string_view key_id, std::int64_t now_ns);

// The public key given on the command line: 64 hex digits, or a file holding them (as printed by
// `semilab-agent enroll`).
result<schemas::ed25519_public_key> read_public_key_arg(std::string_view file_or_hex,
                                                        std::string& error);

}  // namespace semilab::central
