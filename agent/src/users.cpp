#include "users.hpp"

#include <semilab/schemas/sql.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace semilab::agent {

namespace {

// scrypt cost: N = 2^kLogN, r, p. 128 * N * r bytes = 32 MiB.
constexpr int kLogN = 15;
constexpr int kR = 8;
constexpr int kP = 1;
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kKeyBytes = 32;
constexpr std::uint64_t kMaxMem = 256ull << 20;  // accepts stored hashes up to 8x the default

std::string b64(const unsigned char* p, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(std::max(len, 0)));
  return out;
}

std::optional<std::string> unb64(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  std::string out(3 * s.size() / 4 + 1, '\0');
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (len < 0) return std::nullopt;
  std::size_t pad = 0;
  if (s.ends_with("==")) pad = 2;
  else if (s.ends_with("=")) pad = 1;
  out.resize(static_cast<std::size_t>(len) - pad);
  return out;
}

bool scrypt(std::string_view pw, std::string_view salt, int log_n, int r, int p, unsigned char* out,
            std::size_t out_len) {
  return EVP_PBE_scrypt(pw.data(), pw.size(), reinterpret_cast<const unsigned char*>(salt.data()),
                        salt.size(), std::uint64_t{1} << log_n, static_cast<std::uint64_t>(r),
                        static_cast<std::uint64_t>(p), kMaxMem, out, out_len) == 1;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto e = s.find(sep, start);
    parts.push_back(s.substr(start, e == std::string_view::npos ? std::string_view::npos : e - start));
    if (e == std::string_view::npos) return parts;
    start = e + 1;
  }
}

