// Named users, scrypt password hashes, lockout, the failed-authentication monitor and their CLI
// (central/include/semilab/central/users.hpp).
#include <semilab/central/app.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/users.hpp>

#include "log.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>

namespace semilab::central {

namespace {

constexpr std::size_t kSaltBytes = 16, kHashBytes = 32;

sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }

std::int64_t i64(const sql_cell& c) {
  std::int64_t v = 0;
  if (c) std::from_chars(c->data(), c->data() + c->size(), v);
  return v;
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char d[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

bool unhex(std::string_view s, std::vector<unsigned char>& out) {
  if (s.size() % 2) return false;
  out.assign(s.size() / 2, 0);
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, v, 16);
    if (ec != std::errc() || p != s.data() + 2 * i + 2) return false;
    out[i] = static_cast<unsigned char>(v);
  }
  return true;
}

bool scrypt(std::string_view password, const unsigned char* salt, std::size_t salt_len,
            const scrypt_params& sp, unsigned char* out, std::size_t out_len) {
  struct kdf_free {
    void operator()(EVP_KDF* k) const noexcept { EVP_KDF_free(k); }
  };
  struct ctx_free {
    void operator()(EVP_KDF_CTX* c) const noexcept { EVP_KDF_CTX_free(c); }
  };
  std::unique_ptr<EVP_KDF, kdf_free> kdf(EVP_KDF_fetch(nullptr, "SCRYPT", nullptr));
  if (!kdf) return false;
  std::unique_ptr<EVP_KDF_CTX, ctx_free> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return false;
  std::uint64_t n = sp.n;
  std::uint32_t r = sp.r, p = sp.p;
  // 128 * r * N bytes for N = 2^15, r = 8 is 32 MiB: above OpenSSL's default limit.
  std::uint64_t maxmem = 256ull << 20;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                        const_cast<char*>(password.data()), password.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<unsigned char*>(salt),
                                        salt_len),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
      OSSL_PARAM_construct_end()};
  return EVP_KDF_derive(ctx.get(), out, out_len, params) == 1;
}

bool valid_user_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '@';
  });
}

boost::system::error_code fail(std::string& error, std::string why) {
  error = std::move(why);
  return make_error_code(errc::store_write_failed);
}

// One statement changing a user, then its audit entry.
boost::system::error_code change(storage& db, std::string_view sql, std::span<const sql_param> p,
                                 audit_action a, std::int64_t now, std::string& error) {
  auto n = db.execute(sql, p);
  if (!n) return fail(error, db.last_error());
  if (*n == 0) return fail(error, "no such user");
  std::string why;
  if (auto ec = audit_record(db, a, now, why))
    return fail(error, "changed, but the audit entry was not written: " + why);
  return {};
}

std::optional<std::string> role_of(storage& db, std::string_view name) {
  const sql_param p[] = {text_p(std::string(name))};
  auto r = db.query("SELECT role FROM users WHERE name = ?1", p);
  if (!r || r->empty()) return std::nullopt;
  return (*r)[0][0];
}

}  // namespace

std::string hash_password(std::string_view password, const scrypt_params& sp) {
  unsigned char salt[kSaltBytes], out[kHashBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) return {};
  if (!scrypt(password, salt, sizeof salt, sp, out, sizeof out)) return {};
  unsigned log2n = 0;
  while ((std::uint64_t{1} << log2n) < sp.n) ++log2n;
  return "scrypt$" + std::to_string(log2n) + "$" + std::to_string(sp.r) + "$" +
         std::to_string(sp.p) + "$" + hex(salt, sizeof salt) + "$" + hex(out, sizeof out);
}

