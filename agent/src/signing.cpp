#include <semilab/agent/signing.hpp>

#include <fstream>
#include <system_error>

namespace semilab::agent {

std::filesystem::path signing_key_path(const agent_config& cfg) {
  return std::filesystem::path(cfg.data_dir) / "signing.key";
}
std::filesystem::path signing_pub_path(const agent_config& cfg) {
  return std::filesystem::path(cfg.data_dir) / "signing.pub";
}

std::shared_ptr<const schemas::signing_key> load_signing_key(const agent_config& cfg,
                                                             std::string& error) {
  error.clear();
  std::error_code ec;
  if (!std::filesystem::exists(signing_key_path(cfg), ec)) return nullptr;
  auto k = schemas::signing_key::load(signing_key_path(cfg), error);
  if (!k) return nullptr;
  return std::make_shared<const schemas::signing_key>(std::move(*k));
}

int run_enroll(const agent_config& cfg, std::ostream& out, std::ostream& err) {
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  if (ec) {
    err << "semilab-agent enroll: cannot create " << cfg.data_dir << ": " << ec.message() << "\n";
    return 1;
  }
  std::string why;
  auto key = load_signing_key(cfg, why);
  if (!key && !why.empty()) {
    err << "semilab-agent enroll: " << why << " (move it away to enroll a new key)\n";
    return 1;
  }
  bool created = false;
  if (!key) {
    auto k = schemas::signing_key::generate();
    if (!k) {
      err << "semilab-agent enroll: key generation failed (OpenSSL)\n";
      return 1;
    }
    if (!k->save(signing_key_path(cfg), why)) {
      err << "semilab-agent enroll: " << why << "\n";
      return 1;
    }
    key = std::make_shared<const schemas::signing_key>(std::move(*k));
    created = true;
  }
  const auto hex = schemas::public_key_hex(key->public_key());
  {
    std::ofstream pub(signing_pub_path(cfg), std::ios::trunc);
    pub << hex << " " << cfg.id << " " << key->key_id() << "\n";
    if (!pub) {
      err << "semilab-agent enroll: cannot write " << signing_pub_path(cfg).string() << "\n";
      return 1;
    }
  }
  out << cfg.id << " " << key->key_id() << " " << hex << "\n";
  err << (created ? "created " : "kept the existing ") << signing_key_path(cfg).string()
      << "; batches are signed from the next start of the agent.\n"
      << "At central: semilab-central agents approve " << cfg.id << " --key " << hex
      << " --config CENTRAL.toml\n";
  return 0;
}

}  // namespace semilab::agent
