// Upgrade of the central store from every earlier schema version (issue 10, "Upgrades"), on
// SQLite (schemas/sql/central) and PostgreSQL (schemas/sql/central-pg, a server started by the
// test: tests/support/postgres.hpp).
//
// For each version N (whatever migrations the library embeds), a store is built as the released
// centrals left it: migration 1, the rows that version's code wrote, migration 2, its rows, ...
// up to N. Fixtures are keyed by migration name (the two backends number them differently:
// PostgreSQL's 0001_store already has SQLite's 0002_batch_bytes). The current code then opens it
// (open_storage runs the remaining migrations) and must still serve every record (measurements,
// seqs, gaps explained by old drop notices), agents and their counters, quarantined frames, the
// derived data model rows, API tokens and agent keys; and it must keep ingesting: a redelivery of
// old records counts as duplicates, new records are stored.
//
// A new migration that changes how rows are written should add a fixture below.
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/drop_notice.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/sql.hpp>

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "pg_migrations.hpp"
#include "support/postgres.hpp"

using namespace semilab;
using namespace semilab::central;
using schemas::decimal;
using schemas::record;
using schemas::record_class;

namespace {

constexpr std::uint64_t kEpoch = 12297829382473034410ull;  // above INT64_MAX
constexpr const char* kAgent = "lab1-agent-01";
constexpr std::int64_t kT0 = 1'764'250'000'000'000'000;
const std::string kTokenId = "0123456789ab";
const std::string kTokenSecret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// The raw connection a fixture writes through, as the old code did.
struct raw_db {
  virtual ~raw_db() = default;
  virtual void exec(const std::string& sql) = 0;
  virtual std::string blob(const std::string& hex) const = 0;  // literal
  virtual storage_backend backend() const = 0;
};

struct sqlite_raw : raw_db {
  sqlite3* db = nullptr;
  explicit sqlite_raw(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    exec("PRAGMA page_size=8192; PRAGMA journal_mode=WAL");
  }
  ~sqlite_raw() override { sqlite3_close(db); }
  void exec(const std::string& sql) override {
    char* msg = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    std::string m = msg ? msg : "";
    sqlite3_free(msg);
    REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << m);
  }
  std::string blob(const std::string& hex) const override { return "X'" + hex + "'"; }
  storage_backend backend() const override { return storage_backend::sqlite; }
};

struct pg_raw : raw_db {
  PGconn* c = nullptr;
  explicit pg_raw(const std::string& url) {
    c = PQconnectdb(url.c_str());
    REQUIRE_MESSAGE(PQstatus(c) == CONNECTION_OK, PQerrorMessage(c));
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);  // "already exists, skipping"
  }
  ~pg_raw() override { PQfinish(c); }
  void exec(const std::string& sql) override {
    PGresult* r = PQexec(c, sql.c_str());
    auto st = PQresultStatus(r);
    std::string m = PQresultErrorMessage(r);
    PQclear(r);
    REQUIRE_MESSAGE((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK), sql << ": " << m);
  }
  std::string blob(const std::string& hex) const override { return "'\\x" + hex + "'::bytea"; }
  storage_backend backend() const override { return storage_backend::postgresql; }
};

std::string i64(std::int64_t v) { return std::to_string(v); }
std::string u64s(std::uint64_t v) { return std::to_string(static_cast<std::int64_t>(v)); }
std::string q(const std::string& s) { return "'" + s + "'"; }  // fixture text has no quotes
std::string dbl(double d) {
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", d);
  return b;
}

record rec(std::uint64_t seq, record_class c, std::int64_t ts, std::string inst, std::string ch,
           std::string unit, schemas::value v, std::uint32_t quality = 0, std::string run = {}) {
  record r;
  r.seq = seq;
  r.cls = c;
  r.ts_ns = ts;
  r.instrument = std::move(inst);
  r.channel = std::move(ch);
  r.unit = std::move(unit);
  r.val = std::move(v);
  r.quality = quality;
  r.run_id = std::move(run);
  return r;
}

