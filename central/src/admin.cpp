// Admin commands of semilab-central that work on the store directly (no service running needed).
#include <cinttypes>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/app.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/backup.hpp>
#include <semilab/central/restore_replay.hpp>
#include <semilab/schemas/frame.hpp>

namespace semilab::central {

namespace {

std::string utc(std::int64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>((ns / 1'000'000) % 1000));
  return out;
}

result<std::unique_ptr<storage>> open_for_admin(const central_config& cfg, std::FILE* err) {
  auto so = storage_options_from(cfg, open_mode::read_only);
  std::string msg;
  auto s = open_storage(so, msg);
  if (!s) {
    const std::string where =
        so.backend == storage_backend::postgresql ? redact_url(so.url) : so.sqlite_path;
    std::fprintf(err, "semilab-central: store %s: %s: %s\n", where.c_str(),
                 s.error().message().c_str(), msg.c_str());
  }
  return s;
}

}  // namespace

storage_options storage_options_from(const central_config& cfg, open_mode mode) {
  storage_options so;
  so.backend =
      cfg.store.backend == "postgresql" ? storage_backend::postgresql : storage_backend::sqlite;
  so.sqlite_path = (std::filesystem::path(cfg.central.data_dir) / "central.db").string();
  so.url = cfg.store.url;
  so.mode = mode;
  so.busy_timeout = std::chrono::milliseconds(cfg.store.busy_timeout_ms);
  return so;
}

