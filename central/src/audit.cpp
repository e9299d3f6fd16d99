// The audit trail and batch re-verification (central/include/semilab/central/audit.hpp).
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>

#include <boost/json.hpp>

#include <openssl/evp.h>

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>

namespace semilab::central {

namespace sc = semilab::schemas;

namespace {

sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }

std::int64_t i64(const sql_cell& c) {
  std::int64_t v = 0;
  if (c) std::from_chars(c->data(), c->data() + c->size(), v);
  return v;
}

using sc::sha256_hex;

void field(std::string& out, std::string_view v) {
  out += std::to_string(v.size());
  out += ':';
  out += v;
  out += '\n';
}
void opt_field(std::string& out, const std::optional<std::string>& v) {
  if (v) field(out, *v);
  else out += "-\n";  // NULL differs from "" (the length prefix always precedes a value)
}

const std::string kZeroHash(64, '0');
constexpr std::string_view kNullText = "\x01null";

std::mutex g_ctx_mutex;
audit_context g_ctx;

std::string os_actor() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_name)
    return std::string("os:") + pw->pw_name;
  return "os:uid" + std::to_string(::geteuid());
}

// The hex of a BLOB column, the same text on both backends.
std::string hex_col(storage& db, std::string_view col) {
  std::string c(col);
  if (db.backend() == storage_backend::postgresql)
    return "COALESCE(encode(" + c + ", 'hex'), '')";
  return "lower(hex(" + c + "))";
}

constexpr std::string_view kEntryColumns =
    "chain, seq, at_ns, actor, action, target, reason, old_value, new_value, ref_id, prev_hash, "
    "entry_hash";

audit_entry entry_of(const std::vector<sql_cell>& r) {
  audit_entry e;
  e.chain = r[0].value_or("");
  e.seq = i64(r[1]);
  e.at_ns = i64(r[2]);
  e.actor = r[3].value_or("");
  e.action = r[4].value_or("");
  e.target = r[5].value_or("");
  e.reason = r[6].value_or("");
  e.old_value = r[7];
  e.new_value = r[8];
  if (r[9]) e.ref_id = i64(r[9]);
  e.prev_hash = r[10].value_or("");
  e.entry_hash = r[11].value_or("");
  return e;
}

void push_entry_params(std::vector<sql_param>& p, const audit_entry& e) {
  auto opt = [](const std::optional<std::string>& v) { return text_p(v ? *v : std::string(kNullText)); };
  p.push_back(text_p(e.chain));
  p.push_back(num_p(e.seq));
  p.push_back(num_p(e.at_ns));
  p.push_back(text_p(e.actor));
  p.push_back(text_p(e.action));
  p.push_back(text_p(e.target));
  p.push_back(text_p(e.reason));
  p.push_back(opt(e.old_value));
  p.push_back(opt(e.new_value));
  p.push_back(num_p(e.ref_id ? *e.ref_id : -1));
  p.push_back(text_p(e.prev_hash));
  p.push_back(text_p(e.entry_hash));
}

// "INSERT INTO audit_log(...) VALUES(?1..?12), (?13..?24), ..." for `rows` entries. sql_param
// cannot be NULL: an absent old/new value is bound as kNullText and an absent ref_id as -1, and
// NULLIF turns them back into NULL.
std::string insert_sql(std::size_t rows) {
  std::string s = "INSERT INTO audit_log(" + std::string(kEntryColumns) + ") VALUES";
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t b = r * 12;
    auto q = [&](std::size_t i) { return "?" + std::to_string(b + i); };
    s += r ? ", (" : " (";
    for (std::size_t i = 1; i <= 12; ++i) {
      if (i > 1) s += ", ";
      if (i == 8 || i == 9) s += "NULLIF(" + q(i) + ", '" + std::string(kNullText) + "')";
      else if (i == 10) s += "NULLIF(CAST(" + q(i) + " AS BIGINT), -1)";
      else if (i == 2 || i == 3) s += "CAST(" + q(i) + " AS BIGINT)";
      else s += q(i);
    }
    s += ')';
  }
  return s;
}

struct chain_tail {
  std::int64_t seq = 0;
  std::string hash = kZeroHash;
  std::int64_t ref_id = 0;
};

