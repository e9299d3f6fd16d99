// Admin commands: quarantine list/show, backup / verify-backup / restore and retention.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/time.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <semilab/central/app.hpp>
#include <semilab/central/backup.hpp>
#include <semilab/central/store.hpp>
#include <sstream>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
namespace fs = std::filesystem;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

// A FILE* whose content can be read back as a string.
struct capture {
  std::FILE* f = std::tmpfile();
  ~capture() { std::fclose(f); }
  std::string text() {
    std::fflush(f);
    std::rewind(f);
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    return s;
  }
};

central_config config_for(const temp_dir& d) {
  central_config c;
  c.central.instance = "c1";
  c.central.data_dir = d.path.string();
  return c;
}

std::unique_ptr<sqlite_store> filled(const temp_dir& d, int batches) {
  std::string err;
  auto s = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE_MESSAGE(s.has_value(), err);
  sc::frame_decoder dec;
  for (int b = 0; b < batches; ++b) {
    auto bytes = central_test::encode(sample_batch("a" + std::to_string(b % 3), 1,
                                                   static_cast<std::uint64_t>(b + 1),
                                                   static_cast<std::uint64_t>(b * 50 + 1), 50));
    auto f =
        dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    REQUIRE(f.has_value());
    sc::agent_topic_parts t{"lab", f->header.agent_id, sc::agent_topic_kind::batch};
    REQUIRE((*s)->store_batch(t, *f, bytes.size(), "c1").has_value());
  }
  std::vector<std::uint8_t> junk = {'P', 'K', 0, 1};
  REQUIRE_FALSE(
      (*s)->quarantine("semilab/v1/lab/a9/batch", "a9", "invalid frame: bad magic", junk));
  return std::move(*s);
}

std::vector<table_checksum> sums_of(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  std::string err;
  auto r = table_checksums(db, err);
  sqlite3_close_v2(db);
  REQUIRE_MESSAGE(r.has_value(), err);
  return *r;
}

}  // namespace

TEST_CASE("admin: quarantine list and show") {
  temp_dir d;
  auto s = filled(d, 1);
  auto cfg = config_for(d);
  capture out, err;
  CHECK(run_quarantine_list(cfg, 10, 0, out.f, err.f) == kExitOk);
  auto text = out.text();
  CHECK(text.find("invalid frame: bad magic") != std::string::npos);
  CHECK(text.find("a9") != std::string::npos);
  CHECK(text.find("1 entry") != std::string::npos);
  auto id = (*s->quarantine_list(1, 0))[0].id;
  capture out2, err2;
  const auto raw = d.file("payload.bin");
  CHECK(run_quarantine_show(cfg, id, raw, out2.f, err2.f) == kExitOk);
  auto shown = out2.text();
  CHECK(shown.find("reason:    invalid frame: bad magic") != std::string::npos);
  CHECK(shown.find("50 4b 00 01") != std::string::npos);  // hex dump
  CHECK(shown.find("does not decode") != std::string::npos);
  CHECK(fs::file_size(raw) == 4);
  capture out3, err3;
  CHECK(run_quarantine_show(cfg, id + 100, "", out3.f, err3.f) == kExitRuntime);
  CHECK(err3.text().find("no quarantine entry") != std::string::npos);
}

