// central_ingest_sqlite_per_s / central_ingest_pg_per_s: records/s through the central ingest
// processor (frame decode + validation + group commit + acks) into each storage backend, with
// realistic batches (100 records of decimal readings, one instrument channel, run ids), groups
// of 64 batches per transaction as the worker forms them under load. Durable commits: SQLite
// WAL synchronous=FULL; PostgreSQL synchronous_commit=on with fsync on (the server is started by
// the bench, tests/support/postgres.hpp). Median of --reps repetitions, 200 000 records each.
// Baselines (same run): SQLite against decode+validate only (the ceiling without storage);
// PostgreSQL against the SQLite figure.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <semilab/central/ingest.hpp>
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
  schemas::frame_encoder enc;
  std::vector<central::inbound_message> out;
  out.reserve(kBatches);
  const std::int64_t t0 = central::now_ns() - 3'600'000'000'000;
  for (std::size_t b = 0; b < kBatches; ++b) {
    const int a = static_cast<int>(b % kAgents);
    const std::uint64_t nth = static_cast<std::uint64_t>(rep) * kBatches / kAgents + b / kAgents;
    schemas::batch bt;
    bt.agent_id = "agent-" + std::to_string(a);
    bt.store_epoch = 1;
    bt.batch_id = nth + 1;
    for (std::size_t i = 0; i < kRecords; ++i) {
      schemas::record r;
      r.seq = nth * kRecords + i + 1;
      r.cls = schemas::record_class::telemetry;
      r.ts_ns = t0 + static_cast<std::int64_t>(r.seq) * 10'000'000;
      r.instrument = "smu1";
      r.channel = "curr";
      r.unit = "A";
      r.val = schemas::decimal{3978508 + static_cast<std::int64_t>(i % 97), -13};
      r.run_id = "run-" + std::to_string(nth / 10);
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

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  std::vector<double> lite, pg, dec;
  for (int r = 0; r < a.reps; ++r) dec.push_back(decode_only(r));

  {
    auto dir = std::filesystem::temp_directory_path() / "semilab-bench-central";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    central::storage_options o;
    o.sqlite_path = (dir / "central.db").string();
    auto db = open(o);
    for (int r = 0; r < a.reps; ++r) lite.push_back(run(*db, r));
    db.reset();
    std::filesystem::remove_all(dir);
  }
  // SEMILAB_BENCH_SQLITE_ONLY=1: the SQLite figure alone (profiling the SQLite path).
  const bool sqlite_only = std::getenv("SEMILAB_BENCH_SQLITE_ONLY") != nullptr;
  if (sqlite_only) {
    const double l = bench::median(lite);
    bench::publish(a.results, {{"central_ingest_sqlite_per_s", l, "records/s", bench::median(dec),
                                "decode+validate only, same frames"}});
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
  }
  const double l = bench::median(lite);
  bench::publish(a.results, {{"central_ingest_sqlite_per_s", l, "records/s", bench::median(dec),
                              "decode+validate only, same frames"},
                             {"central_ingest_pg_per_s", bench::median(pg), "records/s", l,
                              "SQLite backend, same run"}});
  return 0;
}
