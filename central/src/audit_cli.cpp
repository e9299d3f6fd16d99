// `semilab-central keygen` and `semilab-central audit ...` (central/include/semilab/central/audit.hpp).
#include <semilab/central/app.hpp>
#include <semilab/central/audit.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace semilab::central {

namespace sc = semilab::schemas;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<storage> open_store(const central_config& cfg, open_mode mode, const char* what,
                                    std::FILE* err) {
  std::string why;
  auto db = open_storage(storage_options_from(cfg, mode), why);
  if (!db) {
    std::fprintf(err, "semilab-central: %s: store: %s: %s\n", what, db.error().message().c_str(),
                 why.c_str());
    return nullptr;
  }
  return std::move(*db);
}

fs::path head_dir(const central_config& cfg) {
  if (!cfg.central.audit_head_dir.empty()) return cfg.central.audit_head_dir;
  return fs::path(cfg.central.data_dir) / "audit-heads";
}

// The newest head file in `dir` (by its exported_ns); empty when there is none.
std::optional<head_file> newest_head(const fs::path& dir, std::string& which, std::FILE* err) {
  std::optional<head_file> best;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const auto name = f.path().filename().string();
    if (name.rfind("audit-head-", 0) != 0 || f.path().extension() != ".json") continue;
    std::ifstream in(f.path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto h = decode_head_file(ss.str());
    if (!h) {
      std::fprintf(err, "semilab-central: audit: %s: not a head file, ignored\n",
                   f.path().c_str());
      continue;
    }
    if (!best || h->exported_ns > best->exported_ns) {
      best = std::move(*h);
      which = f.path().string();
    }
  }
  return best;
}

}  // namespace

int run_keygen(const central_config& cfg, const std::string& out_file, std::FILE* out,
               std::FILE* err) {
  const std::string file = out_file.empty() ? cfg.central.signing_key_file : out_file;
  if (file.empty()) {
    std::fprintf(err, "semilab-central: keygen: give --out FILE or set [central] "
                      "signing_key_file\n");
    return kExitUsage;
  }
  auto key = sc::signing_key::generate();
  std::string why;
  if (!key || !key->save(file, why)) {
    std::fprintf(err, "semilab-central: keygen: %s\n", key ? why.c_str() : "key generation failed");
    return kExitRuntime;
  }
  // stdout: the public key agents pin ([sync] central_public_keys); the private key stays in
  // the file (0600), to be copied to every central instance.
  std::fprintf(out, "%s\n", sc::public_key_hex(key->public_key()).c_str());
  std::fprintf(err, "central key %s written to %s (mode 0600); copy it to every central instance "
                    "and pin the public key on the agents\n",
               key->key_id().c_str(), file.c_str());
  return kExitOk;
}