// A record row as every released central wrote it (value columns by kind, decimal with its
// exact text in value_repr).
void insert_record(raw_db& db, const record& r, std::int64_t received_ns) {
  std::string real = "NULL", integer = "NULL", text = "NULL", repr = "NULL";
  switch (r.val.index()) {
    case 0: real = dbl(std::get<double>(r.val)); break;
    case 1: integer = i64(std::get<std::int64_t>(r.val)); break;
    case 2:
      real = dbl(std::get<decimal>(r.val).to_double());
      repr = q(std::get<decimal>(r.val).to_string());
      break;
    default: text = q(std::get<std::string>(r.val));
  }
  db.exec("INSERT INTO records(agent_id, store_epoch, record_seq, class, ts_ns, instrument, "
          "channel, unit, quality, value_real, value_int, value_text, value_repr, run_id, "
          "received_ns) VALUES(" +
          q(kAgent) + ", " + u64s(kEpoch) + ", " + u64s(r.seq) + ", " +
          i64(static_cast<int>(r.cls)) + ", " + i64(r.ts_ns) + ", " + q(r.instrument) + ", " +
          q(r.channel) + ", " + q(r.unit) + ", " + i64(r.quality) + ", " + real + ", " + integer +
          ", " + text + ", " + repr + ", " + (r.run_id.empty() ? "NULL" : q(r.run_id)) + ", " +
          i64(received_ns) + ")");
}

void insert_batch(raw_db& db, std::uint64_t batch_id, std::uint64_t first, std::uint64_t last,
                  int records, int fresh) {
  db.exec("INSERT INTO batches(agent_id, store_epoch, batch_id, first_seq, last_seq, records, "
          "new_records, checksum, signature, received_ns, instance) VALUES(" +
          q(kAgent) + ", " + u64s(kEpoch) + ", " + u64s(batch_id) + ", " + u64s(first) + ", " +
          u64s(last) + ", " + i64(records) + ", " + i64(fresh) + ", " +
          db.blob("a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90") + ", NULL, " +
          i64(kT0 + 1000) + ", 'central-1')");
}

struct expected_state {
  std::map<std::uint64_t, record> records;
  std::uint64_t batches = 0, duplicates = 0, bytes = 0;
  bool model = false, token = false, key = false;
  schemas::ed25519_public_key pub{};
};

// 0001_store (edaab0b): agents, records of every kind, the batch ledger (one redelivery),
// a quarantined frame.
void f_store(raw_db& db, expected_state& e) {
  std::vector<record> rs = {
      rec(1, record_class::telemetry, kT0 + 1, "smu1", "curr", "A", 1.5),
      rec(2, record_class::telemetry, kT0 + 2, "plc1", "count", "", std::int64_t{-(1ll << 60)}),
      rec(3, record_class::run_result, kT0 + 3, "smu1", "vth", "V", decimal{1234500, -9}, 0, "run-7"),
      rec(4, record_class::event, kT0 + 4, "smu1", "state", "", std::string("connected")),
      rec(5, record_class::telemetry, kT0 + 5, "smu1", "curr", "A", 2.5e-7,
          schemas::quality::compliance | schemas::quality::over_range),
  };
  for (auto& r : rs) {
    insert_record(db, r, kT0 + 1000);
    e.records[r.seq] = r;
  }
  insert_batch(db, 100, 1, 5, 5, 5);
  insert_batch(db, 100, 1, 5, 5, 0);  // a redelivery
  e.batches = 2;
  e.duplicates = 5;
  db.exec("INSERT INTO agents(agent_id, site, first_seen_ns, last_batch_ns, last_ack_ns, records, "
          "batches, duplicates) VALUES(" + q(kAgent) + ", 'lab1', " + i64(kT0 + 1000) + ", " +
          i64(kT0 + 2000) + ", " + i64(kT0 + 2000) + ", 5, 2, 5)");
  db.exec("INSERT INTO quarantine(received_ns, topic, agent_id, reason, bytes, payload) VALUES(" +
          i64(kT0 + 1500) + ", 'semilab/v1/lab1/lab1-agent-01/batch', " + q(kAgent) +
          ", 'checksum mismatch', 100, " + db.blob("534c424601000100") + ")");
}

