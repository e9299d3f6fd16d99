// Verified backups of the PostgreSQL store with pg_dump / pg_restore (backup.hpp).
//
// One REPEATABLE READ transaction on the source exports its snapshot; the per-table checksums
// are computed in it and `pg_dump -Fc --snapshot` dumps that same snapshot, so the dump and the
// checksums describe one instant while ingest keeps committing. The dump is then restored into a
// scratch database on the same server and its checksums must equal the source's; only then is
// it fsynced and renamed to DIR/central-<UTC>.pgdump with its manifest beside it.
// Checksum of a table: SHA-256 over `COPY (SELECT t::text FROM table t ORDER BY t::text COLLATE "C")`
// output, i.e. every row's text form in byte order (same server, so the same text forms).
// The password never appears on a command line: the tools get it in PGPASSWORD.
#include <semilab/central/backup.hpp>
#include <semilab/central/storage.hpp>

#include <boost/json.hpp>
#include <fcntl.h>
#include <libpq-fe.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "backup_common.hpp"

extern char** environ;

namespace semilab::central {

namespace {

namespace fs = std::filesystem;

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Connection keywords of a URL or key=value string (PQconninfoParse), with dbname overridable.
struct conninfo {
  std::map<std::string, std::string> kv;
  bool parse(const std::string& url, std::string& error) {
    char* err = nullptr;
    PQconninfoOption* o = PQconninfoParse(url.c_str(), &err);
    if (!o) {
      error = "cannot parse the store URL: " + trimmed(err);
      PQfreemem(err);
      return false;
    }
    for (auto* p = o; p->keyword; ++p)
      if (p->val && *p->val) kv[p->keyword] = p->val;
    PQconninfoFree(o);
    return true;
  }
  PGconn* connect(const std::string& dbname) const {
    std::vector<const char*> k, v;
    for (const auto& [key, val] : kv) {
      if (key == "dbname") continue;
      k.push_back(key.c_str());
      v.push_back(val.c_str());
    }
    k.push_back("dbname");
    v.push_back(dbname.c_str());
    k.push_back(nullptr);
    v.push_back(nullptr);
    return PQconnectdbParams(k.data(), v.data(), 0);
  }
  std::string db() const { return kv.contains("dbname") ? kv.at("dbname") : kv.at("user"); }
  // "host=... port=... dbname=..." without the password (for the tools' --dbname).
  std::string for_tools(const std::string& dbname) const {
    std::string s;
    auto quote = [](const std::string& x) {
      std::string q = "'";
      for (char c : x) {
        if (c == '\'' || c == '\\') q += '\\';
        q += c;
      }
      return q + "'";
    };
    for (const auto& [key, val] : kv)
      if (key != "password" && key != "dbname") s += key + "=" + quote(val) + " ";
    return s + "dbname=" + quote(dbname);
  }
  std::string password() const { return kv.contains("password") ? kv.at("password") : ""; }
};

struct conn {
  PGconn* c = nullptr;
  ~conn() { PQfinish(c); }
};

bool exec(PGconn* c, const std::string& sql, std::string& error) {
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok) error = sql.substr(0, 60) + ": " + trimmed(PQerrorMessage(c));
  PQclear(r);
  return ok;
}

std::string scalar(PGconn* c, const std::string& sql, std::string& error) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string v;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    v = PQgetvalue(r, 0, 0);
  else
    error = sql.substr(0, 60) + ": " + trimmed(PQerrorMessage(c));
  PQclear(r);
  return v;
}