bool verify_password(std::string_view password, std::string_view stored) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (parts.size() < 6) {
    auto j = stored.find('$', i);
    parts.push_back(stored.substr(i, j == std::string_view::npos ? j : j - i));
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  if (parts.size() != 6 || parts[0] != "scrypt") return false;
  unsigned log2n = 0, r = 0, p = 0;
  auto num = [](std::string_view s, unsigned& v) {
    auto [e, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && e == s.data() + s.size();
  };
  if (!num(parts[1], log2n) || !num(parts[2], r) || !num(parts[3], p) || log2n < 1 ||
      log2n > 22 || r < 1 || r > 32 || p < 1 || p > 16)
    return false;
  std::vector<unsigned char> salt, want;
  if (!unhex(parts[4], salt) || !unhex(parts[5], want) || want.empty() || want.size() > 64)
    return false;
  std::vector<unsigned char> got(want.size());
  if (!scrypt(password, salt.data(), salt.size(), scrypt_params{std::uint64_t{1} << log2n, r, p},
              got.data(), got.size()))
    return false;
  return CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0;
}

std::optional<std::string> password_problem(std::string_view pw) {
  if (pw.size() < 12) return "a password needs at least 12 characters";
  if (pw.size() > 1024) return "a password may have at most 1024 characters";
  if (std::all_of(pw.begin(), pw.end(), [&](char c) { return c == pw[0]; }))
    return "a password of one repeated character is refused";
  return std::nullopt;
}

boost::system::error_code create_user(storage& db, std::string_view name, role r,
                                      std::string_view password, std::int64_t now,
                                      std::string& error) {
  if (!valid_user_name(name))
    return fail(error, "a user name has 1..64 characters of A-Z a-z 0-9 . _ - @");
  if (r == role::none) return fail(error, "a user needs a role: viewer, engineer or admin");
  if (auto why = password_problem(password)) return fail(error, *why);
  const auto h = hash_password(password);
  if (h.empty()) return fail(error, "scrypt failed (OpenSSL)");
  const sql_param p[] = {text_p(std::string(name)), text_p(std::string(to_string(r))), text_p(h),
                         num_p(now)};
  auto n = db.execute(
      "INSERT INTO users(name, role, password_hash, created_ns) VALUES(?1, ?2, ?3, ?4)", p);
  if (!n) return fail(error, role_of(db, name) ? "user already exists" : db.last_error());
  std::string why;
  if (auto ec = audit_record(db, {"user.create", std::string(name), std::nullopt,
                                  "role=" + std::string(to_string(r)), {}, {}},
                             now, why))
    return fail(error, "created, but the audit entry was not written: " + why);
  return {};
}

boost::system::error_code set_password(storage& db, std::string_view name,
                                       std::string_view password, std::int64_t now,
                                       std::string& error) {
  if (auto why = password_problem(password)) return fail(error, *why);
  const auto h = hash_password(password);
  if (h.empty()) return fail(error, "scrypt failed (OpenSSL)");
  const sql_param p[] = {text_p(std::string(name)), text_p(h)};
  // The values of a password change are not recorded, only that it happened.
  return change(db,
                "UPDATE users SET password_hash = ?2, failed_count = 0, locked_until_ns = NULL "
                "WHERE name = ?1",
                p, {"user.password", std::string(name), std::nullopt, std::nullopt, {}, {}}, now,
                error);
}

boost::system::error_code set_user_role(storage& db, std::string_view name, role r,
                                        std::int64_t now, std::string& error) {
  if (r == role::none) return fail(error, "a user needs a role: viewer, engineer or admin");
  auto old = role_of(db, name);
  if (!old) return fail(error, "no such user");
  const sql_param p[] = {text_p(std::string(name)), text_p(std::string(to_string(r)))};
  return change(db, "UPDATE users SET role = ?2 WHERE name = ?1", p,
                {"user.role", std::string(name), "role=" + *old,
                 "role=" + std::string(to_string(r)), {}, {}},
                now, error);
}

boost::system::error_code set_user_disabled(storage& db, std::string_view name, bool disabled,
                                            std::int64_t now, std::string& error) {
  const sql_param p[] = {text_p(std::string(name)), num_p(now)};
  return change(db,
                disabled ? "UPDATE users SET disabled_ns = ?2 WHERE name = ?1 AND disabled_ns IS NULL"
                         : "UPDATE users SET disabled_ns = NULL WHERE name = ?1 AND ?2 = ?2 AND "
                           "disabled_ns IS NOT NULL",
                p,
                {disabled ? "user.disable" : "user.enable", std::string(name),
                 disabled ? "enabled" : "disabled", disabled ? "disabled" : "enabled", {}, {}},
                now, error);
}

boost::system::error_code unlock_user(storage& db, std::string_view name, std::int64_t now,
                                      std::string& error) {
  const sql_param p[] = {text_p(std::string(name))};
  return change(db, "UPDATE users SET failed_count = 0, locked_until_ns = NULL WHERE name = ?1", p,
                {"user.unlock", std::string(name), std::nullopt, std::nullopt, {}, {}}, now,
                error);
}

result<std::vector<user_row>> list_users(storage& db) {
  auto rows = db.query(
      "SELECT name, role, created_ns, disabled_ns, failed_count, locked_until_ns FROM users "
      "ORDER BY name",
      {});
  if (!rows) return rows.error();
  std::vector<user_row> out;
  for (const auto& r : *rows) {
    user_row u;
    u.name = r[0].value_or("");
    u.r = parse_role(r[1].value_or("")).value_or(role::none);
    u.created_ns = i64(r[2]);
    if (r[3]) u.disabled_ns = i64(r[3]);
    u.failed_count = i64(r[4]);
    if (r[5]) u.locked_until_ns = i64(r[5]);
    out.push_back(std::move(u));
  }
  return out;
}

std::string_view to_string(login_status s) noexcept {
  switch (s) {
    case login_status::ok: return "ok";
    case login_status::bad_credentials: return "bad_credentials";
    case login_status::locked: return "locked";
    case login_status::disabled: return "disabled";
  }
  return "bad_credentials";
}

result<login_outcome> authenticate_user(storage& db, std::string_view name,
                                        std::string_view password, std::int64_t now,
                                        const lockout_policy& policy) {
  // A fixed hash for unknown users, so their check costs one scrypt as well (no user probing by
  // timing). Computed once.
  static const std::string kDummy = hash_password("semilab-unknown-user-dummy");
  const sql_param p[] = {text_p(std::string(name))};
  auto rows = db.query(
      "SELECT role, password_hash, disabled_ns, failed_count, locked_until_ns FROM users "
      "WHERE name = ?1",
      p);
  if (!rows) return rows.error();
  login_outcome out;
  if (rows->empty()) {
    (void)verify_password(password, kDummy);
    auth_failures().record(now);
    return out;
  }
  const auto& r = (*rows)[0];
  if (r[4] && i64(r[4]) > now) {
    auth_failures().record(now);
    out.status = login_status::locked;
    return out;
  }
  const bool ok = verify_password(password, r[1].value_or(""));
  if (ok && r[2]) {
    out.status = login_status::disabled;
    return out;
  }
  if (!ok) {
    auth_failures().record(now);
    const std::int64_t failures = i64(r[3]) + 1;
    const bool lock = failures >= policy.max_failures;
    const sql_param u[] = {text_p(std::string(name)), num_p(lock ? 0 : failures),
                           num_p(lock ? now + policy.lock_ns : -1)};
    // Locking resets the count, so the next lock needs max_failures more failures.
    if (!db.execute("UPDATE users SET failed_count = ?2, locked_until_ns = NULLIF(CAST(?3 AS "
                    "BIGINT), -1) WHERE name = ?1",
                    u))
      return make_error_code(errc::store_write_failed);
    if (lock) {
      logger("auth")->warn("user {} locked for {} s after {} failed logins", name,
                           policy.lock_ns / 1'000'000'000, failures);
      std::string why;
      audit_record(db, {"user.lock", std::string(name), std::nullopt,
                        "locked after " + std::to_string(failures) + " failed logins",
                        "service", "repeated failed authentication"},
                   now, why);
    }
    return out;
  }
  if (i64(r[3]) != 0 || r[4]) {
    const sql_param u[] = {text_p(std::string(name))};
    (void)db.execute("UPDATE users SET failed_count = 0, locked_until_ns = NULL WHERE name = ?1",
                     u);
  }
  out.status = login_status::ok;
  out.r = parse_role(r[0].value_or("")).value_or(role::none);
  return out;
}

void failure_monitor::trim(std::int64_t now) {
  while (!times_.empty() && now - times_.front() >= 60'000'000'000) times_.pop_front();
}

bool failure_monitor::record(std::int64_t now) {
  std::lock_guard lock(mutex_);
  trim(now);
  times_.push_back(now);
  ++total_;
  // Bounded: only the count above the threshold matters, never more than a minute's worth.
  if (times_.size() > 100'000) times_.pop_front();
  return times_.size() == kAlarmPerMinute + 1;
}

std::size_t failure_monitor::last_minute(std::int64_t now) {
  std::lock_guard lock(mutex_);
  trim(now);
  return times_.size();
}

std::uint64_t failure_monitor::total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

failure_monitor& auth_failures() {
  static failure_monitor m;
  return m;
}

// ---- CLI ----------------------------------------------------------------------------------------

namespace {

std::unique_ptr<storage> open_rw(const central_config& cfg, std::FILE* err) {
  std::string why;
  auto db = open_storage(storage_options_from(cfg, open_mode::read_write), why);
  if (!db) {
    std::fprintf(err, "semilab-central: users: store: %s: %s\n", db.error().message().c_str(),
                 why.c_str());
    return nullptr;
  }
  return std::move(*db);
}

// One line from `in`, without echo when it is a terminal.
std::string read_password(std::FILE* in, std::FILE* err, const char* prompt) {
  const int fd = ::fileno(in);
  termios old{};
  const bool tty = ::isatty(fd) && ::tcgetattr(fd, &old) == 0;
  if (tty) {
    std::fprintf(err, "%s", prompt);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string line;
  for (int c; (c = std::fgetc(in)) != EOF && c != '\n';) line.push_back(static_cast<char>(c));
  if (tty) {
    ::tcsetattr(fd, TCSAFLUSH, &old);
    std::fprintf(err, "\n");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

struct wipe {
  std::string& s;
  ~wipe() { OPENSSL_cleanse(s.data(), s.size()); }
};

}  // namespace

int run_users_add(const central_config& cfg, const std::string& name, const std::string& role_s,
                  std::FILE* in, std::FILE* out, std::FILE* err) {
  auto r = parse_role(role_s);
  if (!r) {
    std::fprintf(err, "semilab-central: users add: role must be viewer, engineer or admin\n");
    return kExitUsage;
  }
  auto db = open_rw(cfg, err);
  if (!db) return kExitRuntime;
  std::string pw = read_password(in, err, "password: ");
  wipe w{pw};
  std::string why;
  if (create_user(*db, name, *r, pw, now_ns(), why)) {
    std::fprintf(err, "semilab-central: users add: %s\n", why.c_str());
    return why.rfind("changed", 0) == 0 || why.rfind("created", 0) == 0 ? kExitRuntime
                                                                        : kExitUsage;
  }
  std::fprintf(out, "user %s created (%s)\n", name.c_str(), role_s.c_str());
  return kExitOk;
}

int run_users_passwd(const central_config& cfg, const std::string& name, std::FILE* in,
                     std::FILE* out, std::FILE* err) {
  auto db = open_rw(cfg, err);
  if (!db) return kExitRuntime;
  std::string pw = read_password(in, err, "new password: ");
  wipe w{pw};
  std::string why;
  if (set_password(*db, name, pw, now_ns(), why)) {
    std::fprintf(err, "semilab-central: users passwd: %s\n", why.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "password of %s changed\n", name.c_str());
  return kExitOk;
}

int run_users_list(const central_config& cfg, std::FILE* out, std::FILE* err) {
  std::string why;
  auto db = open_storage(storage_options_from(cfg, open_mode::read_only), why);
  if (!db) {
    std::fprintf(err, "semilab-central: users list: %s\n", why.c_str());
    return kExitRuntime;
  }
  auto users = list_users(**db);
  if (!users) {
    std::fprintf(err, "semilab-central: users list: %s\n", (*db)->last_error().c_str());
    return kExitRuntime;
  }
  const auto now = now_ns();
  for (const auto& u : *users)
    std::fprintf(out, "%s\t%s\t%s%s\n", u.name.c_str(), std::string(to_string(u.r)).c_str(),
                 u.disabled_ns ? "disabled" : "enabled",
                 u.locked_until_ns && *u.locked_until_ns > now ? ",locked" : "");
  return kExitOk;
}

int run_users_set(const central_config& cfg, const std::string& name, const std::string& what,
                  const std::string& role_s, std::FILE* out, std::FILE* err) {
  auto db = open_rw(cfg, err);
  if (!db) return kExitRuntime;
  std::string why;
  boost::system::error_code ec;
  const auto now = now_ns();
  if (what == "disable") ec = set_user_disabled(*db, name, true, now, why);
  else if (what == "enable") ec = set_user_disabled(*db, name, false, now, why);
  else if (what == "unlock") ec = unlock_user(*db, name, now, why);
  else if (what == "role") {
    auto r = parse_role(role_s);
    if (!r) {
      std::fprintf(err, "semilab-central: users role: viewer, engineer or admin\n");
      return kExitUsage;
    }
    ec = set_user_role(*db, name, *r, now, why);
  } else {
    std::fprintf(err, "semilab-central: users: unknown action %s\n", what.c_str());
    return kExitUsage;
  }
  if (ec) {
    std::fprintf(err, "semilab-central: users %s: %s\n", what.c_str(), why.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "user %s: %s done\n", name.c_str(), what.c_str());
  return kExitOk;
}

int run_users_login(const central_config& cfg, const std::string& name, std::FILE* in,
                    std::FILE* out, std::FILE* err) {
  auto db = open_rw(cfg, err);
  if (!db) return kExitRuntime;
  std::string pw = read_password(in, err, "password: ");
  wipe w{pw};
  const auto now = now_ns();
  auto o = authenticate_user(*db, name, pw, now);
  if (!o) {
    std::fprintf(err, "semilab-central: users login: store: %s\n", db->last_error().c_str());
    return kExitRuntime;
  }
  if (o->status != login_status::ok) {
    // Which of unknown user and wrong password is not told.
    std::fprintf(err, "semilab-central: users login: %s\n",
                 o->status == login_status::locked     ? "user locked after repeated failures"
                 : o->status == login_status::disabled ? "user disabled"
                                                       : "unknown user or wrong password");
    std::string why;
    audit_record(*db, {"user.login_failed", name, std::nullopt,
                       std::string(to_string(o->status)), name, {}},
                 now, why);
    return kExitRuntime;
  }
  std::string why;
  auto t = create_token(*db, o->r, "user:" + name, now, why);
  if (!t) {
    std::fprintf(err, "semilab-central: users login: %s\n", why.c_str());
    return kExitRuntime;
  }
  std::fprintf(out, "%s\n", t->token.c_str());
  std::fprintf(err, "token %s issued to %s (%s)\n", t->id.c_str(), name.c_str(),
               std::string(to_string(o->r)).c_str());
  return kExitOk;
}

}  // namespace semilab::central
