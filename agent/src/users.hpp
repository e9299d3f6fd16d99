#pragma once
// Local users of the agent (technicians, engineers), their scrypt password hashes in the agent
// database (table `users`, schemas/sql/agent/0005_users.sql), and the status page's sessions.
//
// Passwords: OpenSSL 3's scrypt (EVP_PBE_scrypt), memory-hard; N = 2^15, r = 8, p = 1 (32 MiB,
// about 0.1 s on a lab PC), a 16-byte random salt, 32-byte key, stored as
// "scrypt$15$8$1$<salt b64>$<hash b64>" so the cost can be raised later without breaking old
// rows. Compared in constant time. A login for an unknown user still costs one scrypt run (no
// user enumeration by timing).
//
// Lockout: kMaxFailures consecutive wrong passwords lock the user for kLockout (persisted in the
// database, so a restart does not reset it); a successful login resets the count.
//
// Sessions (daemon memory only): 32 random bytes (hex) in a cookie `semilab_session`
// (HttpOnly, SameSite=Strict, Secure under HTTPS), a separate CSRF token that every action must
// echo in `X-CSRF-Token`; idle expiry kSessionIdle, absolute kSessionMax. The bearer token of
// [status] operator_token acts as an engineer without a session.
//
// Thread-safety: every member of user_store and auth is thread-safe (one mutex each).
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

struct sqlite3;

namespace semilab::agent {

enum class user_role { technician = 0, engineer = 1 };
std::string_view to_string(user_role r) noexcept;
std::optional<user_role> parse_role(std::string_view s) noexcept;

// "scrypt$15$8$1$salt$hash" for `password`; empty on an OpenSSL failure.
std::string hash_password(std::string_view password);
// Constant-time check of `password` against a stored hash; false for a malformed hash.
bool verify_password(std::string_view stored, std::string_view password);

struct user_info {
  std::string name;
  user_role role = user_role::technician;
  std::int64_t created_ns = 0;
  std::int64_t changed_ns = 0;
  std::int64_t failures = 0;
  std::int64_t locked_until_ns = 0;
  std::int64_t last_login_ns = 0;
};

// 1-32 of A-Z a-z 0-9 . _ - (used in logs and events: nothing to escape).
bool valid_user_name(std::string_view name) noexcept;

class user_store {
 public:
  static constexpr int kMaxFailures = 5;
  static constexpr std::chrono::minutes kLockout{15};
  static constexpr std::size_t kMinPasswordLength = 8;

  // Opens (creating and migrating when needed) the agent database at `db` (outbox.db). The
  // outbox's own migrations create the table too; either may run first.
  static boost::system::result<std::unique_ptr<user_store>> open(const std::filesystem::path& db,
                                                                  std::string& error);
  ~user_store();
  user_store(const user_store&) = delete;
  user_store& operator=(const user_store&) = delete;

  // Each returns an empty string on success, else the reason (for the CLI and logs).
  std::string add(std::string_view name, user_role role, std::string_view password);
  std::string set_password(std::string_view name, std::string_view password);
  std::string remove(std::string_view name);
  std::string unlock(std::string_view name);
  std::vector<user_info> list(std::string& error);

  enum class login_result { ok, bad_credentials, locked, error };
  struct login_outcome {
    login_result result = login_result::error;
    user_role role = user_role::technician;
    std::int64_t locked_until_ns = 0;  // when locked
  };
  // Checks the password and counts the failure or resets the count. `now_ns`: UTC.
  login_outcome login(std::string_view name, std::string_view password, std::int64_t now_ns);

 private:
  explicit user_store(sqlite3* db) : db_(db) {}
  std::mutex mu_;
  sqlite3* db_;
};

struct principal {
  std::string name;  // user name, or "token" for the bearer token
  user_role role = user_role::technician;
  bool via_token = false;
};

// The status page's authentication: sessions and the bearer token.
class auth {
 public:
  static constexpr std::chrono::minutes kSessionIdle{30};
  static constexpr std::chrono::hours kSessionMax{12};
  static constexpr std::size_t kMaxSessions = 256;  // oldest dropped beyond this

  auth(std::shared_ptr<user_store> users, std::string operator_token)
      : users_(std::move(users)), token_(std::move(operator_token)) {}

  struct session_info {
    std::string id;    // cookie value
    std::string csrf;  // to echo in X-CSRF-Token
    std::string user;
    user_role role = user_role::technician;
  };
  struct denied {
    unsigned status = 401;  // 401 not authenticated, 403 authenticated but refused, 429 locked
    std::string message;
  };

  // Checks the password (slow: scrypt; call off the io thread) and opens a session.
  std::variant<session_info, denied> login(std::string_view user, std::string_view password,
                                           std::int64_t now_ns);
  void logout(std::string_view session_id);
  // The session named by a Cookie header, refreshed (idle timer), or nullopt.
  std::optional<session_info> session(std::string_view cookie_header, std::int64_t now_ns);

  // Who may run an action needing `min`: a bearer token (Authorization) or a session cookie
  // plus its CSRF token. Never both checks skipped: no credentials is 401.
  std::variant<principal, denied> authorize(std::string_view authorization,
                                            std::string_view cookie_header,
                                            std::string_view csrf_header, user_role min,
                                            std::int64_t now_ns);
  bool has_token() const noexcept { return !token_.empty(); }
  std::size_t open_sessions();

  // "semilab_session=ID" from a Cookie header ("a=b; semilab_session=ID; c=d").
  static std::string_view session_cookie(std::string_view cookie_header) noexcept;
  static constexpr std::string_view kCookie = "semilab_session";

 private:
  struct entry {
    session_info info;
    std::int64_t created_ns = 0;
    std::int64_t last_ns = 0;
  };
  void expire(std::int64_t now_ns);

  std::shared_ptr<user_store> users_;
  std::string token_;
  std::mutex mu_;
  std::map<std::string, entry, std::less<>> sessions_;
};

// Random bytes as lowercase hex (OpenSSL RAND_bytes); empty on failure.
std::string random_hex(std::size_t bytes);

}  // namespace semilab::agent