result<chain_tail> tail_of(storage& db, std::string_view chain) {
  const sql_param p[] = {text_p(std::string(chain))};
  auto rows = db.query(
      "SELECT seq, entry_hash, ref_id FROM audit_log WHERE chain = ?1 ORDER BY seq DESC LIMIT 1", p);
  if (!rows) return rows.error();
  chain_tail t;
  if (!rows->empty()) {
    t.seq = i64((*rows)[0][0]);
    t.hash = (*rows)[0][1].value_or("");
    t.ref_id = i64((*rows)[0][2]);
  }
  return t;
}

std::string utc_stamp(std::int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%S", &tm);
  return buf;
}

std::vector<std::uint8_t> unhex(std::string_view h) {
  std::vector<std::uint8_t> out;
  if (h.size() % 2) return out;
  out.reserve(h.size() / 2);
  auto d = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < h.size(); i += 2) {
    int hi = d(h[i]), lo = d(h[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

std::string ingest_chain(std::string_view instance) { return "ingest:" + std::string(instance); }

std::string audit_canonical(const audit_entry& e) {
  std::string s = "semilab-audit-v1\n";
  field(s, e.chain);
  field(s, std::to_string(e.seq));
  field(s, std::to_string(e.at_ns));
  field(s, e.actor);
  field(s, e.action);
  field(s, e.target);
  field(s, e.reason);
  opt_field(s, e.old_value);
  opt_field(s, e.new_value);
  opt_field(s, e.ref_id ? std::optional<std::string>(std::to_string(*e.ref_id)) : std::nullopt);
  return s;
}

std::string audit_hash(const audit_entry& e) { return sha256_hex(e.prev_hash + audit_canonical(e)); }

void set_audit_context(audit_context c) {
  std::lock_guard lock(g_ctx_mutex);
  g_ctx = std::move(c);
}

audit_context current_audit_context() {
  std::lock_guard lock(g_ctx_mutex);
  audit_context c = g_ctx;
  if (c.actor.empty()) c.actor = os_actor();
  return c;
}

boost::system::error_code audit_record(storage& db, const audit_action& a, std::int64_t now,
                                       std::string& error) {
  const auto ctx = current_audit_context();
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto tail = tail_of(db, kAdminChain);
    if (!tail) {
      error = "audit: " + db.last_error();
      return tail.error();
    }
    audit_entry e;
    e.chain = std::string(kAdminChain);
    e.seq = tail->seq + 1;
    e.at_ns = now;
    e.actor = a.actor.empty() ? ctx.actor : a.actor;
    e.action = a.action;
    e.target = a.target;
    e.reason = a.reason.empty() ? ctx.reason : a.reason;
    e.old_value = a.old_value;
    e.new_value = a.new_value;
    e.prev_hash = tail->hash;
    e.entry_hash = audit_hash(e);
    std::vector<sql_param> p;
    push_entry_params(p, e);
    if (auto n = db.execute(insert_sql(1), p)) return {};
    // Another writer appended seq first (primary key): read the new tail and try again.
    error = "audit: " + db.last_error();
  }
  return make_error_code(errc::store_write_failed);
}

result<std::vector<ledger_digest>> ledger_digests(storage& db, std::string_view instance,
                                                  std::int64_t after_id, std::int64_t upto_id,
                                                  std::size_t limit) {
  const std::string sql =
      "SELECT id, agent_id, store_epoch, batch_id, first_seq, last_seq, records, new_records, " +
      hex_col(db, "checksum") + ", " + hex_col(db, "signature") + ", " +
      hex_col(db, "signed_header") +
      ", COALESCE(key_id, ''), received_ns, instance, bytes FROM batches "
      "WHERE instance = ?1 AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4";
  const sql_param p[] = {text_p(std::string(instance)), num_p(after_id), num_p(upto_id),
                         num_p(static_cast<std::int64_t>(limit))};
  auto rows = db.query(sql, p);
  if (!rows) return rows.error();
  std::vector<ledger_digest> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    std::string canon = "semilab-ledger-v1\n";
    for (const auto& c : r) opt_field(canon, c);
    ledger_digest d;
    d.id = i64(r[0]);
    d.received_ns = i64(r[12]);
    d.target = r[1].value_or("") + "/" + r[2].value_or("") + "/" + r[3].value_or("");
    d.digest = sha256_hex(canon);
    out.push_back(std::move(d));
  }
  return out;
}

result<std::size_t> audit_catch_up(storage& db, std::string_view instance, std::size_t max_rows) {
  const std::string chain = ingest_chain(instance);
  auto tail = tail_of(db, chain);
  if (!tail) return tail.error();
  auto rows = ledger_digests(db, instance, tail->ref_id, INT64_MAX, max_rows);
  if (!rows) return rows.error();
  if (rows->empty()) return std::size_t{0};
  std::vector<sql_param> p;
  p.reserve(rows->size() * 12);
  std::string prev = tail->hash;
  std::int64_t seq = tail->seq;
  for (const auto& d : *rows) {
    audit_entry e;
    e.chain = chain;
    e.seq = ++seq;
    e.at_ns = d.received_ns;
    e.actor = chain;
    e.action = "batch.store";
    e.target = d.target;
    e.new_value = d.digest;
    e.ref_id = d.id;
    e.prev_hash = prev;
    e.entry_hash = audit_hash(e);
    prev = e.entry_hash;
    push_entry_params(p, e);
  }
  auto n = db.execute(insert_sql(rows->size()), p);
  if (!n) return n.error();
  return rows->size();
}

result<std::vector<chain_head>> audit_heads(storage& db) {
  auto rows = db.query(
      "SELECT a.chain, a.seq, a.entry_hash, a.at_ns FROM audit_log a JOIN "
      "(SELECT chain, MAX(seq) AS seq FROM audit_log GROUP BY chain) m "
      "ON a.chain = m.chain AND a.seq = m.seq ORDER BY a.chain",
      {});
  if (!rows) return rows.error();
  std::vector<chain_head> out;
  for (const auto& r : *rows)
    out.push_back(chain_head{r[0].value_or(""), i64(r[1]), r[2].value_or(""), i64(r[3])});
  return out;
}

std::string head_canonical(const head_file& h) {
  std::string s = "semilab-audit-head-v1\n";
  field(s, std::to_string(h.exported_ns));
  for (const auto& c : h.heads) {
    field(s, c.chain);
    field(s, std::to_string(c.seq));
    field(s, c.entry_hash);
    field(s, std::to_string(c.at_ns));
  }
  return s;
}

std::string encode_head_file(const head_file& h) {
  boost::json::object o;
  o["v"] = 1;
  o["exported_ns"] = std::to_string(h.exported_ns);
  boost::json::array chains;
  for (const auto& c : h.heads)
    chains.push_back(boost::json::object{{"chain", c.chain},
                                         {"seq", std::to_string(c.seq)},
                                         {"hash", c.entry_hash},
                                         {"at_ns", std::to_string(c.at_ns)}});
  o["chains"] = std::move(chains);
  if (!h.signature.empty()) {
    o["kid"] = h.key_id;
    o["sig"] = h.signature;
  }
  return boost::json::serialize(o) + "\n";
}

result<head_file> decode_head_file(std::string_view json) {
  auto bad = make_error_code(sc::errc::bad_json);
  boost::system::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) return bad;
  const auto& o = v.as_object();
  auto str = [](const boost::json::object& x, std::string_view k) -> std::optional<std::string> {
    auto* p = x.if_contains(k);
    if (!p || !p->is_string()) return std::nullopt;
    return std::string(p->get_string());
  };
  auto num = [&](const boost::json::object& x, std::string_view k) -> std::optional<std::int64_t> {
    auto s = str(x, k);
    if (!s || s->empty()) return std::nullopt;
    std::int64_t n = 0;
    auto [p, e] = std::from_chars(s->data(), s->data() + s->size(), n);
    if (e != std::errc() || p != s->data() + s->size()) return std::nullopt;
    return n;
  };
  auto* ver = o.if_contains("v");
  if (!ver || !ver->is_int64() || ver->get_int64() != 1) return bad;
  head_file h;
  auto exp = num(o, "exported_ns");
  auto* chains = o.if_contains("chains");
  if (!exp || !chains || !chains->is_array()) return bad;
  h.exported_ns = *exp;
  for (const auto& c : chains->get_array()) {
    if (!c.is_object()) return bad;
    auto name = str(c.get_object(), "chain");
    auto seq = num(c.get_object(), "seq");
    auto hash = str(c.get_object(), "hash");
    auto at = num(c.get_object(), "at_ns");
    if (!name || !seq || !hash || !at) return bad;
    h.heads.push_back(chain_head{*name, *seq, *hash, *at});
  }
  h.key_id = str(o, "kid").value_or("");
  h.signature = str(o, "sig").value_or("");
  return h;
}

