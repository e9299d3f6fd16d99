#include <semilab/central/error.hpp>

#include <string>

namespace semilab::central {

namespace {
class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.central"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::store_open_failed: return "cannot open the store database";
      case errc::store_migration_failed: return "store schema migration failed";
      case errc::store_write_failed: return "store write failed";
      case errc::store_read_failed: return "store read failed";
      case errc::bad_listen_address: return "listen address is not host:port";
      case errc::listen_failed: return "cannot listen on the address";
      case errc::queue_full: return "ingest queue full";
      case errc::stopped: return "stopped";
      case errc::backup_failed: return "backup failed";
      case errc::backup_mismatch: return "backup content does not match";
    }
    return "unknown semilab.central error";
  }
};
}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category c;
  return c;
}

}  // namespace semilab::central