// Checksums of every table of schema public, in the connection's current transaction.
result<std::vector<table_checksum>> pg_checksums(PGconn* c, std::string& error) {
  PGresult* r = PQexec(c, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    error = "list tables: " + trimmed(PQerrorMessage(c));
    PQclear(r);
    return make_error_code(errc::backup_failed);
  }
  std::vector<std::string> tables;
  for (int i = 0; i < PQntuples(r); ++i) tables.emplace_back(PQgetvalue(r, i, 0));
  PQclear(r);
  std::vector<table_checksum> out;
  for (const auto& t : tables) {
    const std::string sql = "COPY (SELECT x::text FROM public.\"" + t +
                            "\" x ORDER BY x::text COLLATE \"C\") TO STDOUT";
    PGresult* s = PQexec(c, sql.c_str());
    const bool started = PQresultStatus(s) == PGRES_COPY_OUT;
    PQclear(s);
    if (!started) {
      error = "checksum of " + t + ": " + trimmed(PQerrorMessage(c));
      return make_error_code(errc::backup_failed);
    }
    backup_detail::sha256 md;
    table_checksum tc;
    tc.table = t;
    char* line = nullptr;
    int n;
    while ((n = PQgetCopyData(c, &line, 0)) > 0) {
      md.add(line, static_cast<std::size_t>(n));
      ++tc.rows;
      PQfreemem(line);
    }
    PGresult* end = PQgetResult(c);
    const bool ok = n == -1 && PQresultStatus(end) == PGRES_COMMAND_OK;
    PQclear(end);
    while (PGresult* more = PQgetResult(c)) PQclear(more);
    if (!ok) {
      error = "checksum of " + t + ": " + trimmed(PQerrorMessage(c));
      return make_error_code(errc::backup_failed);
    }
    tc.sha256 = md.hex();
    out.push_back(std::move(tc));
  }
  return out;
}

// Runs a PostgreSQL client tool (no shell); PGPASSWORD in its environment only.
bool run_tool(const std::string& tool, std::vector<std::string> args, const std::string& password,
              std::string& error) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PGPASSWORD=", 11) != 0) env.emplace_back(*e);
  if (!password.empty()) env.push_back("PGPASSWORD=" + password);
  std::vector<char*> envp, argv;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  args.insert(args.begin(), tool);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // stdout to /dev/null; stderr stays the caller's (the tool's own messages name the problem).
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, tool.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    error = "cannot run " + tool + ": " + std::strerror(rc) +
            " (install the Debian package postgresql-client)";
    return false;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = tool + " failed (exit status " +
            std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ", see stderr)";
    return false;
  }
  return true;
}

// Restores `file` into a new scratch database on the server of `ci`, returns its checksums, and
// drops it again.
result<std::vector<table_checksum>> restore_and_sum(const conninfo& ci, const std::string& file,
                                                    std::string& error) {
  std::random_device rd;
  const std::string scratch = "semilab_verify_" + std::to_string(::getpid()) + "_" +
                              std::to_string(rd() % 1000000);
  conn admin{ci.connect(ci.db())};
  if (PQstatus(admin.c) != CONNECTION_OK) {
    error = "connect: " + trimmed(PQerrorMessage(admin.c));
    return make_error_code(errc::backup_failed);
  }
  if (!exec(admin.c, "CREATE DATABASE " + scratch, error))
    return make_error_code(errc::backup_failed);
  auto drop = [&] {
    std::string ignored;
    exec(admin.c, "DROP DATABASE IF EXISTS " + scratch, ignored);
  };
  if (!run_tool("pg_restore", {"--no-owner", "--exit-on-error", "--dbname=" + ci.for_tools(scratch),
                               file},
                ci.password(), error)) {
    drop();
    return make_error_code(errc::backup_failed);
  }
  result<std::vector<table_checksum>> sums = make_error_code(errc::backup_failed);
  {
    conn s{ci.connect(scratch)};
    if (PQstatus(s.c) != CONNECTION_OK)
      error = "connect to the scratch database: " + trimmed(PQerrorMessage(s.c));
    else
      sums = pg_checksums(s.c, error);
  }
  drop();
  return sums;
}

}  // namespace