boost::system::error_code export_heads(storage& db, const std::filesystem::path& dir,
                                       std::string_view instance,
                                       const sc::signing_key* signer, std::int64_t now,
                                       std::string& path, std::string& error) {
  auto heads = audit_heads(db);
  if (!heads) {
    error = "audit heads: " + db.last_error();
    return heads.error();
  }
  head_file h;
  h.exported_ns = now;
  h.heads = std::move(*heads);
  if (signer) {
    auto msg = head_canonical(h);
    auto sig = signer->sign(kAuditHeadDomain,
                            {reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()});
    h.key_id = signer->key_id();
    h.signature = sc::to_hex(sig);
  }
  std::error_code fec;
  std::filesystem::create_directories(dir, fec);
  if (fec) {
    error = "cannot create " + dir.string() + ": " + fec.message();
    return make_error_code(errc::store_write_failed);
  }
  const std::string text = encode_head_file(h);
  const auto file = dir / ("audit-head-" + utc_stamp(now) + "-" +
                           std::to_string((now / 1'000'000) % 1000) + "-" + std::string(instance) +
                           ".json");
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "cannot create " + file.string() + ": " + std::strerror(errno);
    return make_error_code(errc::store_write_failed);
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ok = ::fsync(dfd) == 0 && ok;
    ::close(dfd);
  }
  if (!ok) {
    error = "cannot write " + file.string();
    return make_error_code(errc::store_write_failed);
  }
  path = file.string();
  return {};
}

