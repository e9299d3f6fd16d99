#pragma once
// Retained presence messages: agent birth/Last Will and per-instance central state.
#include <semilab/schemas/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace semilab::schemas {

struct presence {
  bool online = false;
  std::string id;          // agent id or central instance id
  std::int64_t ts_ns = 0;  // when the message was made (0 for a Last Will made at connect)
  std::string version;     // software version
};

std::string encode_presence(const presence& p);
result<presence> decode_presence(std::string_view json);

}  // namespace semilab::schemas