// 0002_batch_bytes (4d8d964; part of PostgreSQL's 0001_store): frame sizes.
void f_bytes(raw_db& db, expected_state& e) {
  db.exec("UPDATE batches SET bytes = 300");
  db.exec("UPDATE agents SET bytes = 600");
  e.bytes = 600;
}

// 0003_data_model (8dd3363): a drop notice naming seq 6 (evicted at the agent) and a record 8,
// stored with the derived rows that version maintained for newly stored records.
void f_model(raw_db& db, expected_state& e) {
  schemas::drop_notice n;
  n.action = schemas::drop_action::dropped;
  n.reason = "quota";
  n.cls = record_class::telemetry;
  n.store_epoch = kEpoch;
  n.records = 1;
  n.ranges = {{6, 6}};
  n.detail = "evicted at quota";
  auto notice = rec(7, record_class::event, kT0 + 7, std::string(schemas::kDropNoticeInstrument),
                    std::string(schemas::kDropNoticeChannel), "", schemas::encode_drop_notice(n));
  auto r8 = rec(8, record_class::telemetry, kT0 + 8, "smu1", "curr", "A", decimal{-42, -6});
  for (auto* r : {&notice, &r8}) {
    insert_record(db, *r, kT0 + 3000);
    e.records[r->seq] = *r;
  }
  insert_batch(db, 101, 7, 8, 2, 2);
  e.batches += 1;
  db.exec("UPDATE agents SET records = records + 2, batches = batches + 1");
  const std::int64_t day = (kT0 + 7) / 86'400'000'000'000, minute = (kT0 + 7) / 60'000'000'000;
  db.exec("INSERT INTO instruments(agent_id, instrument, first_seen_ns, last_seen_ns, records) "
          "VALUES(" + q(kAgent) + ", 'agent', " + i64(kT0 + 7) + ", " + i64(kT0 + 7) + ", 1), (" +
          q(kAgent) + ", 'smu1', " + i64(kT0 + 8) + ", " + i64(kT0 + 8) + ", 1)");
  db.exec("INSERT INTO instrument_minutes(agent_id, instrument, minute) VALUES(" + q(kAgent) +
          ", 'agent', " + i64(minute) + "), (" + q(kAgent) + ", 'smu1', " + i64(minute) + ")");
  db.exec("INSERT INTO daily_summaries(agent_id, instrument, day, measurements, results, events, "
          "runs, active_minutes) VALUES(" + q(kAgent) + ", 'agent', " + i64(day) +
          ", 0, 0, 1, 0, 1), (" + q(kAgent) + ", 'smu1', " + i64(day) + ", 1, 0, 0, 0, 1)");
  e.model = true;
}

std::string sha256_hex(const std::string& s) {
  unsigned char d[32];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), d, &n, EVP_sha256(), nullptr);
  std::string out;
  char b[3];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02x", d[i]);
    out += b;
  }
  return out;
}

// 0004_api_tokens (8dd3363): a viewer token (only the SHA-256 of its secret is kept).
void f_tokens(raw_db& db, expected_state& e) {
  db.exec("INSERT INTO api_tokens(id, name, role, secret_sha256, created_ns) VALUES(" +
          q(kTokenId) + ", 'grafana', 'viewer', " + q(sha256_hex(kTokenSecret)) + ", " +
          i64(kT0) + ")");
  e.token = true;
}

