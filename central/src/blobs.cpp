#include <semilab/central/api.hpp>
#include <semilab/central/blobs.hpp>
#include <semilab/schemas/signing.hpp>

#include <boost/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>

#include "log.hpp"

namespace semilab::central {

namespace {

namespace sc = semilab::schemas;

constexpr std::string_view kFileChannel = "filedrop.file";
constexpr std::string_view kRunPrefix = "file:";
constexpr std::uint64_t kMaxChunks = std::uint64_t{1} << 24;  // 64 GiB of 4 KiB chunks
constexpr std::size_t kRowsPerStatement = 64;

sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }
sql_param blob_p(std::string v) { return sql_param{false, 0, std::move(v), true}; }

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// "file:<sha256>" -> sha256, or "" when not a file run id.
std::string_view sha_of_run(std::string_view run_id) {
  if (!run_id.starts_with(kRunPrefix)) return {};
  auto sha = run_id.substr(kRunPrefix.size());
  return is_sha256_hex(sha) ? sha : std::string_view{};
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "blob:<i>/<n>" with i < n.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_chunk_channel(std::string_view ch) {
  if (!ch.starts_with("blob:")) return std::nullopt;
  ch.remove_prefix(5);
  auto slash = ch.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto i = parse_u64(ch.substr(0, slash));
  auto n = parse_u64(ch.substr(slash + 1));
  if (!i || !n || *n == 0 || *i >= *n || *n > kMaxChunks) return std::nullopt;
  return std::pair{*i, *n};
}

std::optional<std::string> unbase64(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t pad = 0;
  for (std::size_t k = 0; k < in.size(); ++k) {
    const char c = in[k];
    if (c == '=') {
      if (k + 2 < in.size()) return std::nullopt;  // padding only at the end
      ++pad;
      continue;
    }
    if (pad) return std::nullopt;
    const int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

using schemas::sha256_hex;

// bytea in PostgreSQL's text output ("\x<hex>"); SQLite hands the bytes over as they are.
std::string from_db_bytes(storage& db, std::string v) {
  if (db.backend() != storage_backend::postgresql || !v.starts_with("\\x")) return v;
  auto nib = [](char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
  };
  std::string out;
  out.reserve((v.size() - 2) / 2);
  for (std::size_t i = 2; i + 1 < v.size(); i += 2)
    out.push_back(static_cast<char>((nib(v[i]) << 4) | nib(v[i + 1])));
  return out;
}

struct file_row {
  const batch_to_store* b;
  const sc::record* r;
  std::string sha, name, folder, format, parse_error, analysis_error;
  bool has_parse_error = false, has_analysis_error = false;
  std::uint64_t size = 0;
};

struct chunk_row {
  std::string sha;
  std::uint64_t index, count;
  const std::string* data;
};

// Runs `head` + "(...),(...)" + `tail` for `rows` in statements of kRowsPerStatement rows; each
// column is an expression where '?' stands for its parameter (e.g. "NULLIF(?, '')": the generic
// parameters have no NULL).
template <class Row, class Bind>
boost::system::error_code insert_rows(storage& db, std::string_view head, std::string_view tail,
                                      std::span<const std::string_view> cols, const std::vector<Row>& rows,
                                      Bind bind, std::uint64_t* inserted = nullptr) {
  const std::size_t columns = cols.size();
  for (std::size_t at = 0; at < rows.size(); at += kRowsPerStatement) {
    const auto n = std::min(kRowsPerStatement, rows.size() - at);
    std::string sql(head);
    std::vector<sql_param> params;
    params.reserve(n * columns);
    for (std::size_t k = 0; k < n; ++k) {
      sql += k ? ",(" : "(";
      for (std::size_t c = 0; c < columns; ++c) {
        const auto q = cols[c].find('?');
        if (c) sql += ",";
        sql += std::string(cols[c].substr(0, q)) + "?" + std::to_string(k * columns + c + 1) +
               std::string(cols[c].substr(q + 1));
      }
      sql += ")";
      bind(rows[at + k], params);
    }
    sql += tail;
    auto r = db.execute(sql, params);
    if (!r) return r.error();
    if (inserted) *inserted += *r;
  }
  return {};
}

}  // namespace

bool has_blob_records(std::span<const batch_to_store> batches) {
  for (const auto& b : batches)
    for (const auto& r : b.frame->records)
      if (r.cls == sc::record_class::blob ||
          (r.cls == sc::record_class::run_result && r.channel == kFileChannel))
        return true;
  return false;
}

result<blob_absorb_stats> absorb_blobs(storage& db, std::span<const batch_to_store> batches,
                                       std::int64_t now, std::string& error) {
  blob_absorb_stats st;
  auto log = logger("blobs");
  std::vector<file_row> files;
  std::vector<chunk_row> chunks;
  // Chunk records to clear in `records`, as (agent, epoch) -> seqs.
  std::map<std::pair<std::string, std::uint64_t>, std::vector<std::uint64_t>> clear;
  for (const auto& b : batches) {
    const auto& h = b.frame->header;
    for (const auto& r : b.frame->records) {
      const bool chunk = r.cls == sc::record_class::blob;
      const bool file = r.cls == sc::record_class::run_result && r.channel == kFileChannel;
      if (!chunk && !file) continue;
      const auto sha = sha_of_run(r.run_id);
      const auto* text = std::get_if<std::string>(&r.val);
      if (sha.empty() || !text) {
        ++st.malformed;
        log->warn("{} seq {}: {} record without a file:<sha256> run id or text; kept as a record",
                  h.agent_id, r.seq, chunk ? "blob" : "filedrop.file");
        continue;
      }
      if (chunk) {
        ++st.chunks;
        auto idx = parse_chunk_channel(r.channel);
        if (!idx) {
          ++st.malformed;
          log->warn("{} seq {}: blob channel '{}' is not blob:<i>/<n>", h.agent_id, r.seq, r.channel);
          continue;
        }
        chunks.push_back({std::string(sha), idx->first, idx->second, text});
        clear[{h.agent_id, h.store_epoch}].push_back(r.seq);
        continue;
      }
      boost::system::error_code ec;
      auto v = boost::json::parse(*text, ec);
      const auto* o = ec ? nullptr : v.if_object();
      if (!o) {
        ++st.malformed;
        log->warn("{} seq {}: filedrop.file text is not a JSON object", h.agent_id, r.seq);
        continue;
      }
      auto str = [&](const char* k) -> std::optional<std::string> {
        if (auto* x = o->if_contains(k); x && x->is_string()) return std::string(x->as_string());
        return std::nullopt;
      };
      file_row f{&b, &r, std::string(sha), str("name").value_or(""), str("folder").value_or(""),
                 str("format").value_or(""), str("parse_error").value_or(""),
                 str("analysis_error").value_or(""), false, false, 0};
      f.has_parse_error = o->contains("parse_error");
      f.has_analysis_error = o->contains("analysis_error");
      if (auto* s = o->if_contains("size"); s && (s->is_uint64() || s->is_int64()))
        f.size = s->is_uint64() ? s->as_uint64() : static_cast<std::uint64_t>(std::max<std::int64_t>(0, s->as_int64()));
      if (auto claimed = str("sha256"); claimed && *claimed != f.sha) {
        ++st.malformed;
        log->warn("{} seq {}: filedrop.file names sha256 {} but its run id {}", h.agent_id, r.seq,
                  *claimed, f.sha);
        continue;
      }
      files.push_back(std::move(f));
    }
  }
  if (files.empty() && chunks.empty()) return st;

  const bool pg = db.backend() == storage_backend::postgresql;
  static constexpr std::string_view kFileCols[] = {"?", "?", "?", "?", "?", "?", "?", "?", "?", "?",
                                                   "NULLIF(?, '')", "NULLIF(?, '')", "?"};
  static constexpr std::string_view kChunkCols[] = {"?", "?", "?", "?", "?"};
  auto fail = [&](std::string_view what) -> result<blob_absorb_stats> {
    error = std::string(what) + ": " + db.last_error();
    (void)db.execute("ROLLBACK", {});
    return make_error_code(errc::store_write_failed);
  };
  if (!db.execute(pg ? "BEGIN" : "BEGIN IMMEDIATE", {})) return fail("begin");

  if (auto ec = insert_rows(
          db,
          "INSERT INTO blob_files(agent_id, store_epoch, record_seq, sha256, ts_ns, instrument, name, "
          "folder, size, format, parse_error, analysis_error, info) VALUES",
          " ON CONFLICT DO NOTHING", kFileCols, files,
          [](const file_row& f, std::vector<sql_param>& p) {
            const auto& h = f.b->frame->header;
            p.push_back(text_p(h.agent_id));
            p.push_back(num_p(static_cast<std::int64_t>(h.store_epoch)));
            p.push_back(num_p(static_cast<std::int64_t>(f.r->seq)));
            p.push_back(text_p(f.sha));
            p.push_back(num_p(f.r->ts_ns));
            p.push_back(text_p(f.r->instrument));
            p.push_back(text_p(f.name));
            p.push_back(text_p(f.folder));
            p.push_back(num_p(static_cast<std::int64_t>(f.size)));
            p.push_back(text_p(f.format));
            p.push_back(text_p(f.has_parse_error ? f.parse_error : ""));  // "" -> NULL
            p.push_back(text_p(f.has_analysis_error ? f.analysis_error : ""));
            p.push_back(text_p(std::get<std::string>(f.r->val)));
          },
          &st.files))
    return fail("blob_files");

  // Contents already stored need no staging: their chunks are only cleared.
  std::set<std::string> shas;
  for (const auto& c : chunks) shas.insert(c.sha);
  std::set<std::string> stored;
  for (const auto& sha : shas) {
    const sql_param p[] = {text_p(sha)};
    auto rows = db.query("SELECT 1 FROM blobs WHERE sha256 = ?1", p);
    if (!rows) return fail("blobs lookup");
    if (!rows->empty()) stored.insert(sha);
  }
  std::vector<chunk_row> staged;
  for (const auto& c : chunks)
    if (!stored.contains(c.sha)) staged.push_back(c);
  if (auto ec = insert_rows(
          db, "INSERT INTO blob_chunks(sha256, chunk, chunks, data, received_ns) VALUES",
          " ON CONFLICT DO NOTHING", kChunkCols, staged,
          [now](const chunk_row& c, std::vector<sql_param>& p) {
            p.push_back(text_p(c.sha));
            p.push_back(num_p(static_cast<std::int64_t>(c.index)));
            p.push_back(num_p(static_cast<std::int64_t>(c.count)));
            p.push_back(text_p(*c.data));
            p.push_back(num_p(now));
          }))
    return fail("blob_chunks");

  // The chunk records keep their key (sequence accounting) but not their text: stored once.
  for (const auto& [key, seqs] : clear) {
    std::vector<std::uint64_t> sorted = seqs;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& rg : sc::ranges_of(sorted)) {
      const sql_param p[] = {text_p(key.first), num_p(static_cast<std::int64_t>(key.second)),
                             num_p(static_cast<std::int64_t>(rg.first)),
                             num_p(static_cast<std::int64_t>(rg.last))};
      if (!db.execute("UPDATE records SET value_text = NULL WHERE agent_id = ?1 AND store_epoch = ?2"
                      " AND record_seq BETWEEN ?3 AND ?4 AND class = 3",
                      p))
        return fail("clearing chunk records");
    }
  }

  // Assemble every content this call completed.
  for (const auto& sha : shas) {
    if (stored.contains(sha)) continue;
    const sql_param p[] = {text_p(sha)};
    auto counts = db.query("SELECT COUNT(*), MIN(chunks), MAX(chunks) FROM blob_chunks WHERE sha256 = ?1", p);
    if (!counts || counts->empty()) return fail("blob_chunks count");
    const auto& row = counts->front();
    if (!row[0] || !row[1] || !row[2]) continue;
    const auto have = parse_u64(*row[0]), lo = parse_u64(*row[1]), hi = parse_u64(*row[2]);
    if (!have || !lo || !hi || *lo != *hi || *have < *lo) {
      if (lo && hi && *lo != *hi) {
        ++st.malformed;
        log->warn("blob {}: chunks disagree on their count ({} vs {})", sha, *lo, *hi);
      }
      continue;
    }
    auto parts = db.query("SELECT chunk, data FROM blob_chunks WHERE sha256 = ?1 ORDER BY chunk", p);
    if (!parts) return fail("blob_chunks read");
    std::string content;
    bool ok = parts->size() == *lo;
    for (std::size_t k = 0; ok && k < parts->size(); ++k) {
      const auto& pr = (*parts)[k];
      auto dec = pr[1] ? unbase64(*pr[1]) : std::nullopt;
      ok = pr[0] && parse_u64(*pr[0]) == k && dec;
      if (ok) content += *dec;
    }
    if (!ok || sha256_hex(content) != sha) {
      ++st.mismatched;
      log->error("blob {}: {} chunks assembled to {} bytes that do not hash to their name; kept staged",
                 sha, *lo, content.size());
      continue;
    }
    const sql_param ins[] = {text_p(sha), num_p(static_cast<std::int64_t>(content.size())),
                             num_p(static_cast<std::int64_t>(*lo)), blob_p(std::move(content)), num_p(now)};
    if (!db.execute("INSERT INTO blobs(sha256, size, chunks, data, stored_ns) VALUES(?1, ?2, ?3, ?4, ?5)"
                    " ON CONFLICT DO NOTHING",
                    ins))
      return fail("blobs insert");
    if (!db.execute("DELETE FROM blob_chunks WHERE sha256 = ?1", p)) return fail("blob_chunks delete");
    ++st.completed;
    log->info("blob {} stored ({} chunks)", sha, *lo);
  }
  if (!db.execute("COMMIT", {})) return fail("commit");
  return st;
}

result<std::vector<blob_file_row>> list_blob_files(storage& db, const blob_query& q) {
  std::string sql =
      "SELECT f.agent_id, f.store_epoch, f.record_seq, f.sha256, f.ts_ns, f.instrument, f.name, "
      "f.folder, f.size, f.format, f.parse_error, f.analysis_error, f.info, "
      "(SELECT COUNT(*) FROM blobs b WHERE b.sha256 = f.sha256) FROM blob_files f WHERE f.ts_ns >= ?1 "
      "AND f.ts_ns < ?2";
  std::vector<sql_param> p{num_p(q.from_ns), num_p(q.to_ns)};
  auto eq = [&](const char* col, const std::string& v) {
    if (v.empty()) return;
    p.push_back(text_p(v));
    sql += std::string(" AND f.") + col + " = ?" + std::to_string(p.size());
  };
  eq("sha256", q.sha256);
  eq("agent_id", q.agent_id);
  eq("instrument", q.instrument);
  eq("format", q.format);
  if (q.parse_error) sql += *q.parse_error ? " AND f.parse_error IS NOT NULL" : " AND f.parse_error IS NULL";
  p.push_back(num_p(static_cast<std::int64_t>(q.limit)));
  sql += " ORDER BY f.ts_ns DESC, f.agent_id, f.store_epoch, f.record_seq LIMIT ?" + std::to_string(p.size());
  auto rows = db.query(sql, p);
  if (!rows) return rows.error();
  std::vector<blob_file_row> out;
  for (auto& r : *rows) {
    auto i64 = [&](std::size_t c) {
      std::int64_t v = 0;
      if (r[c]) std::from_chars(r[c]->data(), r[c]->data() + r[c]->size(), v);
      return v;
    };
    blob_file_row f;
    f.agent_id = r[0].value_or("");
    f.store_epoch = static_cast<std::uint64_t>(i64(1));
    f.record_seq = static_cast<std::uint64_t>(i64(2));
    f.sha256 = r[3].value_or("");
    f.ts_ns = i64(4);
    f.instrument = r[5].value_or("");
    f.name = r[6].value_or("");
    f.folder = r[7].value_or("");
    f.size = static_cast<std::uint64_t>(i64(8));
    f.format = r[9].value_or("");
    f.parse_error = r[10];
    f.analysis_error = r[11];
    f.info = r[12].value_or("");
    f.stored = i64(13) > 0;
    out.push_back(std::move(f));
  }
  return out;
}

result<std::vector<blob_parameter>> blob_parameters(storage& db, const blob_file_row& f) {
  // Found through records_instrument_ts: every record of one file shares instrument and ts_ns.
  const sql_param p[] = {text_p(f.instrument), num_p(f.ts_ns), text_p(f.agent_id),
                         text_p("file:" + f.sha256)};
  auto rows = db.query(
      "SELECT channel, unit, value_real, value_int, value_text FROM records WHERE instrument = ?1 "
      "AND ts_ns = ?2 AND agent_id = ?3 AND run_id = ?4 AND class = 1 AND channel <> 'filedrop.file' "
      "ORDER BY record_seq",
      p);
  if (!rows) return rows.error();
  std::vector<blob_parameter> out;
  for (auto& r : *rows) {
    blob_parameter b;
    b.name = r[0].value_or("");
    b.unit = r[1].value_or("");
    if (r[2]) {
      double d = 0;
      std::from_chars(r[2]->data(), r[2]->data() + r[2]->size(), d);
      b.real = d;
    }
    if (r[3]) {
      std::int64_t v = 0;
      std::from_chars(r[3]->data(), r[3]->data() + r[3]->size(), v);
      b.integer = v;
    }
    b.text = r[4];
    out.push_back(std::move(b));
  }
  return out;
}

result<std::optional<std::string>> fetch_blob(storage& db, std::string_view sha256) {
  if (!is_sha256_hex(sha256)) return std::optional<std::string>{};
  const sql_param p[] = {text_p(std::string(sha256))};
  auto rows = db.query("SELECT data FROM blobs WHERE sha256 = ?1", p);
  if (!rows) return rows.error();
  if (rows->empty() || !rows->front()[0]) return std::optional<std::string>{};
  return std::optional<std::string>(from_db_bytes(db, std::move(*rows->front()[0])));
}

// ---- API routes (api.hpp: /api/v1/blobs, /api/v1/blobs/{sha256}) -------------------------------

namespace {

http_response blob_json_reply(unsigned status, const boost::json::value& v) {
  http_response r;
  r.status = status;
  r.body = boost::json::serialize(v) + "\n";
  return r;
}

http_response blob_error(unsigned status, std::string_view message) {
  return blob_json_reply(status, boost::json::object{{"error", message}});
}

// key=value pairs, %-decoded; nullopt on a broken escape.
std::optional<std::vector<std::pair<std::string, std::string>>> blob_query_pairs(std::string_view q) {
  auto decode = [](std::string_view v) -> std::optional<std::string> {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '+') {
        out += ' ';
      } else if (v[i] == '%') {
        if (i + 2 >= v.size()) return std::nullopt;
        unsigned x = 0;
        auto [p, ec] = std::from_chars(v.data() + i + 1, v.data() + i + 3, x, 16);
        if (ec != std::errc() || p != v.data() + i + 3) return std::nullopt;
        out += static_cast<char>(x);
        i += 2;
      } else {
        out += v[i];
      }
    }
    return out;
  };
  std::vector<std::pair<std::string, std::string>> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto k = decode(part.substr(0, eq));
    auto v = decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!k || !v) return std::nullopt;
    out.emplace_back(std::move(*k), std::move(*v));
  }
  return out;
}

}  // namespace

