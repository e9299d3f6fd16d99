#include "cli_data.hpp"

#include <semilab/schemas/record.hpp>
#include <semilab/schemas/sql.hpp>

#include <boost/json.hpp>
#include <sqlite3.h>

#include <charconv>
#include <cstdio>
#include <ctime>

namespace semilab::agent {

namespace json = boost::json;

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;

class ro_db {
 public:
  ro_db(const std::filesystem::path& p, std::string& error) {
    if (sqlite3_open_v2(p.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      error = p.string() + ": cannot open: " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
      sqlite3_close(db_);
      db_ = nullptr;
      return;
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~ro_db() { sqlite3_close(db_); }
  ro_db(const ro_db&) = delete;
  ro_db& operator=(const ro_db&) = delete;
  sqlite3* get() const { return db_; }
  explicit operator bool() const { return db_ != nullptr; }
  int version() const {
    auto v = schemas::schema_version(db_);
    return v ? *v : 0;
  }

 private:
  sqlite3* db_ = nullptr;
};

class query {
 public:
  query(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) s_ = nullptr;
  }
  ~query() { sqlite3_finalize(s_); }
  query(const query&) = delete;
  query& operator=(const query&) = delete;
  explicit operator bool() const { return s_ != nullptr; }
  query& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  bool row() { return s_ && sqlite3_step(s_) == SQLITE_ROW; }
  std::int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double real(int c) const { return sqlite3_column_double(s_, c); }
  int type(int c) const { return sqlite3_column_type(s_, c); }
  std::string text(int c) const {
    auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

std::string class_name(std::int64_t c) {
  if (c < 0 || c >= schemas::kRecordClassCount) return "class" + std::to_string(c);
  return std::string(schemas::to_string(static_cast<schemas::record_class>(c)));
}

std::string shortest(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, p) : std::string("nan");
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(s);
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

}  // namespace

std::string rfc3339_ns(std::int64_t ts_ns) {
  std::int64_t secs = ts_ns / kSecond;
  std::int64_t frac = ts_ns % kSecond;
  if (frac < 0) {
    frac += kSecond;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

std::optional<std::int64_t> parse_time_arg(std::string_view s, std::int64_t now_ns) {
  if (s == "now") return now_ns;
  // Relative: digits then one unit.
  if (!s.empty() && s.find_first_not_of("0123456789") == s.size() - 1 && s.size() >= 2) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, n);
    if (ec != std::errc{} || p != s.data() + s.size() - 1) return std::nullopt;
    std::int64_t unit = 0;
    switch (s.back()) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      case 'w': unit = 7 * 86400; break;
      default: return std::nullopt;
    }
    if (n > (INT64_MAX / kSecond) / unit) return std::nullopt;
    return now_ns - n * unit * kSecond;
  }
  // RFC 3339: YYYY-MM-DD[(T| )HH:MM:SS[.frac](Z|+HH:MM|-HH:MM)]
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    if (pos + len > s.size()) return false;
    auto [p, ec] = std::from_chars(s.data() + pos, s.data() + pos + len, out);
    return ec == std::errc{} && p == s.data() + pos + len;
  };
  int Y, M, D, h = 0, mi = 0, sec = 0;
  if (!num(0, 4, Y) || s.size() < 10 || s[4] != '-' || !num(5, 2, M) || s[7] != '-' || !num(8, 2, D))
    return std::nullopt;
  std::int64_t frac_ns = 0, offset_s = 0;
  if (s.size() > 10) {
    if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s.size() < 20 || !num(11, 2, h) ||
        s[13] != ':' || !num(14, 2, mi) || s[16] != ':' || !num(17, 2, sec))
      return std::nullopt;
    std::size_t i = 19;
    if (i < s.size() && s[i] == '.') {
      ++i;
      std::int64_t scale = kSecond / 10;
      std::size_t digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        frac_ns += (s[i] - '0') * scale;
        scale /= 10;
        ++i;
        ++digits;
      }
      if (digits == 0) return std::nullopt;
    }
    if (i >= s.size()) return std::nullopt;  // RFC 3339 requires the offset
    if (s[i] == 'Z' || s[i] == 'z') {
      if (i + 1 != s.size()) return std::nullopt;
    } else if (s[i] == '+' || s[i] == '-') {
      int oh, om;
      if (s.size() != i + 6 || !num(i + 1, 2, oh) || s[i + 3] != ':' || !num(i + 4, 2, om) || oh > 23 || om > 59)
        return std::nullopt;
      offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    } else {
      return std::nullopt;
    }
  }
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  std::time_t t = timegm(&tm);
  if (tm.tm_mday != D) return std::nullopt;  // 2026-02-30 normalised away
  return (static_cast<std::int64_t>(t) - offset_s) * kSecond + frac_ns;
}

