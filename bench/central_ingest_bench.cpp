// central_ingest_sqlite_per_s / central_ingest_pg_per_s: records/s through the central ingest
// processor (frame decode + validation + group commit + acks) into each storage backend, with
// realistic batches (100 records of decimal readings, one instrument channel, run ids), groups
// of 64 batches per transaction as the worker forms them under load. Durable commits: SQLite
// WAL synchronous=FULL; PostgreSQL synchronous_commit=on with fsync on (the server is started by
// the bench, tests/support/postgres.hpp). Median of --reps repetitions, 200 000 records each.
// Baselines (same run): SQLite against decode+validate only (the ceiling without storage);
// PostgreSQL against the SQLite figure.
//
// Backup/restore at scale (issue #6, RPO/RTO for 1 M measurements; --backup-records N, default
// 1 000 000, 0 = skip): each store is filled up to N records (the repetitions count, untimed
// fill batches top it up), then timed: `backup` (snapshot + checksums + copy + verification of
// the copy; central/src/backup.cpp, pg_backup.cpp), `verify-backup`, and the RTO of the store:
// `restore` (verification included) + the restored high-water marks the restore command computes
// + reopening the restored store and counting its records. The RPO of the store alone is the
// schedule's: a daily backup loses at most the interval plus the backup's own duration of what
// was acked since (the replay after restore brings back what agents still retain:
// docs/OPERATIONS.md "Backups").
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <semilab/central/backup.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/restore_replay.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>
#include <string>

#include "results.hpp"
#include "support/postgres.hpp"

using namespace semilab;
using clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t kRecords = 100;   // per batch
constexpr std::size_t kBatches = 2000;  // per repetition: 200 000 records
constexpr std::size_t kGroup = 64;      // batches per transaction
constexpr int kAgents = 10;

// Frames of kAgents agents, seqs continuing across repetitions (`rep`) so every record is new.
std::vector<central::inbound_message> frames(int rep) {
  const std::string kInstrument = "smu1", kChannel = "curr", kUnit = "A";
  schemas::frame_encoder enc;
  std::vector<central::inbound_message> out;
  out.reserve(kBatches);
  const std::int64_t t0 = central::now_ns() - 3'600'000'000'000;
  for (std::size_t b = 0; b < kBatches; ++b) {
    const int a = static_cast<int>(b % kAgents);
    const std::uint64_t nth = static_cast<std::uint64_t>(rep) * kBatches / kAgents + b / kAgents;
    schemas::batch bt;
    bt.agent_id = "agent-";
    bt.agent_id += std::to_string(a);
    bt.store_epoch = 1;
    bt.batch_id = nth + 1;
    for (std::size_t i = 0; i < kRecords; ++i) {
      schemas::record r;
      r.seq = nth * kRecords + i + 1;
      r.cls = schemas::record_class::telemetry;
      r.ts_ns = t0 + static_cast<std::int64_t>(r.seq) * 10'000'000;
      r.instrument = kInstrument;  // std::string copies: GCC 12 -O2 warns falsely (-Wrestrict)
      r.channel = kChannel;        // on assigning these short literals here
      r.unit = kUnit;
      r.val = schemas::decimal{3978508 + static_cast<std::int64_t>(i % 97), -13};
      r.run_id = "run-";  // appended: "literal" + std::string draws GCC 12's false -Wrestrict
      r.run_id += std::to_string(nth / 10);
      bt.records.push_back(std::move(r));
    }
    auto f = enc.encode(bt);
    if (!f) {
      std::fprintf(stderr, "encode failed\n");
      std::exit(1);
    }
    out.push_back({schemas::agent_topic("lab", bt.agent_id, schemas::agent_topic_kind::batch),
                   std::string(f->begin(), f->end()), central::now_ns()});
  }
  return out;
}

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// records/s of one repetition through `db`; exits on any rejected batch.
double run(central::storage& db, int rep) {
  auto msgs = frames(rep);
  central::ingest_counters counters;
  central::ingest_options o;
  o.instance = "bench";
  central::ingest_processor proc(db, o, counters);
  const auto t0 = clk::now();
  const double c0 = thread_cpu_s();
  for (std::size_t i = 0; i < msgs.size(); i += kGroup) {
    const auto n = std::min(kGroup, msgs.size() - i);
    auto acks = proc.process(std::span(msgs).subspan(i, n));
    for (const auto& a : acks)
      if (!a.ack.stored) {
        std::fprintf(stderr, "batch rejected: %s (%s)\n", a.ack.reason.c_str(),
                     db.last_error().c_str());
        std::exit(1);
      }
  }
  const double s = std::chrono::duration<double>(clk::now() - t0).count();
  // On a loaded machine wall time mostly measures the scheduler; CPU time of this thread is the
  // cost of the ingest path itself (fsync waits excluded). Printed for comparisons, not published.
  std::fprintf(stderr, "  %s rep %d: %.0f records/s wall, %.0f records per CPU-second\n",
               db.backend() == central::storage_backend::sqlite ? "sqlite" : "postgresql", rep,
               static_cast<double>(kBatches * kRecords) / s,
               static_cast<double>(kBatches * kRecords) / (thread_cpu_s() - c0));
  if (counters.records_new.load() != kBatches * kRecords) {
    std::fprintf(stderr, "expected %zu new records, got %llu\n", kBatches * kRecords,
                 static_cast<unsigned long long>(counters.records_new.load()));
    std::exit(1);
  }
  return static_cast<double>(kBatches * kRecords) / s;
}

