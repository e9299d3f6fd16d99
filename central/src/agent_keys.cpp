#include <semilab/central/agent_keys.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/schemas/topics.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace semilab::central {
namespace {

sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }

std::int64_t i64(const std::string& s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

result<bool> approve_agent_key(storage& db, std::string_view agent_id,
                               const schemas::ed25519_public_key& pub, std::int64_t now,
                               std::string& error) {
  if (!schemas::valid_id(agent_id)) {
    error = "invalid agent id";
    return result<bool>(boost::system::in_place_error, make_error_code(errc::store_write_failed));
  }
  const std::string key_id = schemas::key_id_of(pub);
  const sql_param p[] = {text_p(std::string(agent_id)), text_p(key_id),
                         text_p(schemas::public_key_hex(pub)), num_p(now)};
  auto before = db.query("SELECT revoked_ns FROM agent_keys WHERE agent_id = ?1 AND key_id = ?2",
                         std::span(p, 2));
  if (!before) {
    error = db.last_error();
    return result<bool>(boost::system::in_place_error, before.error());
  }
  // A revoked key approved again becomes valid again; an approved key stays as it was.
  auto n = db.execute(
      "INSERT INTO agent_keys(agent_id, key_id, public_key, approved_ns) VALUES(?1, ?2, ?3, ?4) "
      "ON CONFLICT(agent_id, key_id) DO UPDATE SET approved_ns = excluded.approved_ns, "
      "revoked_ns = NULL WHERE agent_keys.revoked_ns IS NOT NULL",
      p);
  if (!n) {
    error = db.last_error();
    return result<bool>(boost::system::in_place_error, n.error());
  }
  if (*n > 0) {
    audit_action a;
    a.action = "agent_key.approve";
    a.target = std::string(agent_id) + "/" + key_id;
    if (!before->empty()) a.old_value = "revoked";
    a.new_value = schemas::public_key_hex(pub);
    std::string why;
    if (auto ec = audit_record(db, a, now, why)) {
      error = "approved, but the audit entry was not written: " + why;
      return result<bool>(boost::system::in_place_error, ec);
    }
  }
  return *n > 0;
}

result<std::vector<agent_key_row>> list_agent_keys(storage& db, std::string_view agent_id,
                                                   bool include_revoked) {
  const sql_param p[] = {text_p(std::string(agent_id)), num_p(include_revoked ? 1 : 0)};
  auto rows = db.query(
      "SELECT agent_id, key_id, public_key, approved_ns, revoked_ns FROM agent_keys "
      "WHERE (?1 = '' OR agent_id = ?1) AND (?2 = 1 OR revoked_ns IS NULL) "
      "ORDER BY agent_id, approved_ns, key_id",
      p);
  if (!rows) return rows.error();
  std::vector<agent_key_row> out;
  for (const auto& row : *rows) {
    auto pub = schemas::parse_public_key_hex(row[2].value_or(""));
    if (!pub) continue;  // written only by approve_agent_key: cannot happen short of tampering
    agent_key_row k;
    k.agent_id = row[0].value_or("");
    k.key_id = row[1].value_or("");
    k.public_key = *pub;
    k.approved_ns = i64(row[3].value_or("0"));
    if (row[4]) k.revoked_ns = i64(*row[4]);
    out.push_back(std::move(k));
  }
  return out;
}

result<std::uint64_t> revoke_agent_key(storage& db, std::string_view agent_id,
                                       std::string_view key_id, std::int64_t now) {
  const sql_param p[] = {text_p(std::string(agent_id)), text_p(std::string(key_id)), num_p(now)};
  auto n = db.execute(
      "UPDATE agent_keys SET revoked_ns = ?3 WHERE agent_id = ?1 AND key_id = ?2 "
      "AND revoked_ns IS NULL",
      p);
  if (n && *n > 0) {
    std::string why;
    if (auto ec = audit_record(db,
                               audit_action{"agent_key.revoke",
                                            std::string(agent_id) + "/" + std::string(key_id),
                                            "approved", "revoked", {}, {}},
                               now, why))
      return ec;  // revoked, but unaudited: the caller reports a failure (db.last_error())
  }
  return n;
}

result<schemas::ed25519_public_key> read_public_key_arg(std::string_view file_or_hex,
                                                        std::string& error) {
  if (auto k = schemas::parse_public_key_hex(file_or_hex)) return *k;
  std::error_code ec;
  const std::filesystem::path path{std::string(file_or_hex)};
  if (!std::filesystem::is_regular_file(path, ec)) {
    error = "--key is neither 64 hex digits nor a readable file";
    return make_error_code(errc::store_write_failed);
  }
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  // The file `semilab-agent enroll` writes: the hex key, optionally followed by a comment.
  std::string text = ss.str();
  auto end = text.find_first_of(" \t\r\n");
  auto k = schemas::parse_public_key_hex(std::string_view(text).substr(0, end));
  if (!k) {
    error = path.string() + ": does not start with a 64-hex-digit Ed25519 public key";
    return make_error_code(errc::store_write_failed);
  }
  return *k;
}

}  // namespace semilab::central