http_response api::blobs(std::string_view query) {
  auto pairs = blob_query_pairs(query);
  if (!pairs) return blob_error(400, "bad %-escape in the query");
  blob_query q;
  for (auto& [k, v] : *pairs) {
    // Init-capture: clang before 16 cannot capture a structured binding.
    auto i64 = [&t = v](std::int64_t lo, std::int64_t hi, std::int64_t& out) {
      std::int64_t x = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
      if (ec != std::errc() || p != t.data() + t.size() || t.empty() || x < lo || x > hi) return false;
      out = x;
      return true;
    };
    if (k == "sha256") q.sha256 = v;
    else if (k == "agent") q.agent_id = v;
    else if (k == "instrument") q.instrument = v;
    else if (k == "format") q.format = v;
    else if (k == "parse_error") {
      if (v != "true" && v != "false") return blob_error(400, "parse_error: expected true or false");
      q.parse_error = v == "true";
    } else if (k == "from_ns") {
      if (!i64(INT64_MIN, INT64_MAX, q.from_ns)) return blob_error(400, "from_ns: expected an integer");
    } else if (k == "to_ns") {
      if (!i64(INT64_MIN, INT64_MAX, q.to_ns)) return blob_error(400, "to_ns: expected an integer");
    } else if (k == "limit") {
      std::int64_t l = 0;
      if (!i64(1, 1000, l)) return blob_error(400, "limit: expected an integer 1..1000");
      q.limit = static_cast<std::size_t>(l);
    } else {
      return blob_error(400, "unknown parameter " + k +
                                 " (sha256, agent, instrument, format, parse_error, from_ns, to_ns, limit)");
    }
  }
  boost::json::array files;
  bool failed = false;
  read([&](storage& db) {
    auto rows = list_blob_files(db, q);
    if (!rows) {
      failed = true;
      return;
    }
    for (const auto& f : *rows) {
      boost::json::object o{{"agent_id", f.agent_id},
                            {"store_epoch", std::to_string(f.store_epoch)},
                            {"record_seq", std::to_string(f.record_seq)},
                            {"sha256", f.sha256},
                            {"ts_ns", std::to_string(f.ts_ns)},
                            {"instrument", f.instrument},
                            {"name", f.name},
                            {"folder", f.folder},
                            {"size", f.size},
                            {"format", f.format},
                            {"stored", f.stored}};
      o["parse_error"] = f.parse_error ? boost::json::value(*f.parse_error) : boost::json::value(nullptr);
      o["analysis_error"] =
          f.analysis_error ? boost::json::value(*f.analysis_error) : boost::json::value(nullptr);
      boost::system::error_code ec;
      auto info = boost::json::parse(f.info, ec);
      const auto* meta = !ec && info.is_object() ? info.as_object().if_contains("meta") : nullptr;
      o["meta"] = meta ? *meta : boost::json::object{};
      auto params = blob_parameters(db, f);
      if (!params) {
        failed = true;
        return;
      }
      boost::json::array ps;
      for (const auto& p : *params) {
        boost::json::value v = nullptr;
        if (p.real) v = *p.real;
        else if (p.integer) v = *p.integer;
        else if (p.text) v = *p.text;
        ps.push_back(boost::json::object{{"name", p.name}, {"unit", p.unit}, {"value", v}});
      }
      o["parameters"] = std::move(ps);
      files.push_back(std::move(o));
    }
  });
  if (failed) return store_failed("blobs");
  return blob_json_reply(200, boost::json::object{{"files", std::move(files)}});
}

http_response api::blob_content(std::string_view query) {
  auto pairs = blob_query_pairs(query);
  if (!pairs) return blob_error(400, "bad %-escape in the query");
  std::string sha;
  for (auto& [k, v] : *pairs) {
    if (k != "sha256") return blob_error(400, "unknown parameter " + k);
    sha = v;
  }
  if (!is_sha256_hex(sha)) return blob_error(400, "sha256: expected 64 lowercase hex digits");
  auto r = read([&](storage& db) { return fetch_blob(db, sha); });
  if (!r) return store_failed("blob");
  if (!*r) return blob_error(404, "no stored content with this sha256 (not uploaded, or chunks still missing)");
  http_response res;
  res.content_type = "application/octet-stream";
  res.body = std::move(**r);
  res.headers.emplace_back("ETag", "\"" + sha + "\"");
  return res;
}

}  // namespace semilab::central