double decode_only(int rep) {
  auto msgs = frames(rep);
  schemas::frame_decoder dec;
  const auto t0 = clk::now();
  std::size_t n = 0;
  for (const auto& m : msgs) {
    auto f = dec.decode(
        std::span(reinterpret_cast<const std::uint8_t*>(m.payload.data()), m.payload.size()));
    if (f) n += f->records.size();
  }
  const double s = std::chrono::duration<double>(clk::now() - t0).count();
  return static_cast<double>(n) / s;
}

std::unique_ptr<central::storage> open(const central::storage_options& o) {
  std::string err;
  auto s = central::open_storage(o, err);
  if (!s) {
    std::fprintf(stderr, "open store: %s\n", err.c_str());
    std::exit(1);
  }
  return std::move(*s);
}

double seconds_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

[[noreturn]] void die(const char* what, const std::string& err) {
  std::fprintf(stderr, "%s: %s\n", what, err.c_str());
  std::exit(1);
}

// Repetitions after `reps` until the store holds `want` records (untimed).
void fill(central::storage& db, int reps, std::uint64_t want) {
  auto n = db.record_count();
  for (int r = reps; n && *n < want; ++r) {
    run(db, r);
    n = db.record_count();
  }
  if (!n) die("count records", db.last_error());
}

constexpr double kBackupIntervalS = 86'400;  // the documented daily schedule (OPERATIONS.md)

struct backup_times {
  std::uint64_t records = 0;
  double backup_s = 0, verify_s = 0, restore_s = 0, rto_s = 0;
};

std::vector<bench::figure> backup_figures(const char* backend, const backup_times& t) {
  const std::string b = backend;
  const std::string what = "records in the store: " + std::to_string(t.records);
  std::fprintf(stderr, "  %s backup of %llu records: backup %.2f s, verify-backup %.2f s, "
               "restore %.2f s, RTO %.2f s\n", backend,
               static_cast<unsigned long long>(t.records), t.backup_s, t.verify_s, t.restore_s,
               t.rto_s);
  return {{"central_backup_1m_" + b + "_s", t.backup_s, "s", static_cast<double>(t.records),
           what + " (snapshot, copy and its verification)"},
          {"central_verify_backup_1m_" + b + "_s", t.verify_s, "s",
           static_cast<double>(t.records), what},
          {"central_rto_1m_" + b + "_s", t.rto_s, "s", t.backup_s,
           "restore incl. verification + high-water marks + reopen; baseline: backup time"},
          {"central_rpo_" + b + "_s", kBackupIntervalS + t.backup_s, "s", kBackupIntervalS,
           "store alone, daily schedule: interval + backup duration (0 within agents' retention "
           "with the replay after restore)"}};
}

// Reopens the restored store: the marks the restore command computes, then a record count.
void reopen_restored(const central::storage_options& o, std::uint64_t want) {
  auto db = open(o);
  auto marks = central::restored_high_water(*db);
  if (!marks || marks->size() != static_cast<std::size_t>(kAgents))
    die("high-water marks of the restored store", db->last_error());
  auto n = db->record_count();
  if (!n || *n != want)
    die("restored store", "holds " + (n ? std::to_string(*n) : db->last_error()) +
                              " records, expected " + std::to_string(want));
}

