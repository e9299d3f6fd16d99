// Named users (users.hpp): scrypt hashes (no password in the store, a tampered hash refuses),
// lockout after repeated failures and unlock, disabled users, the failed-authentication alarm
// above 50 per minute, audit entries without secrets; security-check findings.
#include <semilab/central/audit.hpp>
#include <semilab/central/config.hpp>
#include <semilab/central/store.hpp>
#include <semilab/central/users.hpp>

#include <sys/stat.h>

#include <doctest/doctest.h>

#include <fstream>

#include "test_util.hpp"

using namespace semilab::central;
using central_test::temp_dir;

namespace {

struct fixture {
  temp_dir dir;
  std::unique_ptr<sqlite_store> db;
  fixture() {
    std::string err;
    auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
    REQUIRE(s.has_value());
    db = std::move(*s);
  }
};

const std::string kPw = "correct horse battery";

}  // namespace

TEST_CASE("scrypt password hashes") {
  // Small parameters keep the test fast under ASan; the format carries them.
  scrypt_params small{1 << 10, 8, 1};
  auto h = hash_password(kPw, small);
  REQUIRE(h.rfind("scrypt$10$8$1$", 0) == 0);
  CHECK(h.find(kPw) == std::string::npos);
  CHECK(verify_password(kPw, h));
  CHECK_FALSE(verify_password(kPw + "x", h));
  CHECK(hash_password(kPw, small) != h);  // fresh salt
  auto t = h;
  t.back() = t.back() == '0' ? '1' : '0';  // one hex digit of the hash
  CHECK_FALSE(verify_password(kPw, t));
  t = h;
  t[h.find('$', 14) + 1] ^= 1;  // first salt digit
  CHECK_FALSE(verify_password(kPw, t));
  CHECK_FALSE(verify_password(kPw, "scrypt$99$8$1$00$00"));
  CHECK_FALSE(verify_password(kPw, "plain"));
  // The default (memory-hard) parameters.
  auto d = hash_password(kPw);
  CHECK(d.rfind("scrypt$15$8$1$", 0) == 0);
  CHECK(verify_password(kPw, d));
  CHECK(password_problem("short").has_value());
  CHECK(password_problem("aaaaaaaaaaaaaaaa").has_value());
  CHECK_FALSE(password_problem(kPw).has_value());
}