result<backup_info> backup_pg(const std::string& url, const std::string& dir, std::string& error) {
  conninfo ci;
  if (!ci.parse(url, error)) return make_error_code(errc::backup_failed);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    error = "cannot create " + dir + ": " + ec.message();
    return make_error_code(errc::backup_failed);
  }
  backup_info info;
  info.file = (fs::path(dir) / ("central-" + backup_detail::utc_stamp() + ".pgdump")).string();
  info.manifest = info.file + ".json";
  const std::string partial = info.file + ".partial";
  const auto t0 = std::chrono::steady_clock::now();
  {
    conn src{ci.connect(ci.db())};
    if (PQstatus(src.c) != CONNECTION_OK) {
      error = "connect to " + redact_url(url) + ": " + trimmed(PQerrorMessage(src.c));
      return make_error_code(errc::backup_failed);
    }
    if (!exec(src.c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", error))
      return make_error_code(errc::backup_failed);
    const std::string snap = scalar(src.c, "SELECT pg_export_snapshot()", error);
    if (snap.empty()) return make_error_code(errc::backup_failed);
    auto sums = pg_checksums(src.c, error);
    if (!sums) return sums.error();
    info.tables = std::move(*sums);
    // The snapshot lives as long as this transaction: pg_dump runs inside it.
    if (!run_tool("pg_dump", {"--format=custom", "--snapshot=" + snap, "--file=" + partial,
                              "--dbname=" + ci.for_tools(ci.db())},
                  ci.password(), error)) {
      fs::remove(partial, ec);
      return make_error_code(errc::backup_failed);
    }
    exec(src.c, "COMMIT", error);
  }
  const auto t1 = std::chrono::steady_clock::now();
  auto got = restore_and_sum(ci, partial, error);
  if (!got) {
    fs::remove(partial, ec);
    return got.error();
  }
  if (auto why = backup_detail::checksum_mismatch(info.tables, *got,
                                                  "the restored database has other tables");
      !why.empty()) {
    error = "the restored dump differs from the source snapshot: " + why;
    fs::remove(partial, ec);
    return make_error_code(errc::backup_mismatch);
  }
  info.verify_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  info.copy_s = std::chrono::duration<double>(t1 - t0).count();
  info.bytes = fs::file_size(partial, ec);
  const boost::json::object manifest{{"backend", "postgresql"},
                                     {"file", fs::path(info.file).filename().string()},
                                     {"bytes", info.bytes},
                                     {"tables", backup_detail::manifest_tables(info.tables)}};
  if (!backup_detail::publish_backup(partial, info.file, manifest, dir, error)) {
    fs::remove(partial, ec);
    fs::remove(info.manifest + ".partial", ec);
    return make_error_code(errc::backup_failed);
  }
  return info;
}

result<std::vector<table_checksum>> verify_pg_backup(const std::string& file,
                                                     const std::string& url, std::string& error) {
  auto want = backup_detail::read_manifest(file, error);
  if (!want) return want.error();
  conninfo ci;
  if (!ci.parse(url, error)) return make_error_code(errc::backup_failed);
  auto got = restore_and_sum(ci, file, error);
  if (!got) return got.error();
  if (auto why = backup_detail::checksum_mismatch(*want, *got,
                                                  "the restored database has other tables");
      !why.empty()) {
    error = file + " differs from its manifest: " + why;
    return make_error_code(errc::backup_mismatch);
  }
  return got;
}

boost::system::error_code restore_pg(const std::string& file, const std::string& url,
                                     std::string& error) {
  auto ok = verify_pg_backup(file, url, error);
  if (!ok) return ok.error();
  conninfo ci;
  if (!ci.parse(url, error)) return make_error_code(errc::backup_failed);
  // One transaction: the store is either the backup's content or unchanged.
  if (!run_tool("pg_restore", {"--clean", "--if-exists", "--no-owner", "--single-transaction",
                               "--exit-on-error", "--dbname=" + ci.for_tools(ci.db()), file},
                ci.password(), error))
    return make_error_code(errc::backup_failed);
  conn c{ci.connect(ci.db())};
  if (PQstatus(c.c) != CONNECTION_OK) {
    error = "connect after restore: " + trimmed(PQerrorMessage(c.c));
    return make_error_code(errc::backup_failed);
  }
  auto got = pg_checksums(c.c, error);
  if (!got) return got.error();
  if (auto why = backup_detail::checksum_mismatch(*ok, *got,
                                                  "the restored database has other tables");
      !why.empty()) {
    error = "the store after restore differs from the backup: " + why;
    return make_error_code(errc::backup_mismatch);
  }
  return {};
}

}  // namespace semilab::central