backup_times backup_sqlite(const std::filesystem::path& dir, const std::string& db_path,
                           std::uint64_t records) {
  backup_times t;
  t.records = records;
  std::string err;
  auto t0 = clk::now();
  auto b = central::backup_sqlite(db_path, (dir / "backups").string(), err);
  if (!b) die("backup_sqlite", err);
  t.backup_s = seconds_since(t0);
  t0 = clk::now();
  if (!central::verify_backup(b->file, err)) die("verify_backup", err);
  t.verify_s = seconds_since(t0);
  const auto target = (dir / "restored" / "central.db").string();
  std::string kept;
  t0 = clk::now();
  if (central::restore_sqlite(b->file, target, kept, err)) die("restore_sqlite", err);
  t.restore_s = seconds_since(t0);
  central::storage_options o;
  o.sqlite_path = target;
  reopen_restored(o, records);
  t.rto_s = seconds_since(t0);
  return t;
}

backup_times backup_pg(const std::filesystem::path& dir, test::postgres_server& server,
                       std::uint64_t records) {
  backup_times t;
  t.records = records;
  std::string err;
  auto t0 = clk::now();
  auto b = central::backup_pg(server.url(), (dir / "backups").string(), err);
  if (!b) die("backup_pg", err);
  t.backup_s = seconds_since(t0);
  t0 = clk::now();
  if (!central::verify_pg_backup(b->file, server.url(), err)) die("verify_pg_backup", err);
  t.verify_s = seconds_since(t0);
  // Over the live database, as `restore` does (every instance stopped: the bench's store is).
  t0 = clk::now();
  if (central::restore_pg(b->file, server.url(), err)) die("restore_pg", err);
  t.restore_s = seconds_since(t0);
  central::storage_options o;
  o.backend = central::storage_backend::postgresql;
  o.url = server.url();
  reopen_restored(o, records);
  t.rto_s = seconds_since(t0);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  std::uint64_t backup_records = 1'000'000;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--backup-records") backup_records = std::stoull(argv[i + 1]);
  std::vector<double> lite, pg, dec;
  std::vector<bench::figure> backups;
  for (int r = 0; r < a.reps; ++r) dec.push_back(decode_only(r));

  {
    auto dir = std::filesystem::temp_directory_path() / "semilab-bench-central";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    central::storage_options o;
    o.sqlite_path = (dir / "central.db").string();
    auto db = open(o);
    for (int r = 0; r < a.reps; ++r) lite.push_back(run(*db, r));
    if (backup_records > 0) {
      fill(*db, a.reps, backup_records);
      const auto n = db->record_count();
      db.reset();  // the service is stopped for a restore; a backup is online either way
      const auto t = backup_sqlite(dir, o.sqlite_path, n ? *n : 0);
      for (auto& f : backup_figures("sqlite", t)) backups.push_back(std::move(f));
    }
    db.reset();
    std::filesystem::remove_all(dir);
  }
  // SEMILAB_BENCH_SQLITE_ONLY=1: the SQLite figure alone (profiling the SQLite path).
  const bool sqlite_only = std::getenv("SEMILAB_BENCH_SQLITE_ONLY") != nullptr;
  if (sqlite_only) {
    const double l = bench::median(lite);
    backups.insert(backups.begin(), {"central_ingest_sqlite_per_s", l, "records/s",
                                     bench::median(dec), "decode+validate only, same frames"});
    bench::publish(a.results, backups);
    return 0;
  }
  {
    std::string err;
    auto server = test::postgres_server::start(test::postgres_server::options{true}, err);
    if (!server) {
      std::fprintf(stderr, "PostgreSQL for the bench: %s\n", err.c_str());
      return 1;
    }
    central::storage_options o;
    o.backend = central::storage_backend::postgresql;
    o.url = server->url();
    auto db = open(o);
    for (int r = 0; r < a.reps; ++r) pg.push_back(run(*db, r));
    if (backup_records > 0) {
      fill(*db, a.reps, backup_records);
      const auto n = db->record_count();
      db.reset();
      auto dir = std::filesystem::temp_directory_path() / "semilab-bench-central-pg";
      std::filesystem::remove_all(dir);
      const auto t = backup_pg(dir, *server, n ? *n : 0);
      std::filesystem::remove_all(dir);
      for (auto& f : backup_figures("pg", t)) backups.push_back(std::move(f));
    }
  }
  const double l = bench::median(lite);
  backups.insert(backups.begin(),
                 {{"central_ingest_sqlite_per_s", l, "records/s", bench::median(dec),
                   "decode+validate only, same frames"},
                  {"central_ingest_pg_per_s", bench::median(pg), "records/s", l,
                   "SQLite backend, same run"}});
  bench::publish(a.results, backups);
  return 0;
}