TEST_CASE("backup: a verified copy of the committed snapshot while a writer holds a transaction") {
  temp_dir d;
  auto s = filled(d, 12);
  const auto before = sums_of(d.file("central.db"));
  // An open, uncommitted write beside the backup: the backup must not see it.
  REQUIRE(sqlite3_exec(s->native_handle(),
                       "BEGIN IMMEDIATE; INSERT INTO quarantine(received_ns, topic, reason, bytes, "
                       "payload) VALUES(1, 't', 'uncommitted', 0, x'')",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  std::string err;
  auto b = backup_sqlite(d.file("central.db"), d.file("backups"), err);
  REQUIRE_MESSAGE(b.has_value(), err);
  REQUIRE(sqlite3_exec(s->native_handle(), "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(fs::exists(b->file));
  CHECK(fs::exists(b->manifest));
  CHECK_FALSE(fs::exists(b->file + ".partial"));
  CHECK(b->tables == before);
  bool has_records = false;
  for (const auto& t : b->tables)
    if (t.table == "records") {
      has_records = true;
      CHECK(t.rows == 600);
    }
  CHECK(has_records);
  CHECK(sums_of(b->file) == before);
  CHECK(sums_of(d.file("central.db")) != before);  // the source moved on after the snapshot

  auto v = verify_backup(b->file, err);
  REQUIRE_MESSAGE(v.has_value(), err);
  CHECK(*v == before);
}

TEST_CASE("backup: verify-backup catches a changed row and a missing manifest") {
  temp_dir d;
  auto s = filled(d, 3);
  std::string err;
  auto b = backup_sqlite(d.file("central.db"), d.file("backups"), err);
  REQUIRE_MESSAGE(b.has_value(), err);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(b->file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "UPDATE records SET quality = 99 WHERE record_seq = 7", nullptr, nullptr,
                       nullptr) == SQLITE_OK);
  sqlite3_close_v2(db);
  auto v = verify_backup(b->file, err);
  REQUIRE_FALSE(v.has_value());
  CHECK(v.error() == errc::backup_mismatch);
  CHECK(err.find("table records: content checksum differs") != std::string::npos);
  fs::remove(b->manifest);
  CHECK_FALSE(verify_backup(b->file, err).has_value());
  CHECK(err.find("no manifest") != std::string::npos);
}

TEST_CASE("backup: restore brings back the backup's content and keeps the replaced database") {
  temp_dir d;
  auto cfg = config_for(d);
  std::string backup_file;
  {
    auto s = filled(d, 4);
    capture out, err;
    REQUIRE(run_backup(cfg, d.file("bk"), out.f, err.f) == kExitOk);
    auto text = out.text();
    auto pos = text.find("backup ");
    REQUIRE(pos == 0);
    backup_file = text.substr(7, text.find(' ', 7) - 7);
    // More data after the backup.
    sc::agent_topic_parts t{"lab", "late", sc::agent_topic_kind::batch};
    sc::frame_decoder dec;
    auto bytes = central_test::encode(sample_batch("late", 1, 1, 1, 10));
    auto f =
        dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    REQUIRE(f.has_value());
    REQUIRE(s->store_batch(t, *f, 1, "c1").has_value());
    CHECK(*s->record_count() == 210);
  }
  const auto backup_sums = sums_of(backup_file);
  capture out, err;
  REQUIRE(run_restore(cfg, backup_file, out.f, err.f) == kExitOk);
  CHECK(out.text().find("previous database kept as") != std::string::npos);
  CHECK(sums_of(d.file("central.db")) == backup_sums);
  std::string e;
  auto s = sqlite_store::open(store_options{d.file("central.db")}, e);  // WAL again, migrations ok
  REQUIRE_MESSAGE(s.has_value(), e);
  CHECK(*(*s)->record_count() == 200);
  bool kept = false;
  for (const auto& p : fs::directory_iterator(d.path))
    if (p.path().filename().string().rfind("central.db.pre-restore-", 0) == 0) kept = true;
  CHECK(kept);
  capture o2, e2;
  CHECK(run_verify_backup(d.file("nope.db"), o2.f, e2.f) == kExitRuntime);
}

TEST_CASE("backup: retention by count and by age; the newest always stays") {
  temp_dir d;
  auto s = filled(d, 1);
  std::string err;
  std::vector<std::string> files;
  for (int i = 0; i < 5; ++i) {
    auto b = backup_sqlite(d.file("central.db"), d.file("bk"), err);
    REQUIRE_MESSAGE(b.has_value(), err);
    files.push_back(b->file);
  }
  const std::int64_t now = static_cast<std::int64_t>(::time(nullptr));
  auto gone = apply_retention(d.file("bk"), 3, 0, now, err);
  REQUIRE(gone.has_value());
  CHECK(*gone == std::vector<std::string>{files[0], files[1]});
  CHECK_FALSE(fs::exists(files[0] + ".json"));
  CHECK(fs::exists(files[2]));
  // Age: make files[2] and files[3] 40 days old.
  for (int i : {2, 3}) {
    timeval tv[2] = {{now - 40 * 86400, 0}, {now - 40 * 86400, 0}};
    REQUIRE(::utimes(files[static_cast<std::size_t>(i)].c_str(), tv) == 0);
  }
  gone = apply_retention(d.file("bk"), 0, 30 * 86400, now, err);
  REQUIRE(gone.has_value());
  CHECK(*gone == std::vector<std::string>{files[2], files[3]});
  // Even an old newest backup stays.
  timeval tv[2] = {{now - 90 * 86400, 0}, {now - 90 * 86400, 0}};
  REQUIRE(::utimes(files[4].c_str(), tv) == 0);
  gone = apply_retention(d.file("bk"), 1, 30 * 86400, now, err);
  REQUIRE(gone.has_value());
  CHECK(gone->empty());
  CHECK(fs::exists(files[4]));
}

TEST_CASE("backup: an unreachable PostgreSQL store fails without showing its password") {
  temp_dir d;
  auto cfg = config_for(d);
  cfg.store.backend = "postgresql";
  cfg.store.url = "postgresql://u:secret@127.0.0.1:1/x";
  capture out, err;
  CHECK(run_backup(cfg, "", out.f, err.f) == kExitRuntime);
  auto e = err.text();
  CHECK(e.find("127.0.0.1") != std::string::npos);
  CHECK(e.find("secret") == std::string::npos);
  capture out2, err2;  // a dump is verified against a server: --config is needed
  CHECK(run_verify_backup(d.file("central-x.pgdump"), out2.f, err2.f) == kExitUsage);
  capture out3, err3;  // a SQLite store does not take a PostgreSQL dump
  CHECK(run_restore(config_for(d), d.file("central-x.pgdump"), out3.f, err3.f) == kExitUsage);
}

TEST_CASE("admin: retention job applies the [retention] policy and reports per class") {
  temp_dir d;
  auto s = filled(d, 2);  // 100 telemetry records received now, 1 quarantined frame
  auto cfg = config_for(d);
  capture out, err;
  // Nothing is old enough: nothing goes.
  cfg.retention.telemetry_days = 1;
  CHECK(run_retention(cfg, out.f, err.f) == kExitOk);
  CHECK(out.text().find("telemetry 0,") != std::string::npos);
  CHECK(*s->record_count() == 100);
  // Age everything by two days (received_ns is the receipt time), then run again.
  char* msg = nullptr;
  REQUIRE(sqlite3_exec(s->native_handle(),
                       "UPDATE records SET received_ns = received_ns - 2 * 86400000000000 "
                       "WHERE record_seq <= 50",
                       nullptr, nullptr, &msg) == SQLITE_OK);
  capture out2, err2;
  CHECK(run_retention(cfg, out2.f, err2.f) == kExitOk);
  CHECK(out2.text().find("telemetry 50,") != std::string::npos);
  CHECK(*s->record_count() == 50);
  CHECK(*s->quarantine_count() == 1);  // 90 days by default
  // A store that cannot be opened: runtime error, said on stderr.
  auto bad = cfg;
  bad.central.data_dir = d.file("missing/dir");
  capture out3, err3;
  CHECK(run_retention(bad, out3.f, err3.f) == kExitRuntime);
  CHECK_FALSE(err3.text().empty());
}

TEST_CASE("admin: tokens create prints the token once; list shows no secret; revoke by id") {
  temp_dir d;
  auto cfg = config_for(d);
  cfg.central.data_dir = d.file("fresh");  // created by `tokens create`
  capture out, err;
  REQUIRE(run_tokens_create(cfg, "engineer", "line-3", out.f, err.f) == kExitOk);
  const std::string token = out.text();
  REQUIRE(token.starts_with("slc_"));
  CHECK(token.size() == 4 + 12 + 1 + 64 + 1);  // and the newline
  const std::string id = token.substr(4, 12);
  CHECK(err.text().find(id) != std::string::npos);
  capture bad_out, bad_err;
  CHECK(run_tokens_create(cfg, "root", "x", bad_out.f, bad_err.f) == kExitUsage);

  capture lo, le;
  REQUIRE(run_tokens_list(cfg, false, lo.f, le.f) == kExitOk);
  const auto listed = lo.text();
  CHECK(listed.find(id) != std::string::npos);
  CHECK(listed.find("engineer") != std::string::npos);
  CHECK(listed.find("line-3") != std::string::npos);
  CHECK(listed.find(token.substr(17, 64)) == std::string::npos);

  capture ro, re;
  CHECK(run_tokens_revoke(cfg, id, ro.f, re.f) == kExitOk);
  capture ro2, re2;
  CHECK(run_tokens_revoke(cfg, id, ro2.f, re2.f) == kExitRuntime);  // nothing valid left
  CHECK(re2.text().find("no valid token") != std::string::npos);
  capture lo2, le2;
  REQUIRE(run_tokens_list(cfg, false, lo2.f, le2.f) == kExitOk);
  CHECK(lo2.text().find(id) == std::string::npos);
  capture lo3, le3;
  REQUIRE(run_tokens_list(cfg, true, lo3.f, le3.f) == kExitOk);
  CHECK(lo3.text().find(id) != std::string::npos);
}