// 0005_agent_keys (19fa98a): the agent's approved Ed25519 key.
void f_keys(raw_db& db, expected_state& e) {
  for (std::size_t i = 0; i < e.pub.size(); ++i) e.pub[i] = static_cast<std::uint8_t>(i * 7 + 1);
  db.exec("INSERT INTO agent_keys(agent_id, key_id, public_key, approved_ns) VALUES(" + q(kAgent) +
          ", " + q(schemas::key_id_of(e.pub)) + ", " + q(schemas::public_key_hex(e.pub)) + ", " +
          i64(kT0) + ")");
  e.key = true;
}

using fixture_fn = std::function<void(raw_db&, expected_state&)>;

// Fixtures by migration name (after "NNNN_") and backend.
std::vector<fixture_fn> fixtures_for(storage_backend b, std::string_view name) {
  auto base = name.substr(name.find('_') + 1);
  if (base == "store") {
    if (b == storage_backend::postgresql) return {f_store, f_bytes};
    return {f_store};
  }
  if (base == "batch_bytes") return {f_bytes};
  if (base == "data_model") return {f_model};
  if (base == "api_tokens") return {f_tokens};
  if (base == "agent_keys") return {f_keys};
  return {};
}

// Applies migrations 1..n of `steps` the way the released code did, with the fixtures in between.
expected_state build_at(raw_db& db, std::span<const schemas::migration> steps, int n,
                        sqlite3* lite) {
  expected_state e;
  for (std::size_t i = 0; i < steps.size() && steps[i].version <= n; ++i) {
    if (lite) {
      std::string err;
      auto ec = schemas::apply_migrations(lite, steps.first(i + 1), err);
      REQUIRE_MESSAGE(!ec, err);
    } else {  // pg_store.cpp's procedure
      db.exec("BEGIN");
      db.exec("CREATE TABLE IF NOT EXISTS schema_version(version integer PRIMARY KEY, "
              "name text NOT NULL, applied_ns bigint NOT NULL)");
      db.exec(std::string(steps[i].sql));
      db.exec("INSERT INTO schema_version VALUES(" + std::to_string(steps[i].version) + ", " +
              q(std::string(steps[i].name)) + ", " + i64(kT0) + ")");
      db.exec("COMMIT");
    }
    for (auto& f : fixtures_for(db.backend(), steps[i].name)) f(db, e);
  }
  return e;
}

std::vector<record> as_records(const std::vector<measurement_row>& rows) {
  std::vector<record> out;
  for (auto& m : rows) {
    record r;
    r.seq = m.seq;
    r.cls = static_cast<record_class>(m.cls);
    r.ts_ns = m.ts_ns;
    r.instrument = m.instrument;
    r.channel = m.channel;
    r.unit = m.unit;
    r.quality = m.quality;
    r.run_id = m.run_id;
    if (m.repr) {
      auto d = schemas::parse_decimal(*m.repr);
      REQUIRE(d.has_value());
      r.val = *d;
    } else if (m.integer) {
      r.val = *m.integer;
    } else if (m.text) {
      r.val = *m.text;
    } else if (m.real) {
      r.val = *m.real;
    }
    out.push_back(r);
  }
  return out;
}

// The rows of a query as "a|b|c" lines.
std::vector<std::string> lines(storage& s, const std::string& sql) {
  const sql_param p[] = {sql_param{true, 0, kAgent}};
  auto r = s.query(sql, p);
  REQUIRE_MESSAGE(r.has_value(), sql << ": " << s.last_error());
  std::vector<std::string> out;
  for (const auto& row : *r) {
    std::string l;
    for (const auto& c : row) l += (l.empty() ? "" : "|") + c.value_or("NULL");
    out.push_back(l);
  }
  return out;
}