json::object queue_depth(const std::filesystem::path& p, std::string& error) {
  ro_db db(p, error);
  if (!db) return {};
  int v = db.version();
  if (v == 0) return {{"classes", json::object{}}, {"dead_letters", 0}, {"retained", json::object{}}};
  json::object classes;
  for (int c = 0; c < schemas::kRecordClassCount; ++c)
    classes[class_name(c)] = json::object{{"records", 0}, {"bytes", 0}, {"oldest_ts_ns", "0"},
                                          {"oldest_seq", "0"}};
  sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr);
  {
    query q(db.get(), "SELECT class, COUNT(*), COALESCE(SUM(bytes),0), MIN(ts_ns), MIN(seq) "
                      "FROM outbox GROUP BY class");
    if (!q) {
      error = p.string() + ": not a semilab outbox: " + sqlite3_errmsg(db.get());
      return {};
    }
    while (q.row())
      classes[class_name(q.i64(0))] =
          json::object{{"records", q.i64(1)}, {"bytes", q.i64(2)}, {"oldest_ts_ns", std::to_string(q.i64(3))},
                       {"oldest", rfc3339_ns(q.i64(3))}, {"oldest_seq", std::to_string(q.i64(4))}};
  }
  json::object out{{"classes", std::move(classes)}};
  std::int64_t dead = 0;
  if (v >= 2) {
    query q(db.get(), "SELECT COUNT(*) FROM dead_letter");
    if (q.row()) dead = q.i64(0);
  }
  out["dead_letters"] = dead;
  json::object ret{{"records", 0}, {"bytes", 0}};
  if (v >= 3) {
    query q(db.get(), "SELECT COUNT(*), COALESCE(SUM(bytes),0), MIN(acked_ns), MIN(ts_ns) FROM retained");
    if (q.row() && q.i64(0) > 0) {
      ret = {{"records", q.i64(0)}, {"bytes", q.i64(1)}, {"oldest_ack", rfc3339_ns(q.i64(2))},
             {"oldest_record", rfc3339_ns(q.i64(3))}};
    }
  }
  out["retained"] = std::move(ret);
  sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr);
  return out;
}