bool to_int(std::string_view s, int& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::int64_t now_utc_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One prepared statement, finalized on scope exit.
class stmt {
 public:
  stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~stmt() { sqlite3_finalize(s_); }
  stmt(const stmt&) = delete;
  stmt& operator=(const stmt&) = delete;
  explicit operator bool() const { return s_ != nullptr; }
  stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int step() { return s_ ? sqlite3_step(s_) : SQLITE_ERROR; }
  std::int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  std::string text(int c) const {
    auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace

std::string_view to_string(user_role r) noexcept {
  return r == user_role::engineer ? "engineer" : "technician";
}

std::optional<user_role> parse_role(std::string_view s) noexcept {
  if (s == "technician") return user_role::technician;
  if (s == "engineer") return user_role::engineer;
  return std::nullopt;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> b(bytes);
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * bytes);
  for (auto c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

std::string hash_password(std::string_view password) {
  std::array<unsigned char, kSaltBytes> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) return {};
  std::array<unsigned char, kKeyBytes> key{};
  if (!scrypt(password, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()),
              kLogN, kR, kP, key.data(), key.size()))
    return {};
  std::string out = "scrypt$" + std::to_string(kLogN) + "$" + std::to_string(kR) + "$" +
                    std::to_string(kP) + "$" + b64(salt.data(), salt.size()) + "$" +
                    b64(key.data(), key.size());
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

bool verify_password(std::string_view stored, std::string_view password) {
  auto parts = split(stored, '$');
  int log_n = 0, r = 0, p = 0;
  if (parts.size() != 6 || parts[0] != "scrypt" || !to_int(parts[1], log_n) ||
      !to_int(parts[2], r) || !to_int(parts[3], p) || log_n < 10 || log_n > 22 || r < 1 ||
      r > 32 || p < 1 || p > 16)
    return false;
  auto salt = unb64(parts[4]);
  auto want = unb64(parts[5]);
  if (!salt || !want || want->empty() || want->size() > 64) return false;
  std::array<unsigned char, 64> got{};
  if (!scrypt(password, *salt, log_n, r, p, got.data(), want->size())) return false;
  bool same = CRYPTO_memcmp(got.data(), want->data(), want->size()) == 0;
  OPENSSL_cleanse(got.data(), got.size());
  return same;
}

bool valid_user_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// ---- user_store ------------------------------------------------------------------------------

boost::system::result<std::unique_ptr<user_store>> user_store::open(const std::filesystem::path& db,
                                                                    std::string& error) {
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    error = db.string() + ": cannot open: " + (h ? sqlite3_errmsg(h) : "out of memory");
    sqlite3_close(h);
    return boost::system::errc::make_error_code(boost::system::errc::io_error);
  }
  sqlite3_busy_timeout(h, 5000);
  // Password hashes: never readable by other users (SQLite gives -wal and -shm the same mode).
  struct stat st {};
  if (::stat(db.c_str(), &st) == 0 && (st.st_mode & 0007)) ::chmod(db.c_str(), st.st_mode & 0770);
  // The outbox sets WAL (persistent in the file); synchronous=FULL for the few writes here.
  sqlite3_exec(h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
  std::string err;
  if (auto ec = schemas::apply_migrations(h, schemas::agent_outbox_migrations(), err)) {
    error = db.string() + ": " + err;
    sqlite3_close(h);
    return ec;
  }
  return std::unique_ptr<user_store>(new user_store(h));
}

user_store::~user_store() { sqlite3_close(db_); }

std::string user_store::add(std::string_view name, user_role role, std::string_view password) {
  if (!valid_user_name(name)) return "user name '" + std::string(name) + "' not allowed: use 1-32 of A-Z a-z 0-9 . _ -";
  if (password.size() < kMinPasswordLength)
    return "password too short: at least " + std::to_string(kMinPasswordLength) + " characters";
  auto h = hash_password(password);
  if (h.empty()) return "hashing the password failed (OpenSSL)";
  std::lock_guard lk(mu_);
  stmt s(db_, "INSERT INTO users(name, role, password_hash, created_ns, changed_ns) VALUES(?,?,?,?,?)");
  auto now = now_utc_ns();
  s.bind(1, name).bind(2, to_string(role)).bind(3, h).bind(4, now).bind(5, now);
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT) return "user '" + std::string(name) + "' exists (use `user passwd`)";
  if (rc != SQLITE_DONE) return sqlite3_errmsg(db_);
  return {};
}

std::string user_store::set_password(std::string_view name, std::string_view password) {
  if (password.size() < kMinPasswordLength)
    return "password too short: at least " + std::to_string(kMinPasswordLength) + " characters";
  auto h = hash_password(password);
  if (h.empty()) return "hashing the password failed (OpenSSL)";
  std::lock_guard lk(mu_);
  // A new password also lifts a lockout.
  stmt s(db_, "UPDATE users SET password_hash = ?, changed_ns = ?, failures = 0, locked_until_ns = 0 WHERE name = ?");
  s.bind(1, h).bind(2, now_utc_ns()).bind(3, name);
  if (s.step() != SQLITE_DONE) return sqlite3_errmsg(db_);
  if (sqlite3_changes(db_) == 0) return "no user '" + std::string(name) + "'";
  return {};
}

std::string user_store::remove(std::string_view name) {
  std::lock_guard lk(mu_);
  stmt s(db_, "DELETE FROM users WHERE name = ?");
  s.bind(1, name);
  if (s.step() != SQLITE_DONE) return sqlite3_errmsg(db_);
  if (sqlite3_changes(db_) == 0) return "no user '" + std::string(name) + "'";
  return {};
}

std::string user_store::unlock(std::string_view name) {
  std::lock_guard lk(mu_);
  stmt s(db_, "UPDATE users SET failures = 0, locked_until_ns = 0 WHERE name = ?");
  s.bind(1, name);
  if (s.step() != SQLITE_DONE) return sqlite3_errmsg(db_);
  if (sqlite3_changes(db_) == 0) return "no user '" + std::string(name) + "'";
  return {};
}

std::vector<user_info> user_store::list(std::string& error) {
  std::lock_guard lk(mu_);
  std::vector<user_info> out;
  stmt s(db_, "SELECT name, role, created_ns, changed_ns, failures, locked_until_ns, last_login_ns FROM users ORDER BY name");
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    user_info u;
    u.name = s.text(0);
    u.role = parse_role(s.text(1)).value_or(user_role::technician);
    u.created_ns = s.i64(2);
    u.changed_ns = s.i64(3);
    u.failures = s.i64(4);
    u.locked_until_ns = s.i64(5);
    u.last_login_ns = s.i64(6);
    out.push_back(std::move(u));
  }
  if (rc != SQLITE_DONE) error = sqlite3_errmsg(db_);
  return out;
}

user_store::login_outcome user_store::login(std::string_view name, std::string_view password,
                                            std::int64_t now_ns) {
  // A fixed hash for unknown users, so that a wrong name costs the same scrypt run.
  static const std::string kDummy = hash_password("semilab-no-such-user");
  std::string stored;
  std::string role_text;
  std::int64_t failures = 0, locked_until = 0;
  bool found = false;
  {
    std::lock_guard lk(mu_);
    stmt s(db_, "SELECT password_hash, role, failures, locked_until_ns FROM users WHERE name = ?");
    s.bind(1, name);
    int rc = s.step();
    if (rc == SQLITE_ROW) {
      found = true;
      stored = s.text(0);
      role_text = s.text(1);
      failures = s.i64(2);
      locked_until = s.i64(3);
    } else if (rc != SQLITE_DONE) {
      return {login_result::error, user_role::technician, 0};
    }
  }
  if (found && locked_until > now_ns) {
    verify_password(kDummy, password);  // same cost as any other answer
    return {login_result::locked, user_role::technician, locked_until};
  }
  bool ok = verify_password(found ? stored : kDummy, password) && found;
  if (!found) return {login_result::bad_credentials, user_role::technician, 0};
  std::lock_guard lk(mu_);
  if (ok) {
    stmt s(db_, "UPDATE users SET failures = 0, locked_until_ns = 0, last_login_ns = ? WHERE name = ?");
    s.bind(1, now_ns).bind(2, name);
    s.step();
    return {login_result::ok, parse_role(role_text).value_or(user_role::technician), 0};
  }
  ++failures;
  std::int64_t lock = 0;
  if (failures >= kMaxFailures) {
    lock = now_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(kLockout).count();
    failures = 0;  // a new series of attempts after the lock
  }
  stmt s(db_, "UPDATE users SET failures = ?, locked_until_ns = ? WHERE name = ?");
  s.bind(1, failures).bind(2, lock).bind(3, name);
  s.step();
  if (lock) return {login_result::locked, user_role::technician, lock};
  return {login_result::bad_credentials, user_role::technician, 0};
}

// ---- auth ------------------------------------------------------------------------------------

std::string_view auth::session_cookie(std::string_view h) noexcept {
  while (!h.empty()) {
    auto semi = h.find(';');
    auto part = h.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > kCookie.size() && part.substr(0, kCookie.size()) == kCookie &&
        part[kCookie.size()] == '=')
      return part.substr(kCookie.size() + 1);
    if (semi == std::string_view::npos) break;
    h.remove_prefix(semi + 1);
  }
  return {};
}

