#pragma once
// The acquisition API: turns instrument readings into telemetry records and hands them to the
// outbox, which commits them before anything else happens to them.
#include <semilab/drivers/model.hpp>
#include <semilab/sync/outbox.hpp>

#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>

namespace semilab::agent {

std::int64_t utc_now_ns() noexcept;

class recorder {
 public:
  explicit recorder(sync::outbox& box) : box_(box) {}

  // One reading set of one instrument at `ts_ns`. `done` runs on the outbox writer thread after
  // the commit (or with the storage error); post it to your strand.
  void submit(std::string_view instrument, std::int64_t ts_ns,
              std::span<const drivers::reading> readings, sync::outbox::insert_done done);

 private:
  sync::outbox& box_;
};

}  // namespace semilab::agent
