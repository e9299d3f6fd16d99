#include <semilab/schemas/state.hpp>

#include "json_util.hpp"

namespace semilab::schemas {

std::string encode_presence(const presence& p) {
  boost::json::object o;
  o["v"] = 1;
  o["state"] = p.online ? "online" : "offline";
  o["id"] = p.id;
  o["ts_ns"] = std::to_string(p.ts_ns);
  if (!p.version.empty()) o["version"] = p.version;
  return boost::json::serialize(o);
}

result<presence> decode_presence(std::string_view json) {
  auto bad = make_error_code(errc::bad_json);
  auto o = detail::parse_object(json);
  if (!o) return bad;
  auto state = detail::get_str(*o, "state");
  auto id = detail::get_str(*o, "id");
  if (!state || !id || (*state != "online" && *state != "offline")) return bad;
  presence p;
  p.online = *state == "online";
  p.id = *id;
  if (auto ts = detail::get_str(*o, "ts_ns")) {
    try {
      p.ts_ns = std::stoll(*ts);
    } catch (...) {
      return bad;
    }
  }
  p.version = detail::get_str(*o, "version").value_or("");
  return p;
}

}  // namespace semilab::schemas