TEST_CASE("users: create, login, lockout, unlock, disable; audited without secrets") {
  fixture f;
  std::string err;
  const std::int64_t t0 = now_ns();
  REQUIRE_FALSE(create_user(*f.db, "alice", role::engineer, kPw, t0, err));
  CHECK(create_user(*f.db, "alice", role::viewer, kPw, t0, err));  // exists
  CHECK(create_user(*f.db, "bob", role::viewer, "short", t0, err));
  CHECK(err.find("12") != std::string::npos);

  auto ok = authenticate_user(*f.db, "alice", kPw, t0);
  REQUIRE(ok.has_value());
  CHECK(ok->status == login_status::ok);
  CHECK(ok->r == role::engineer);
  auto unknown = authenticate_user(*f.db, "nobody", kPw, t0);
  REQUIRE(unknown.has_value());
  CHECK(unknown->status == login_status::bad_credentials);

  lockout_policy pol{3, 60'000'000'000};
  for (int i = 0; i < 3; ++i) {
    auto r = authenticate_user(*f.db, "alice", "wrong password!", t0 + i, pol);
    REQUIRE(r.has_value());
    CHECK(r->status == login_status::bad_credentials);
  }
  // Locked: even the right password is refused until the lock expires.
  auto locked = authenticate_user(*f.db, "alice", kPw, t0 + 10, pol);
  REQUIRE(locked.has_value());
  CHECK(locked->status == login_status::locked);
  auto later = authenticate_user(*f.db, "alice", kPw, t0 + 61'000'000'000, pol);
  REQUIRE(later.has_value());
  CHECK(later->status == login_status::ok);
  for (int i = 0; i < 3; ++i) (void)authenticate_user(*f.db, "alice", "wrong password!", t0, pol);
  REQUIRE_FALSE(unlock_user(*f.db, "alice", t0, err));
  CHECK(authenticate_user(*f.db, "alice", kPw, t0 + 1, pol)->status == login_status::ok);

  REQUIRE_FALSE(set_user_disabled(*f.db, "alice", true, t0, err));
  CHECK(authenticate_user(*f.db, "alice", kPw, t0)->status == login_status::disabled);
  REQUIRE_FALSE(set_user_disabled(*f.db, "alice", false, t0, err));
  REQUIRE_FALSE(set_user_role(*f.db, "alice", role::admin, t0, err));
  REQUIRE_FALSE(set_password(*f.db, "alice", "another long passphrase", t0, err));
  CHECK(authenticate_user(*f.db, "alice", "another long passphrase", t0)->r == role::admin);

  auto users = list_users(*f.db);
  REQUIRE(users.has_value());
  REQUIRE(users->size() == 1);
  CHECK(users->front().r == role::admin);

  // Audit: every change recorded, no password or hash anywhere in it; the chain verifies.
  auto rows = f.db->query(
      "SELECT action, COALESCE(old_value, ''), COALESCE(new_value, '') FROM audit_log "
      "WHERE chain = 'admin' ORDER BY seq",
      {});
  REQUIRE(rows.has_value());
  std::vector<std::string> actions;
  for (const auto& r : *rows) {
    actions.push_back(r[0].value_or(""));
    for (const auto& c : r) {
      CHECK(c.value_or("").find(kPw) == std::string::npos);
      CHECK(c.value_or("").find("scrypt$") == std::string::npos);
    }
  }
  const std::vector<std::string> want = {"user.create", "user.lock",    "user.lock",
                                         "user.unlock", "user.disable", "user.enable",
                                         "user.role",   "user.password"};
  CHECK(actions == want);
  auto rep = audit_verify(*f.db, {});
  REQUIRE(rep.has_value());
  CHECK(rep->findings.empty());
}

TEST_CASE("failed authentications raise the alarm above 50 per minute") {
  failure_monitor m;
  const std::int64_t t0 = 1'000'000'000'000;
  bool crossed = false;
  for (int i = 0; i < 50; ++i) crossed |= m.record(t0 + i * 1'000'000);
  CHECK_FALSE(crossed);
  CHECK_FALSE(m.alarm(t0 + 1'000'000'000));
  CHECK(m.record(t0 + 2'000'000'000));  // the 51st within the minute
  CHECK(m.alarm(t0 + 2'000'000'000));
  CHECK(m.last_minute(t0 + 2'000'000'000) == 51);
  CHECK_FALSE(m.alarm(t0 + 61'000'000'000));  // the first 50 left the window
  CHECK(m.total() == 51);
}

TEST_CASE("security-check reports insecure settings and passes a hardened configuration") {
  temp_dir d;
  auto write = [&](const std::string& name, const std::string& text, mode_t mode) {
    {
      std::ofstream o(d.file(name));
      o << text;
    }
    ::chmod(d.file(name).c_str(), mode);
    return d.file(name);
  };
  auto has = [](const std::vector<security_finding>& v, std::string_view key) {
    for (const auto& f : v)
      if (f.insecure && f.key == key) return true;
    return false;
  };
  central_config cfg;
  cfg.central.data_dir = d.path.string();
  cfg.mqtt.password = "changeme";
  cfg.http.listen = "0.0.0.0:8080";
  cfg.auth.anonymous = "viewer";
  cfg.mqtt.command_key_file = write("cmd.key", "0123456789abcdef0123\n", 0644);
  const auto conf = write("central.toml", "# test\n", 0644);
  auto v = security_findings(cfg, conf);
  CHECK(has(v, "mqtt.broker"));  // tcp://: TLS off
  CHECK(has(v, "mqtt.password"));  // default password
  CHECK(has(v, "(config file)"));  // a password in a world-readable file
  CHECK(has(v, "mqtt.command_key_file"));  // world-readable secret
  CHECK(has(v, "central.signing_key_file"));  // acks unsigned
  CHECK(has(v, "http.listen"));
  CHECK(has(v, "auth.anonymous"));
  CHECK(has(v, "ingest.require_signatures"));
  for (const auto& f : v) CHECK(f.why.find("changeme") == std::string::npos);  // no secret shown
  CHECK(run_security_check(cfg, conf, stdout, stderr) == 1);

  central_config good;
  good.central.data_dir = d.path.string();
  ::chmod(d.path.c_str(), 0750);
  good.mqtt.broker = "ssl://127.0.0.1:8883";
  good.mqtt.tls_cert_file = write("client.pem", "x", 0644);
  good.mqtt.tls_key_file = write("client.key", "x", 0600);
  good.central.signing_key_file = write("central.pem", "x", 0600);
  good.ingest.require_signatures = true;
  auto g = security_findings(good, conf);
  for (const auto& f : g) CHECK_MESSAGE(!f.insecure, f.key << ": " << f.why);
  CHECK(run_security_check(good, conf, stdout, stderr) == 0);
}