void auth::expire(std::int64_t now_ns) {
  const auto idle = std::chrono::duration_cast<std::chrono::nanoseconds>(kSessionIdle).count();
  const auto max = std::chrono::duration_cast<std::chrono::nanoseconds>(kSessionMax).count();
  std::erase_if(sessions_, [&](const auto& kv) {
    return now_ns - kv.second.last_ns > idle || now_ns - kv.second.created_ns > max;
  });
}

std::variant<auth::session_info, auth::denied> auth::login(std::string_view user,
                                                           std::string_view password,
                                                           std::int64_t now_ns) {
  if (!users_) return denied{403, "no local users (semilab-agent user add)"};
  auto r = users_->login(user, password, now_ns);
  switch (r.result) {
    case user_store::login_result::ok: break;
    case user_store::login_result::bad_credentials:
      return denied{401, "wrong user name or password"};
    case user_store::login_result::locked:
      return denied{429, "too many failed logins: this user is locked for a while "
                         "(or `semilab-agent user passwd`)"};
    case user_store::login_result::error: return denied{500, "user database error"};
  }
  session_info s{random_hex(32), random_hex(32), std::string(user), r.role};
  if (s.id.empty() || s.csrf.empty()) return denied{500, "no randomness"};
  std::lock_guard lk(mu_);
  expire(now_ns);
  while (sessions_.size() >= kMaxSessions) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
      return a.second.last_ns < b.second.last_ns;
    });
    sessions_.erase(oldest);
  }
  sessions_[s.id] = entry{s, now_ns, now_ns};
  return s;
}

void auth::logout(std::string_view id) {
  std::lock_guard lk(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
}

std::optional<auth::session_info> auth::session(std::string_view cookie_header, std::int64_t now_ns) {
  auto id = session_cookie(cookie_header);
  if (id.empty()) return std::nullopt;
  std::lock_guard lk(mu_);
  expire(now_ns);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  it->second.last_ns = now_ns;
  return it->second.info;
}

std::size_t auth::open_sessions() {
  std::lock_guard lk(mu_);
  return sessions_.size();
}

namespace {
bool same(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace

std::variant<principal, auth::denied> auth::authorize(std::string_view authorization,
                                                      std::string_view cookie_header,
                                                      std::string_view csrf_header, user_role min,
                                                      std::int64_t now_ns) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) == kBearer) {
    if (token_.empty())
      return denied{403, "bearer tokens are disabled: no [status] operator_token is configured"};
    if (!same(authorization.substr(kBearer.size()), token_))
      return denied{403, "wrong operator token"};
    return principal{"token", user_role::engineer, true};
  }
  auto s = session(cookie_header, now_ns);
  if (!s)
    return denied{401, "log in first (or send Authorization: Bearer <operator_token>)"};
  // The cookie alone could come from a cross-site request: the CSRF token proves the page.
  if (csrf_header.empty() || !same(csrf_header, s->csrf))
    return denied{403, "missing or wrong CSRF token (X-CSRF-Token)"};
  if (static_cast<int>(s->role) < static_cast<int>(min))
    return denied{403, "this action needs the " + std::string(to_string(min)) + " role; " + s->user +
                           " is a " + std::string(to_string(s->role))};
  return principal{s->user, s->role, false};
}

}  // namespace semilab::agent
