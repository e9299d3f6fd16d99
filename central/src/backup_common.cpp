#include "backup_common.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace semilab::central::backup_detail {

namespace fs = std::filesystem;

std::string utc_stamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%S", &tm);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char out[48];
  std::snprintf(out, sizeof out, "%s%03dZ", buf, static_cast<int>(ms));
  return out;
}

bool fsync_path(const std::string& path, bool dir, std::string& error) {
  int fd = ::open(path.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    error = "fsync " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

sha256::sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
sha256::~sha256() { EVP_MD_CTX_free(ctx_); }
void sha256::add(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }
void sha256::add_u64(std::uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  add(b, 8);
}
std::string sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_, md, &n);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (unsigned i = 0; i < n; ++i) {
    s += kHex[md[i] >> 4];
    s += kHex[md[i] & 15];
  }
  return s;
}

std::string checksum_mismatch(const std::vector<table_checksum>& want,
                              const std::vector<table_checksum>& got, const char* extra) {
  for (const auto& w : want) {
    auto it =
        std::find_if(got.begin(), got.end(), [&](const auto& g) { return g.table == w.table; });
    if (it == got.end()) return "table " + w.table + " is missing";
    if (it->rows != w.rows)
      return "table " + w.table + ": " + std::to_string(it->rows) + " rows, expected " +
             std::to_string(w.rows);
    if (it->sha256 != w.sha256) return "table " + w.table + ": content checksum differs";
  }
  if (got.size() != want.size()) return extra;
  return {};
}

boost::json::array manifest_tables(const std::vector<table_checksum>& tables) {
  boost::json::array a;
  for (const auto& c : tables)
    a.push_back(boost::json::object{{"table", c.table}, {"rows", c.rows}, {"sha256", c.sha256}});
  return a;
}

result<std::vector<table_checksum>> read_manifest(const std::string& file, std::string& error) {
  const std::string manifest = file + ".json";
  std::ifstream in(manifest);
  if (!in) {
    error = "no manifest " + manifest + " beside the backup";
    return make_error_code(errc::backup_failed);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code jec;
  auto v = boost::json::parse(ss.str(), jec);
  const auto* o = jec ? nullptr : v.if_object();
  const auto* tables = o && o->contains("tables") ? o->at("tables").if_array() : nullptr;
  auto bad = [&]() -> result<std::vector<table_checksum>> {
    error = "manifest " + manifest + " is not a backup manifest" +
            (jec ? ": " + jec.message() : std::string());
    return make_error_code(errc::backup_failed);
  };
  if (!tables) return bad();
  std::vector<table_checksum> want;
  for (const auto& t : *tables) {
    const auto* e = t.if_object();
    if (!e || !e->contains("table") || !e->contains("rows") || !e->contains("sha256") ||
        !e->at("table").is_string() || !e->at("sha256").is_string() ||
        !e->at("rows").is_number())
      return bad();
    want.push_back(table_checksum{std::string(e->at("table").as_string()),
                                  e->at("rows").to_number<std::uint64_t>(jec),
                                  std::string(e->at("sha256").as_string())});
    if (jec) return bad();
  }
  return want;
}

bool publish_backup(const std::string& partial, const std::string& final_file,
                    const boost::json::object& manifest, const std::string& dir,
                    std::string& error) {
  const std::string m = final_file + ".json";
  {
    std::ofstream out(m + ".partial", std::ios::trunc);
    out << boost::json::serialize(manifest) << '\n';
    if (!out) {
      error = "cannot write " + m;
      return false;
    }
  }
  if (!fsync_path(partial, false, error) || !fsync_path(m + ".partial", false, error))
    return false;
  std::error_code ec;
  fs::rename(m + ".partial", m, ec);
  if (!ec) fs::rename(partial, final_file, ec);
  if (ec) {
    error = "cannot rename the verified backup into place: " + ec.message();
    return false;
  }
  return fsync_path(dir, true, error);
}

}  // namespace semilab::central::backup_detail