int run_audit_export_head(const central_config& cfg, std::FILE* out, std::FILE* err) {
  auto db = open_store(cfg, open_mode::read_only, "audit export-head", err);
  if (!db) return kExitRuntime;
  std::optional<sc::signing_key> signer;
  std::string why;
  if (!cfg.central.signing_key_file.empty()) {
    auto k = sc::signing_key::load(cfg.central.signing_key_file, why);
    if (!k) {
      std::fprintf(err, "semilab-central: audit export-head: %s\n", why.c_str());
      return kExitUsage;
    }
    signer = std::move(*k);
  } else {
    std::fprintf(err, "semilab-central: audit export-head: warning: no [central] "
                      "signing_key_file, the head is unsigned\n");
  }
  std::string path;
  if (export_heads(*db, head_dir(cfg), cfg.central.instance, signer ? &*signer : nullptr,
                   now_ns(), path, why)) {
    std::fprintf(err, "semilab-central: audit export-head: %s\n", why.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%s\n", path.c_str());
  return kExitOk;
}

int run_audit_verify(const central_config& cfg, std::FILE* out, std::FILE* err) {
  auto db = open_store(cfg, open_mode::read_only, "audit verify", err);
  if (!db) return kExitRuntime;
  audit_verify_options o;
  if (cfg.retention.batch_ledger_days > 0)
    o.ledger_retention_before_ns = now_ns() - cfg.retention.batch_ledger_days * 86'400'000'000'000;
  std::string which;
  o.head = newest_head(head_dir(cfg), which, err);
  if (!cfg.central.signing_key_file.empty()) {
    std::string why;
    auto k = sc::signing_key::load(cfg.central.signing_key_file, why);
    if (!k) {
      std::fprintf(err, "semilab-central: audit verify: %s\n", why.c_str());
      return kExitUsage;
    }
    o.central_key = k->public_key();
  }
  auto rep = audit_verify(*db, o);
  if (!rep) {
    std::fprintf(err, "semilab-central: audit verify: %s: %s\n", rep.error().message().c_str(),
                 db->last_error().c_str());
    return kExitRuntime;
  }
  for (const auto& f : rep->findings)
    std::fprintf(out, "FAIL %s%s%s: %s\n", f.chain.empty() ? "(head)" : f.chain.c_str(),
                 f.seq ? " seq " : "", f.seq ? std::to_string(f.seq).c_str() : "", f.what.c_str());
  std::fprintf(out, "%zu chains, %zu entries, %zu batch ledger rows checked, %zu not yet audited; "
                    "head %s; %zu findings\n",
               rep->chains, rep->entries, rep->batches_checked, rep->pending_batches,
               rep->head_checked ? which.c_str() : "(none exported)", rep->findings.size());
  return rep->findings.empty() ? kExitOk : kExitRuntime;
}

int run_audit_verify_batches(const central_config& cfg, std::FILE* out, std::FILE* err) {
  auto db = open_store(cfg, open_mode::read_only, "audit verify-batches", err);
  if (!db) return kExitRuntime;
  auto rep = verify_stored_batches(*db);
  if (!rep) {
    std::fprintf(err, "semilab-central: audit verify-batches: %s: %s\n",
                 rep.error().message().c_str(), db->last_error().c_str());
    return kExitRuntime;
  }
  for (const auto& f : rep->failures) std::fprintf(out, "FAIL %s\n", f.c_str());
  std::fprintf(out, "%zu signatures verified, %zu failed, %zu unsigned, %zu signed but stored "
                    "without their header (not re-verifiable)\n",
               rep->verified, rep->failures.size(), rep->unsigned_batches, rep->not_reverifiable);
  return rep->failures.empty() ? kExitOk : kExitRuntime;
}

int run_audit_log(const central_config& cfg, const std::string& chain, std::size_t limit,
                  std::FILE* out, std::FILE* err) {
  auto db = open_store(cfg, open_mode::read_only, "audit log", err);
  if (!db) return kExitRuntime;
  const sql_param p[] = {sql_param{true, 0, chain},
                         sql_param{false, static_cast<std::int64_t>(limit), {}}};
  auto rows = db->query(
      "SELECT chain, seq, at_ns, actor, action, target, reason, old_value, new_value "
      "FROM audit_log WHERE (?1 = '' OR chain = ?1) ORDER BY at_ns DESC, chain, seq DESC LIMIT ?2",
      p);
  if (!rows) {
    std::fprintf(err, "semilab-central: audit log: %s\n", db->last_error().c_str());
    return kExitRuntime;
  }
  for (const auto& r : *rows) {
    std::fprintf(out, "%s #%s at_ns=%s who=%s what=%s on=%s why=%s\n", r[0].value_or("").c_str(),
                 r[1].value_or("").c_str(), r[2].value_or("").c_str(), r[3].value_or("").c_str(),
                 r[4].value_or("").c_str(), r[5].value_or("").c_str(), r[6].value_or("").c_str());
    if (r[7]) std::fprintf(out, "  old: %s\n", r[7]->c_str());
    if (r[8]) std::fprintf(out, "  new: %s\n", r[8]->c_str());
  }
  return kExitOk;
}

}  // namespace semilab::central