// The data model (0003_data_model.sql) computed from scratch over `e.records`, as ingest would
// have kept it had every record arrived after version 3; compared with the store's tables.
void check_model(storage& s, const expected_state& e) {
  struct inst { std::int64_t first = INT64_MAX, last = INT64_MIN; int n = 0; };
  struct run { std::string inst; std::int64_t first = INT64_MAX, last = INT64_MIN; int n = 0, r = 0; };
  struct day { int m = 0, r = 0, ev = 0, runs = 0, mins = 0; };
  std::map<std::string, inst> insts;
  std::map<std::string, run> runs;
  std::set<std::pair<std::string, std::int64_t>> minutes;
  std::map<std::pair<std::string, std::int64_t>, day> days;
  for (const auto& [seq, r] : e.records) {  // seq order = ts order in the fixtures
    auto& i = insts[r.instrument];
    i.first = std::min(i.first, r.ts_ns);
    i.last = std::max(i.last, r.ts_ns);
    ++i.n;
    const std::int64_t minute = r.ts_ns / 60'000'000'000, d = minute / 1440;
    minutes.insert({r.instrument, minute});
    auto& dd = days[{r.instrument, d}];
    if (r.cls == record_class::telemetry) ++dd.m;
    if (r.cls == record_class::run_result) ++dd.r;
    if (r.cls == record_class::event) ++dd.ev;
    if (!r.run_id.empty()) {
      auto& x = runs[r.run_id];
      if (r.ts_ns < x.first) x.inst = r.instrument;
      x.first = std::min(x.first, r.ts_ns);
      x.last = std::max(x.last, r.ts_ns);
      ++x.n;
      if (r.cls == record_class::run_result) ++x.r;
    }
  }
  for (const auto& [k, m] : minutes) ++days[{k, m / 1440}].mins;
  for (const auto& [id, x] : runs) ++days[{x.inst, (x.first / 60'000'000'000) / 1440}].runs;
  std::vector<std::string> want;
  for (const auto& [k, i] : insts)
    want.push_back(k + "|" + i64(i.first) + "|" + i64(i.last) + "|" + i64(i.n));
  CHECK(lines(s, "SELECT instrument, first_seen_ns, last_seen_ns, records FROM instruments "
                 "WHERE agent_id = ?1 ORDER BY instrument") == want);
  want.clear();
  for (const auto& [id, x] : runs)
    want.push_back(id + "|" + x.inst + "|" + i64(x.first) + "|" + i64(x.last) + "|" + i64(x.n) +
                   "|" + i64(x.r));
  CHECK(lines(s, "SELECT run_id, instrument, first_ts_ns, last_ts_ns, records, results FROM runs "
                 "WHERE agent_id = ?1 ORDER BY run_id") == want);
  want.clear();
  for (const auto& [k, m] : minutes) want.push_back(k + "|" + i64(m));
  CHECK(lines(s, "SELECT instrument, minute FROM instrument_minutes WHERE agent_id = ?1 "
                 "ORDER BY instrument, minute") == want);
  want.clear();
  for (const auto& [k, d] : days)
    want.push_back(k.first + "|" + i64(k.second) + "|" + i64(d.m) + "|" + i64(d.r) + "|" +
                   i64(d.ev) + "|" + i64(d.runs) + "|" + i64(d.mins));
  CHECK(lines(s, "SELECT instrument, day, measurements, results, events, runs, active_minutes "
                 "FROM daily_summaries WHERE agent_id = ?1 ORDER BY instrument, day") == want);
}

// The checks on a store opened by the current code.
void check_upgraded(storage& s, const expected_state& e) {
  auto agents = s.agents();
  REQUIRE(agents.has_value());
  REQUIRE(agents->size() == 1);
  const auto& a = (*agents)[0];
  CHECK(a.agent_id == kAgent);
  CHECK(a.site == "lab1");
  CHECK(a.records == e.records.size());
  CHECK(a.batches == e.batches);
  CHECK(a.duplicates == e.duplicates);
  CHECK(a.bytes == e.bytes);
  CHECK(a.last_ack_ns == kT0 + 2000);

  auto count = s.record_count();
  CHECK((count.has_value() && *count == e.records.size()));
  auto seqs = s.record_seqs(kAgent, kEpoch);  // the u64 epoch read back through its bits
  REQUIRE(seqs.has_value());
  std::vector<std::uint64_t> want_seqs;
  for (auto& [k, r] : e.records) want_seqs.push_back(k);
  CHECK(*seqs == want_seqs);

  // Every value as stored by the old code, through the measurements API.
  measurement_query mq;
  mq.agent_id = kAgent;
  mq.limit = 100;
  auto rows = s.measurements(mq);
  REQUIRE(rows.has_value());
  for (auto& m : *rows) CHECK(m.store_epoch == kEpoch);
  std::vector<record> want;
  for (auto& [k, r] : e.records) want.push_back(r);
  CHECK(as_records(*rows) == want);

  auto ql = s.quarantine_list(10, 0);
  REQUIRE(ql.has_value());
  REQUIRE(ql->size() == 1);
  auto qe = s.quarantine_get((*ql)[0].id);
  REQUIRE(qe.has_value());
  REQUIRE(qe->has_value());
  CHECK((*qe)->reason == "checksum mismatch");
  CHECK((*qe)->payload == std::vector<std::uint8_t>{0x53, 0x4c, 0x42, 0x46, 1, 0, 1, 0});

  if (e.model) {
    // The old drop notice explains the gap it named.
    auto gaps = s.gaps(kAgent);
    REQUIRE(gaps.has_value());
    REQUIRE(gaps->size() == 1);
    CHECK((*gaps)[0].first == 6);
    CHECK((*gaps)[0].last == 6);
    CHECK((*gaps)[0].explained);
    CHECK((*gaps)[0].reason == "quota");
  }
  // The data model covers every record, also those stored before it existed (back-filled by
  // central 0010 / pg 0009), and the records ingest counted since are not counted twice.
  check_model(s, e);
  if (e.token) {
    token_table t;
    CHECK_FALSE(t.load(s));
    auto r = t.check(presented_token{kTokenId, kTokenSecret});
    CHECK((r.has_value() && *r == role::viewer));
    CHECK_FALSE(t.check(presented_token{kTokenId, std::string(64, '0')}).has_value());
  }
  if (e.key) {
    auto keys = list_agent_keys(s, kAgent, false);
    REQUIRE(keys.has_value());
    REQUIRE(keys->size() == 1);
    CHECK((*keys)[0].public_key == e.pub);
    CHECK((*keys)[0].key_id == schemas::key_id_of(e.pub));
  }

  // Ingest continues: a redelivery of old records only counts duplicates, new ones are stored.
  schemas::agent_topic_parts topic{"lab1", kAgent, schemas::agent_topic_kind::batch};
  schemas::decoded_frame old;
  old.header.agent_id = kAgent;
  old.header.store_epoch = kEpoch;
  old.header.batch_id = 100;
  old.records = {e.records.at(1), e.records.at(2)};
  old.header.ranges = {{1, 2}};
  old.header.record_count = 2;
  auto st = s.store_batch(topic, old, 200, "central-2");
  REQUIRE_MESSAGE(st.has_value(), s.last_error());
  CHECK(st->new_records == 0);
  CHECK(st->duplicates == 2);
  schemas::decoded_frame fresh = old;
  fresh.header.batch_id = 200;
  fresh.records = {rec(20, record_class::telemetry, kT0 + 20, "smu1", "curr", "A", decimal{3, -3})};
  fresh.header.ranges = {{20, 20}};
  fresh.header.record_count = 1;
  st = s.store_batch(topic, fresh, 100, "central-2");
  REQUIRE_MESSAGE(st.has_value(), s.last_error());
  CHECK(st->new_records == 1);
  agents = s.agents();
  REQUIRE(agents.has_value());
  CHECK((*agents)[0].records == e.records.size() + 1);
  CHECK((*agents)[0].duplicates == e.duplicates + 2);
  CHECK((*agents)[0].batches == e.batches + 2);
  CHECK((*agents)[0].bytes == e.bytes + 300);
  auto inst = s.instruments(kAgent);
  REQUIRE(inst.has_value());
  bool found = false;
  for (auto& i : *inst)
    if (i.instrument == "smu1") {
      found = true;
      // Every smu1 record (back-filled ones included) plus the new one.
      std::uint64_t smu1 = 1;
      for (const auto& [k, r] : e.records) smu1 += r.instrument == "smu1";
      CHECK(i.records == smu1);
    }
  CHECK(found);
}

int newest_of(std::span<const schemas::migration> s) { return s.empty() ? 0 : s.back().version; }

}  // namespace

TEST_CASE("a SQLite central store of every earlier schema version opens, serves and ingests") {
  auto steps = schemas::central_store_migrations();
  REQUIRE(!steps.empty());
  for (const auto& m : steps) {
    CAPTURE(m.name);
    semilab::test::temp_dir dir;
    const std::string path = (dir.path() / "central.db").string();
    expected_state e;
    {
      sqlite_raw raw(path);
      e = build_at(raw, steps, m.version, raw.db);
      auto v = schemas::schema_version(raw.db);
      CHECK((v.has_value() && *v == m.version));
    }
    storage_options o;
    o.sqlite_path = path;
    std::string err;
    {
      // Read-only tools (admin CLI on a live store) read an old store before it is migrated.
      o.mode = open_mode::read_only;
      auto ro = open_storage(o, err);
      REQUIRE_MESSAGE(ro.has_value(), err);
      auto c = (*ro)->record_count();
      CHECK((c.has_value() && *c == e.records.size()));
    }
    o.mode = open_mode::read_write;
    auto s = open_storage(o, err);
    REQUIRE_MESSAGE(s.has_value(), err);
    {
      sqlite_raw raw(path);
      auto v = schemas::schema_version(raw.db);
      CHECK((v.has_value() && *v == newest_of(steps)));
    }
    check_upgraded(**s, e);
  }
}

TEST_CASE("a PostgreSQL central store of every earlier schema version opens, serves and ingests") {
  std::string perr;
  auto server = semilab::test::postgres_server::start(perr);
  REQUIRE_MESSAGE(server != nullptr, "PostgreSQL test server: " << perr);
  auto steps = central_pg_migrations();
  REQUIRE(!steps.empty());
  int db_no = 0;
  for (const auto& m : steps) {
    CAPTURE(m.name);
    const std::string name = "up" + std::to_string(++db_no);
    REQUIRE(server->create_database(name) == 0);
    expected_state e;
    {
      pg_raw raw(server->url(name));
      e = build_at(raw, steps, m.version, nullptr);
    }
    storage_options o;
    o.backend = storage_backend::postgresql;
    o.url = server->url(name);
    std::string err;
    auto s = open_storage(o, err);
    REQUIRE_MESSAGE(s.has_value(), err);
    {
      auto v = (*s)->query("SELECT MAX(version) FROM schema_version", {});
      REQUIRE(v.has_value());
      CHECK((*v)[0][0] == std::to_string(newest_of(steps)));
    }
    check_upgraded(**s, e);
  }
}

TEST_CASE("a SQLite central store newer than this program is refused, not touched") {
  auto steps = schemas::central_store_migrations();
  semilab::test::temp_dir dir;
  const std::string path = (dir.path() / "central.db").string();
  {
    sqlite_raw raw(path);
    build_at(raw, steps, newest_of(steps), raw.db);
    raw.exec("INSERT INTO schema_version(version, name, applied_ns) VALUES(" +
             std::to_string(newest_of(steps) + 1) + ", '9999_future', 0)");
  }
  storage_options o;
  o.sqlite_path = path;
  std::string err;
  auto s = open_storage(o, err);
  CHECK_FALSE(s.has_value());
  CHECK(err.find("newer than this program") != std::string::npos);
}
