#pragma once
// Named users of central (table users, 0007_audit.sql / central-pg 0006) with a role, a password
// kept as an scrypt hash (OpenSSL 3 EVP_KDF "SCRYPT", memory-hard: N = 2^15, r = 8, p = 1, 32 MiB
// per check), lockout after repeated failures, and a process-wide monitor of failed
// authentications (users and API tokens) that raises an alarm above 50 per minute.
//
// A user works with the API through a token issued to them (`semilab-central users login NAME`
// reads the password on stdin, checks it with the lockout rules and prints a bearer token with
// the user's role, named "user:NAME"). Passwords never appear in argv, logs or error messages.
#include <semilab/central/auth.hpp>
#include <semilab/central/config.hpp>
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::central {

struct scrypt_params {
  std::uint64_t n = std::uint64_t{1} << 15;
  std::uint32_t r = 8, p = 1;
};
// "scrypt$<log2 N>$<r>$<p>$<salt hex>$<hash hex>" with a fresh 16-byte salt; "" on failure.
std::string hash_password(std::string_view password, const scrypt_params& params = {});
// Recomputes with the stored parameters and compares in constant time. False on a malformed hash.
bool verify_password(std::string_view password, std::string_view stored);
// Why a new password is refused (shorter than 12 characters, or all one character); nullopt = ok.
std::optional<std::string> password_problem(std::string_view password);

struct user_row {
  std::string name;
  role r = role::viewer;
  std::int64_t created_ns = 0;
  std::optional<std::int64_t> disabled_ns;
  std::int64_t failed_count = 0;
  std::optional<std::int64_t> locked_until_ns;
};

struct lockout_policy {
  std::int64_t max_failures = 5;                       // consecutive failures before a lock
  std::int64_t lock_ns = 15LL * 60 * 1'000'000'000;    // how long the lock lasts
};

// Store operations; each change also writes an admin audit entry (audit.hpp), never the password.
boost::system::error_code create_user(storage& db, std::string_view name, role r,
                                      std::string_view password, std::int64_t now,
                                      std::string& error);
boost::system::error_code set_password(storage& db, std::string_view name,
                                       std::string_view password, std::int64_t now,
                                       std::string& error);
boost::system::error_code set_user_role(storage& db, std::string_view name, role r,
                                        std::int64_t now, std::string& error);
boost::system::error_code set_user_disabled(storage& db, std::string_view name, bool disabled,
                                            std::int64_t now, std::string& error);
boost::system::error_code unlock_user(storage& db, std::string_view name, std::int64_t now,
                                      std::string& error);
result<std::vector<user_row>> list_users(storage& db);

enum class login_status { ok, bad_credentials, locked, disabled };
std::string_view to_string(login_status s) noexcept;
struct login_outcome {
  login_status status = login_status::bad_credentials;
  role r = role::none;
};
// Checks a password with the lockout rules: a locked user is refused without checking; a wrong
// password counts a failure (and locks at max_failures); a right one resets the count. An unknown
// user costs the same scrypt as a known one. Every failure is recorded in auth_failures().
result<login_outcome> authenticate_user(storage& db, std::string_view name,
                                        std::string_view password, std::int64_t now,
                                        const lockout_policy& policy = {});

// Failed authentications in a sliding minute, thread-safe.
class failure_monitor {
 public:
  static constexpr std::size_t kAlarmPerMinute = 50;
  // Returns true when this failure made the count cross kAlarmPerMinute (log the alarm once).
  bool record(std::int64_t now_ns);
  std::size_t last_minute(std::int64_t now_ns);
  bool alarm(std::int64_t now_ns) { return last_minute(now_ns) > kAlarmPerMinute; }
  std::uint64_t total() const;

 private:
  mutable std::mutex mutex_;
  std::deque<std::int64_t> times_;  // guarded
  std::uint64_t total_ = 0;         // guarded
  void trim(std::int64_t now_ns);
};
failure_monitor& auth_failures();

// CLI: passwords are read from `in` (one line), never from argv.
int run_users_add(const central_config& cfg, const std::string& name, const std::string& role,
                  std::FILE* in, std::FILE* out, std::FILE* err);
int run_users_passwd(const central_config& cfg, const std::string& name, std::FILE* in,
                     std::FILE* out, std::FILE* err);
int run_users_list(const central_config& cfg, std::FILE* out, std::FILE* err);
int run_users_set(const central_config& cfg, const std::string& name, const std::string& what,
                  const std::string& role, std::FILE* out, std::FILE* err);  // disable|enable|unlock|role
int run_users_login(const central_config& cfg, const std::string& name, std::FILE* in,
                    std::FILE* out, std::FILE* err);

// `semilab-central security-check`: the loaded configuration's insecure settings, one per line
// ("INSECURE key: why"), and notes; exit 1 when any is insecure.
struct security_finding {
  bool insecure = true;
  std::string key, why;
};
std::vector<security_finding> security_findings(const central_config& cfg,
                                                const std::string& config_file);
int run_security_check(const central_config& cfg, const std::string& config_file, std::FILE* out,
                       std::FILE* err);

}  // namespace semilab::central