int run_quarantine_list(const central_config& cfg, std::size_t limit, std::int64_t before_id,
                        std::FILE* out, std::FILE* err) {
  auto s = open_for_admin(cfg, err);
  if (!s) return kExitRuntime;
  auto rows = (*s)->quarantine_list(limit, before_id);
  if (!rows) {
    std::fprintf(err, "semilab-central: quarantine list: %s\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%-8s %-24s %-20s %10s  %s\n", "ID", "RECEIVED (UTC)", "AGENT", "BYTES",
               "REASON / TOPIC");
  for (const auto& q : *rows)
    std::fprintf(out, "%-8" PRId64 " %-24s %-20s %10" PRIu64 "  %s  [%s]\n", q.id,
                 utc(q.received_ns).c_str(), q.agent_id.empty() ? "-" : q.agent_id.c_str(), q.bytes,
                 q.reason.c_str(), q.topic.c_str());
  std::fprintf(out, "%zu entr%s\n", rows->size(), rows->size() == 1 ? "y" : "ies");
  return kExitOk;
}

namespace {
// `create`: make data_dir first (tokens may be created before the service ever ran).
result<std::unique_ptr<storage>> open_writer(const central_config& cfg, std::FILE* err,
                                             bool create = false) {
  auto so = storage_options_from(cfg, open_mode::read_write);
  std::error_code fec;
  if (create && so.backend == storage_backend::sqlite)
    std::filesystem::create_directories(cfg.central.data_dir, fec);
  std::string msg;
  auto s = open_storage(so, msg);
  if (!s) {
    const std::string where =
        so.backend == storage_backend::postgresql ? redact_url(so.url) : so.sqlite_path;
    std::fprintf(err, "semilab-central: store %s: %s: %s\n", where.c_str(),
                 s.error().message().c_str(), msg.c_str());
  }
  return s;
}
}  // namespace

int run_tokens_create(const central_config& cfg, const std::string& role_name,
                      const std::string& name, std::FILE* out, std::FILE* err) {
  auto r = parse_role(role_name);
  if (!r) {
    std::fprintf(err, "semilab-central tokens create: --role must be viewer, engineer or admin\n");
    return kExitUsage;
  }
  auto s = open_writer(cfg, err, true);
  if (!s) return kExitRuntime;
  std::string msg;
  auto t = create_token(**s, *r, name, now_ns(), msg);
  if (!t) {
    std::fprintf(err, "semilab-central tokens create: %s\n", msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%s\n", t->token.c_str());
  std::fprintf(err,
               "token %s (%s, role %s) created; it is shown only now: pass it as "
               "'Authorization: Bearer TOKEN'\n",
               t->id.c_str(), name.c_str(), role_name.c_str());
  return kExitOk;
}

int run_tokens_list(const central_config& cfg, bool all, std::FILE* out, std::FILE* err) {
  auto s = open_for_admin(cfg, err);
  if (!s) return kExitRuntime;
  auto rows = list_tokens(**s, all);
  if (!rows) {
    std::fprintf(err, "semilab-central tokens list: %s\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%-14s %-9s %-24s %-24s %s\n", "ID", "ROLE", "CREATED (UTC)",
               "REVOKED (UTC)", "NAME");
  for (const auto& t : *rows)
    std::fprintf(out, "%-14s %-9s %-24s %-24s %s\n", t.id.c_str(),
                 std::string(to_string(t.r)).c_str(), utc(t.created_ns).c_str(),
                 t.revoked_ns ? utc(*t.revoked_ns).c_str() : "-", t.name.c_str());
  return kExitOk;
}

int run_tokens_revoke(const central_config& cfg, const std::string& id_or_name, std::FILE* out,
                      std::FILE* err) {
  auto s = open_writer(cfg, err);
  if (!s) return kExitRuntime;
  std::string msg;
  auto n = revoke_token(**s, id_or_name, now_ns(), msg);
  if (!n) {
    std::fprintf(err, "semilab-central tokens revoke: %s\n", msg.c_str());
    return kExitRuntime;
  }
  if (*n == 0) {
    std::fprintf(err, "semilab-central tokens revoke: no valid token with id or name '%s'\n",
                 id_or_name.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "revoked %s (running services stop accepting it within [auth] "
                    "token_refresh_s)\n", id_or_name.c_str());
  return kExitOk;
}

int run_agents_approve(const central_config& cfg, const std::string& agent_id,
                       const std::string& key_arg, std::FILE* out, std::FILE* err) {
  std::string msg;
  auto pub = read_public_key_arg(key_arg, msg);
  if (!pub) {
    std::fprintf(err, "semilab-central agents approve: %s\n", msg.c_str());
    return kExitUsage;
  }
  if (!schemas::valid_id(agent_id)) {
    std::fprintf(err, "semilab-central agents approve: invalid agent id\n");
    return kExitUsage;
  }
  auto s = open_writer(cfg, err);
  if (!s) return kExitRuntime;
  auto added = approve_agent_key(**s, agent_id, *pub, now_ns(), msg);
  if (!added) {
    std::fprintf(err, "semilab-central agents approve: %s\n", msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%s %s %s\n", agent_id.c_str(), schemas::key_id_of(*pub).c_str(),
               *added ? "approved" : "already approved");
  return kExitOk;
}

int run_agents_keys(const central_config& cfg, const std::string& agent_id, bool all,
                    std::FILE* out, std::FILE* err) {
  auto s = open_for_admin(cfg, err);
  if (!s) return kExitRuntime;
  auto rows = list_agent_keys(**s, agent_id, all);
  if (!rows) {
    std::fprintf(err, "semilab-central agents keys: %s\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%-24s %-16s %-24s %-24s %s\n", "AGENT", "KEY ID", "APPROVED (UTC)",
               "REVOKED (UTC)", "PUBLIC KEY");
  for (const auto& k : *rows)
    std::fprintf(out, "%-24s %-16s %-24s %-24s %s\n", k.agent_id.c_str(), k.key_id.c_str(),
                 utc(k.approved_ns).c_str(), k.revoked_ns ? utc(*k.revoked_ns).c_str() : "-",
                 schemas::public_key_hex(k.public_key).c_str());
  return kExitOk;
}

int run_agents_revoke_key(const central_config& cfg, const std::string& agent_id,
                          const std::string& key_id, std::FILE* out, std::FILE* err) {
  auto s = open_writer(cfg, err);
  if (!s) return kExitRuntime;
  auto n = revoke_agent_key(**s, agent_id, key_id, now_ns());
  if (!n) {
    std::fprintf(err, "semilab-central agents revoke-key: %s\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  if (*n == 0) {
    std::fprintf(err, "semilab-central agents revoke-key: %s has no approved key %s\n",
                 agent_id.c_str(), key_id.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%s %s revoked (its batches are refused from the next one on)\n",
               agent_id.c_str(), key_id.c_str());
  return kExitOk;
}

int run_retention(const central_config& cfg, std::FILE* out, std::FILE* err) {
  auto s = open_writer(cfg, err);
  if (!s) return kExitRuntime;
  const auto& r = cfg.retention;
  retention_policy p{r.telemetry_days,    r.event_days,        r.run_result_days,
                     r.blob_days,         r.quarantine_days,   r.batch_ledger_days,
                     r.summary_days,      r.activity_minutes_days};
  auto rep = (*s)->apply_retention(p, now_ns());
  if (!rep) {
    std::fprintf(err, "semilab-central: retention: %s\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  std::fprintf(out,
               "deleted: events %" PRIu64 ", run_results %" PRIu64 ", telemetry %" PRIu64
               ", blobs %" PRIu64 ", quarantine %" PRIu64 ", batch ledger %" PRIu64
               ", daily summaries %" PRIu64 ", activity minutes %" PRIu64 "\n",
               rep->records[0], rep->records[1], rep->records[2], rep->records[3], rep->quarantine,
               rep->batches, rep->summaries, rep->minutes);
  return kExitOk;
}

int run_quarantine_show(const central_config& cfg, std::int64_t id, const std::string& payload_out,
                        std::FILE* out, std::FILE* err) {
  auto s = open_for_admin(cfg, err);
  if (!s) return kExitRuntime;
  auto row = (*s)->quarantine_get(id);
  if (!row) {
    std::fprintf(err, "semilab-central: quarantine show %" PRId64 ": %s\n", id,
                 (*s)->last_error().c_str());
    return kExitRuntime;
  }
  if (!*row) {
    std::fprintf(err, "semilab-central: no quarantine entry %" PRId64 "\n", id);
    return kExitRuntime;
  }
  const auto& q = **row;
  std::fprintf(out,
               "id:        %" PRId64
               "\nreceived:  %s\ntopic:     %s\nagent:     %s\n"
               "reason:    %s\nsize:      %" PRIu64 " bytes (%" PRIu64 " kept)\n",
               q.id, utc(q.received_ns).c_str(), q.topic.c_str(),
               q.agent_id.empty() ? "-" : q.agent_id.c_str(), q.reason.c_str(), q.bytes,
               q.kept_bytes);
  schemas::frame_decoder dec;
  if (auto h = dec.decode_header(q.payload)) {
    std::fprintf(out,
                 "header:    agent %s, store_epoch %" PRIu64 ", batch %" PRIu64 ", %" PRIu32
                 " records\n",
                 h->agent_id.c_str(), h->store_epoch, h->batch_id, h->record_count);
  } else {
    std::fprintf(out, "header:    does not decode (%s)\n", h.error().message().c_str());
  }
  const std::size_t shown = std::min<std::size_t>(q.payload.size(), 256);
  std::fprintf(out, "payload (first %zu bytes):\n", shown);
  for (std::size_t off = 0; off < shown; off += 16) {
    std::fprintf(out, "  %06zx ", off);
    for (std::size_t i = off; i < off + 16; ++i) {
      if (i < shown)
        std::fprintf(out, " %02x", q.payload[i]);
      else
        std::fputs("   ", out);
    }
    std::fputs("  ", out);
    for (std::size_t i = off; i < std::min(off + 16, shown); ++i)
      std::fputc(q.payload[i] >= 0x20 && q.payload[i] < 0x7f ? q.payload[i] : '.', out);
    std::fputc('\n', out);
  }
  if (!payload_out.empty()) {
    std::ofstream f(payload_out, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(q.payload.data()),
            static_cast<std::streamsize>(q.payload.size()));
    if (!f) {
      std::fprintf(err, "semilab-central: cannot write %s\n", payload_out.c_str());
      return kExitRuntime;
    }
  }
  return kExitOk;
}

namespace {
void print_tables(const std::vector<table_checksum>& t, std::FILE* out) {
  for (const auto& c : t)
    std::fprintf(out, "  %-16s %12" PRIu64 " rows  sha256 %s\n", c.table.c_str(), c.rows,
                 c.sha256.c_str());
}
}  // namespace

int run_backup(const central_config& cfg, const std::string& to_dir, std::FILE* out,
               std::FILE* err) {
  const auto so = storage_options_from(cfg, open_mode::read_only);
  const bool pg = so.backend == storage_backend::postgresql;
  const std::string dir = !to_dir.empty() ? to_dir
                          : !cfg.backup.dir.empty()
                              ? cfg.backup.dir
                              : (std::filesystem::path(cfg.central.data_dir) / "backups").string();
  std::string msg;
  auto b = pg ? backup_pg(so.url, dir, msg) : backup_sqlite(so.sqlite_path, dir, msg);
  if (!b) {
    std::fprintf(err, "semilab-central backup of %s into %s: %s: %s\n",
                 pg ? redact_url(so.url).c_str() : so.sqlite_path.c_str(), dir.c_str(),
                 b.error().message().c_str(), msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "backup %s (%" PRIu64 " bytes): copied in %.3f s, verified in %.3f s\n",
               b->file.c_str(), b->bytes, b->copy_s, b->verify_s);
  print_tables(b->tables, out);
  auto gone = apply_retention(dir, static_cast<std::size_t>(cfg.backup.keep),
                              cfg.backup.max_age_days * 86400, now_ns() / 1'000'000'000, msg);
  if (!gone) {
    std::fprintf(err, "semilab-central backup: retention in %s: %s\n", dir.c_str(), msg.c_str());
    return kExitRuntime;
  }
  for (const auto& f : *gone) std::fprintf(out, "retention: deleted %s\n", f.c_str());
  return kExitOk;
}

int run_verify_backup(const std::string& file, std::FILE* out, std::FILE* err) {
  return run_verify_backup(file, nullptr, out, err);
}

int run_verify_backup(const std::string& file, const central_config* cfg, std::FILE* out,
                      std::FILE* err) {
  std::string msg;
  const bool pg = file.ends_with(".pgdump");
  if (pg && (!cfg || cfg->store.backend != "postgresql")) {
    std::fprintf(err,
                 "semilab-central verify-backup %s: a PostgreSQL dump is verified by restoring it "
                 "into a scratch database: pass --config with [store] backend = \"postgresql\"\n",
                 file.c_str());
    return kExitUsage;
  }
  auto t = pg ? verify_pg_backup(file, cfg->store.url, msg) : verify_backup(file, msg);
  if (!t) {
    std::fprintf(err, "semilab-central verify-backup %s: %s: %s\n", file.c_str(),
                 t.error().message().c_str(), msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "ok %s: %s, every table matches its manifest\n", file.c_str(),
               pg ? "restored into a scratch database" : "integrity_check ok");
  print_tables(*t, out);
  return kExitOk;
}

namespace {
// After a restore: the agents' high-water marks in the restored store, written for the service
// to turn into replay commands (restore_replay.hpp). The restore itself already succeeded, so a
// failure here says what to do by hand and exits 1.
int plan_restore_replay(const central_config& cfg, std::FILE* out, std::FILE* err) {
  auto s = open_for_admin(cfg, err);
  if (!s) return kExitRuntime;
  auto marks = restored_high_water(**s);
  if (!marks) {
    std::fprintf(err, "semilab-central restore: high-water marks: %s (ask the agents with "
                      "`semilab-central replay`)\n", (*s)->last_error().c_str());
    return kExitRuntime;
  }
  const auto file = pending_replay_path(cfg);
  std::error_code fec;
  std::filesystem::create_directories(cfg.central.data_dir, fec);
  std::string msg;
  if (auto ec = write_pending_replays(file, *marks, msg)) {
    std::fprintf(err, "semilab-central restore: %s (ask the agents with `semilab-central "
                      "replay`)\n", msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%zu agent(s) will be asked to replay from their restored high-water mark "
                    "when the service starts (%s):\n", marks->size(), file.c_str());
  for (const auto& m : *marks)
    std::fprintf(out, "  %-24s epoch %" PRIu64 " seq %" PRIu64 "..%" PRIu64 " held, replay from %" PRIu64 "\n",
                 m.agent_id.c_str(), m.store_epoch, m.first_seq, m.contiguous, m.replay_from());
  if (cfg.mqtt.command_key_file.empty() && cfg.central.signing_key_file.empty())
    std::fprintf(err, "semilab-central restore: warning: neither [central] signing_key_file nor "
                      "[mqtt] command_key_file is set; the service cannot authenticate the "
                      "replay commands\n");
  return kExitOk;
}
}  // namespace

int run_restore(const central_config& cfg, const std::string& file, std::FILE* out,
                std::FILE* err) {
  const auto so = storage_options_from(cfg, open_mode::read_write);
  std::string kept, msg;
  if (so.backend == storage_backend::postgresql) {
    if (!file.ends_with(".pgdump")) {
      std::fprintf(err, "semilab-central restore: the store is PostgreSQL; %s is not a .pgdump\n",
                   file.c_str());
      return kExitUsage;
    }
    if (auto ec = restore_pg(file, so.url, msg)) {
      std::fprintf(err, "semilab-central restore %s -> %s: %s: %s\n", file.c_str(),
                   redact_url(so.url).c_str(), ec.message().c_str(), msg.c_str());
      return kExitRuntime;
    }
    std::fprintf(out, "restored %s into %s (checksums match the manifest)\n", file.c_str(),
                 redact_url(so.url).c_str());
    return plan_restore_replay(cfg, out, err);
  }
  if (file.ends_with(".pgdump")) {
    std::fprintf(err, "semilab-central restore: the store is SQLite; %s is a PostgreSQL dump\n",
                 file.c_str());
    return kExitUsage;
  }
  if (auto ec = restore_sqlite(file, so.sqlite_path, kept, msg)) {
    std::fprintf(err, "semilab-central restore %s -> %s: %s: %s\n", file.c_str(),
                 so.sqlite_path.c_str(), ec.message().c_str(), msg.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "restored %s as %s\n", file.c_str(), so.sqlite_path.c_str());
  if (!kept.empty()) std::fprintf(out, "previous database kept as %s\n", kept.c_str());
  return plan_restore_replay(cfg, out, err);
}

}  // namespace semilab::central