result<audit_report> audit_verify(storage& db, const audit_verify_options& opts) {
  audit_report rep;
  auto chains = db.query("SELECT DISTINCT chain FROM audit_log ORDER BY chain", {});
  if (!chains) return chains.error();
  constexpr std::int64_t kPage = 5000;
  for (const auto& crow : *chains) {
    const std::string chain = crow[0].value_or("");
    ++rep.chains;
    const bool ingest = chain.rfind("ingest:", 0) == 0;
    const std::string instance = ingest ? chain.substr(7) : std::string();
    std::int64_t expected = 1, after = 0, ledger_done = 0;
    std::string prev = kZeroHash;
    auto find = [&](std::int64_t seq, std::string what) {
      rep.findings.push_back(audit_finding{chain, seq, std::move(what)});
    };
    for (;;) {
      const sql_param p[] = {text_p(chain), num_p(after), num_p(kPage)};
      auto rows = db.query("SELECT " + std::string(kEntryColumns) +
                               " FROM audit_log WHERE chain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                           p);
      if (!rows) return rows.error();
      if (rows->empty()) break;
      std::map<std::int64_t, std::pair<std::int64_t, std::string>> refs;  // ref -> (seq, digest)
      std::map<std::int64_t, std::int64_t> ref_at;
      for (const auto& r : *rows) {
        auto e = entry_of(r);
        ++rep.entries;
        if (e.seq != expected)
          find(e.seq, "entries " + std::to_string(expected) + ".." + std::to_string(e.seq - 1) +
                          " are missing (deleted)");
        else if (e.prev_hash != prev)
          find(e.seq, "does not follow the previous entry (an entry was deleted or reordered)");
        if (audit_hash(e) != e.entry_hash)
          find(e.seq, "content does not match its hash (edited or moved)");
        prev = e.entry_hash;
        expected = e.seq + 1;
        after = e.seq;
        if (ingest && e.action == "batch.store" && e.ref_id) {
          refs[*e.ref_id] = {e.seq, e.new_value.value_or("")};
          ref_at[*e.ref_id] = e.at_ns;
        }
      }
      if (ingest && !refs.empty()) {
        // The ledger rows of this instance in (ledger_done, last ref of this page].
        const std::int64_t upto = refs.rbegin()->first;
        auto led = ledger_digests(db, instance, ledger_done, upto, SIZE_MAX >> 1);
        if (!led) return led.error();
        std::map<std::int64_t, const ledger_digest*> by_id;
        for (const auto& d : *led) by_id[d.id] = &d;
        for (const auto& [ref, sd] : refs) {
          ++rep.batches_checked;
          auto it = by_id.find(ref);
          if (it == by_id.end()) {
            if (ref_at[ref] >= opts.ledger_retention_before_ns)
              find(sd.first, "batch ledger row " + std::to_string(ref) + " is gone (deleted)");
          } else if (it->second->digest != sd.second) {
            find(sd.first, "batch ledger row " + std::to_string(ref) + " was edited");
          }
        }
        for (const auto& d : *led)
          if (!refs.contains(d.id))
            find(0, "batch ledger row " + std::to_string(d.id) + " (" + d.target +
                        ") is not in the audit trail (inserted)");
        ledger_done = upto;
      }
    }
    if (ingest) {
      const sql_param p[] = {text_p(instance), num_p(ledger_done)};
      auto n = db.query("SELECT COUNT(*) FROM batches WHERE instance = ?1 AND id > ?2", p);
      if (!n) return n.error();
      if (!n->empty()) rep.pending_batches += static_cast<std::size_t>(i64((*n)[0][0]));
    }
  }
  if (opts.head) {
    rep.head_checked = true;
    const auto& h = *opts.head;
    if (opts.central_key) {
      auto v = sc::verify_pinned(std::span(&*opts.central_key, 1), h.key_id, h.signature,
                                 kAuditHeadDomain, head_canonical(h));
      if (v != sc::pinned_verdict::ok)
        rep.findings.push_back(
            {"", 0, "exported head is not signed by central's key (" +
                        std::string(sc::to_string(v)) + ")"});
    }
    for (const auto& c : h.heads) {
      const sql_param p[] = {text_p(c.chain), num_p(c.seq)};
      auto r = db.query("SELECT entry_hash FROM audit_log WHERE chain = ?1 AND seq = ?2", p);
      if (!r) return r.error();
      if (r->empty())
        rep.findings.push_back({c.chain, c.seq,
                                "entry of the exported head is gone (entries deleted at the end)"});
      else if ((*r)[0][0].value_or("") != c.entry_hash)
        rep.findings.push_back({c.chain, c.seq, "entry differs from the exported head"});
    }
  }
  return rep;
}

result<batch_verify_report> verify_stored_batches(storage& db) {
  batch_verify_report rep;
  auto keys = list_agent_keys(db, "", true);
  if (!keys) return keys.error();
  std::map<std::pair<std::string, std::string>, sc::ed25519_public_key> by_id;
  for (const auto& k : *keys) by_id[{k.agent_id, k.key_id}] = k.public_key;
  std::int64_t after = 0;
  const std::string sql = "SELECT id, agent_id, store_epoch, batch_id, " +
                          hex_col(db, "signature") + ", " + hex_col(db, "signed_header") + ", " +
                          hex_col(db, "checksum") +
                          " FROM batches WHERE id > ?1 ORDER BY id LIMIT 5000";
  for (;;) {
    const sql_param p[] = {num_p(after)};
    auto rows = db.query(sql, p);
    if (!rows) return rows.error();
    if (rows->empty()) break;
    for (const auto& r : *rows) {
      after = i64(r[0]);
      const std::string agent = r[1].value_or("");
      const std::string what = "ledger id " + std::to_string(after) + " (" + agent + "/" +
                               r[2].value_or("") + "/" + r[3].value_or("") + "): ";
      const auto sigf = unhex(r[4].value_or(""));
      const auto header = unhex(r[5].value_or(""));
      const auto checksum = unhex(r[6].value_or(""));
      if (sigf.empty()) {
        ++rep.unsigned_batches;
        continue;
      }
      if (header.empty()) {
        ++rep.not_reverifiable;  // stored before the signed header was kept
        continue;
      }
      auto sig = sc::parse_signature_field(sigf);
      if (!sig) {
        rep.failures.push_back(what + "malformed signature field");
        continue;
      }
      auto k = by_id.find({agent, sig->key_id});
      if (k == by_id.end()) {
        rep.failures.push_back(what + "key " + sig->key_id + " is not known for this agent");
        continue;
      }
      if (header.size() < checksum.size() || checksum.size() != 32 ||
          !std::equal(checksum.begin(), checksum.end(), header.end() - 32)) {
        rep.failures.push_back(what + "signed header does not end with the stored checksum");
        continue;
      }
      if (!sc::verify_header_signature(k->second, *sig, header)) {
        rep.failures.push_back(what + "signature by key " + sig->key_id + " does not verify");
        continue;
      }
      ++rep.verified;
    }
  }
  return rep;
}

std::string config_summary(const central_config& c) {
  std::string s;
  auto line = [&](std::string_view k, const std::string& v) {
    s += k;
    s += " = ";
    s += v;
    s += '\n';
  };
  auto secret = [](const std::string& v) { return v.empty() ? std::string("\"\"") : "(set)"; };
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  auto n = [](std::int64_t v) { return std::to_string(v); };
  line("central.instance", c.central.instance);
  line("central.data_dir", c.central.data_dir);
  line("central.signing_key_file", c.central.signing_key_file);
  line("central.audit_head_dir", c.central.audit_head_dir);
  line("central.audit_export_interval_s", n(c.central.audit_export_interval_s));
  line("mqtt.broker", c.mqtt.broker);
  line("mqtt.username", c.mqtt.username);
  line("mqtt.password", secret(c.mqtt.password));
  line("mqtt.tls_ca_file", c.mqtt.tls_ca_file);
  line("mqtt.tls_cert_file", c.mqtt.tls_cert_file);
  line("mqtt.tls_key_file", c.mqtt.tls_key_file);
  line("mqtt.tls_verify_hostname", b(c.mqtt.tls_verify_hostname));
  line("mqtt.command_key_file", c.mqtt.command_key_file);
  line("http.listen", c.http.listen);
  line("auth.anonymous", c.auth.anonymous);
  line("auth.metrics_public", b(c.auth.metrics_public));
  line("auth.rate_per_s", n(c.auth.rate_per_s));
  line("ingest.require_signatures", b(c.ingest.require_signatures));
  line("ingest.max_frame_bytes", n(c.ingest.max_frame_bytes));
  line("ingest.agent_quota_records_per_s", n(c.ingest.agent_quota_records_per_s));
  line("store.backend", c.store.backend);
  line("store.url", redact_url(c.store.url));
  line("backup.dir", c.backup.dir);
  line("retention.telemetry_days", n(c.retention.telemetry_days));
  line("retention.event_days", n(c.retention.event_days));
  line("retention.run_result_days", n(c.retention.run_result_days));
  line("retention.blob_days", n(c.retention.blob_days));
  line("retention.batch_ledger_days", n(c.retention.batch_ledger_days));
  return s;
}

boost::system::error_code audit_config(storage& db, const central_config& cfg,
                                       std::string& error) {
  const std::string now_v = config_summary(cfg);
  const sql_param p[] = {text_p(cfg.central.instance)};
  auto last = db.query(
      "SELECT new_value FROM audit_log WHERE chain = 'admin' AND action = 'config.change' AND "
      "target = ?1 ORDER BY seq DESC LIMIT 1",
      p);
  if (!last) {
    error = "audit: " + db.last_error();
    return last.error();
  }
  std::optional<std::string> old_v;
  if (!last->empty()) old_v = (*last)[0][0];
  if (old_v && *old_v == now_v) return {};
  audit_action a;
  a.action = "config.change";
  a.target = cfg.central.instance;
  a.old_value = old_v;
  a.new_value = now_v;
  a.actor = "service:" + cfg.central.instance;
  a.reason = old_v ? "configuration changed (loaded at start)" : "first start with an audit trail";
  return audit_record(db, a, now_ns(), error);
}

}  // namespace semilab::central
