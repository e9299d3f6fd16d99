#pragma once
// The agent's Ed25519 batch-signing key: `semilab-agent enroll` creates it in the data dir
// (signing.key, PEM, mode 0600; signing.pub, the public key in hex for the admin), and the daemon
// signs every batch with it when it exists (schemas/signing.hpp, schemas/WIRE.md "Signature").
#include <semilab/agent/config.hpp>
#include <semilab/schemas/signing.hpp>

#include <filesystem>
#include <memory>
#include <ostream>
#include <string>

namespace semilab::agent {

std::filesystem::path signing_key_path(const agent_config& cfg);
std::filesystem::path signing_pub_path(const agent_config& cfg);

// The key the daemon signs with: null and `error` empty when there is none (batches go unsigned),
// null and `error` set when the file exists but is unusable (the daemon refuses to start rather
// than silently upload unsigned batches that central would refuse).
std::shared_ptr<const schemas::signing_key> load_signing_key(const agent_config& cfg,
                                                             std::string& error);

// `semilab-agent enroll`: creates the key pair if absent (an existing key is kept: re-running
// prints the same public key), writes signing.pub, prints "AGENT_ID KEY_ID PUBLIC_KEY_HEX" on
// `out` and the approval command for central on `err`. Exit 0, or 1 with the reason.
int run_enroll(const agent_config& cfg, std::ostream& out, std::ostream& err);

}  // namespace semilab::agent
