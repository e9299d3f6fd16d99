#pragma once
// One logger per component ("central", "ingest", "http", "store"), all on one stderr sink.
// Private to semilab_central.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace semilab::central {

// Never null; created on first use with the shared sink and the global level.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

}  // namespace semilab::central