json::object database_stats(const std::filesystem::path& p, std::string& error) {
  json::object out;
  std::error_code fec;
  for (auto suffix : {"", "-wal", "-shm"}) {
    auto f = p.string() + suffix;
    auto sz = std::filesystem::file_size(f, fec);
    out[std::string("file") + suffix + "_bytes"] = fec ? -1 : static_cast<std::int64_t>(sz);
  }
  ro_db db(p, error);
  if (!db) return out;
  out["schema_version"] = db.version();
  for (auto pragma : {"page_size", "page_count", "freelist_count", "journal_mode"}) {
    query q(db.get(), (std::string("PRAGMA ") + pragma).c_str());
    if (q.row()) {
      if (q.type(0) == SQLITE_INTEGER) out[pragma] = q.i64(0);
      else out[pragma] = q.text(0);
    }
  }
  json::object rows;
  {
    query t(db.get(), "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    std::vector<std::string> names;
    while (t.row()) names.push_back(t.text(0));
    for (auto& n : names) {
      query c(db.get(), ("SELECT COUNT(*) FROM \"" + n + "\"").c_str());
      if (c.row()) rows[n] = c.i64(0);
    }
  }
  out["rows"] = std::move(rows);
  json::object counters;
  {
    query q(db.get(), "SELECT name, value FROM counters ORDER BY name");
    while (q.row()) counters[q.text(0)] = q.i64(1);
  }
  out["counters"] = std::move(counters);
  return out;
}

std::optional<std::uint64_t> export_records(const std::filesystem::path& p, std::int64_t since_ns,
                                            std::int64_t until_ns, export_format f,
                                            std::ostream& out, std::string& error) {
  ro_db db(p, error);
  if (!db) return std::nullopt;
  int v = db.version();
  if (v == 0) {
    error = p.string() + ": empty database (nothing stored yet)";
    return std::nullopt;
  }
  const char* cols = "seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext, run_id";
  std::string sql = std::string("SELECT 'held', ") + cols + " FROM outbox WHERE ts_ns >= ?1 AND ts_ns < ?2";
  if (v >= 2) sql += std::string(" UNION ALL SELECT 'dead_letter', ") + cols + " FROM dead_letter WHERE ts_ns >= ?1 AND ts_ns < ?2";
  if (v >= 3) sql += std::string(" UNION ALL SELECT 'acked', ") + cols + " FROM retained WHERE ts_ns >= ?1 AND ts_ns < ?2";
  sql += " ORDER BY 2";
  sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr);  // one snapshot
  query q(db.get(), sql.c_str());
  if (!q) {
    error = p.string() + ": not a semilab outbox: " + sqlite3_errmsg(db.get());
    return std::nullopt;
  }
  q.bind(1, since_ns).bind(2, until_ns);
  if (f == export_format::csv)
    out << "seq,state,class,time,ts_ns,instrument,channel,value,unit,quality,run_id\n";
  std::uint64_t n = 0;
  while (q.row()) {
    std::string value, kind;
    switch (q.i64(8)) {
      case 0: value = shortest(q.real(9)); kind = "double"; break;
      case 1: value = std::to_string(q.i64(9)); kind = "int"; break;
      case 2:
        value = schemas::decimal{q.i64(9), static_cast<std::int8_t>(q.i64(10))}.to_string();
        kind = "decimal";
        break;
      default: value = q.text(11); kind = "text";
    }
    auto ts = q.i64(3);
    if (f == export_format::csv) {
      out << q.i64(1) << ',' << q.text(0) << ',' << class_name(q.i64(2)) << ',' << rfc3339_ns(ts)
          << ',' << ts << ',' << csv_field(q.text(4)) << ',' << csv_field(q.text(5)) << ','
          << csv_field(value) << ',' << csv_field(q.text(6)) << ',' << q.i64(7) << ','
          << csv_field(q.text(12)) << '\n';
    } else {
      // Integers beyond 2^53 (seq, ts_ns, int values) as strings: a JSON reader never rounds them.
      json::object o{{"seq", std::to_string(q.i64(1))},
                     {"state", q.text(0)},
                     {"class", class_name(q.i64(2))},
                     {"time", rfc3339_ns(ts)},
                     {"ts_ns", std::to_string(ts)},
                     {"instrument", q.text(4)},
                     {"channel", q.text(5)},
                     {"value", value},
                     {"kind", kind},
                     {"unit", q.text(6)},
                     {"quality", q.i64(7)},
                     {"run_id", q.text(12)}};
      out << json::serialize(o) << '\n';
    }
    ++n;
  }
  sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr);
  if (!out) {
    error = "writing the export failed";
    return std::nullopt;
  }
  return n;
}

}  // namespace semilab::agent
