#include <semilab/schemas/run_metadata.hpp>

#include "json_util.hpp"

namespace semilab::schemas {

namespace {

struct field {
  const char* key;
  std::string run_metadata::*member;
};
constexpr field kFields[] = {{"sample", &run_metadata::sample}, {"wafer", &run_metadata::wafer},
                             {"lot", &run_metadata::lot},       {"die", &run_metadata::die},
                             {"operator", &run_metadata::operator_name},
                             {"project", &run_metadata::project}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> int_of(std::string_view s) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<std::pair<std::int64_t, std::int64_t>> parse_die_coordinates(std::string_view die) {
  const auto comma = die.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  auto x = int_of(die.substr(0, comma));
  auto y = int_of(die.substr(comma + 1));
  if (!x || !y) return std::nullopt;
  return std::pair{*x, *y};
}

std::string encode_run_metadata(const run_metadata& m) {
  boost::json::object o;
  o["v"] = 1;
  for (const auto& f : kFields)
    if (!(m.*f.member).empty()) o[f.key] = m.*f.member;
  if (m.die_x) o["die_x"] = *m.die_x;
  if (m.die_y) o["die_y"] = *m.die_y;
  return boost::json::serialize(o);
}

result<run_metadata> decode_run_metadata(std::string_view json) {
  auto bad = make_error_code(errc::bad_json);
  auto o = detail::parse_object(json);
  if (!o) return bad;
  auto* v = o->if_contains("v");
  if (!v || !v->is_int64() || v->as_int64() != 1) return bad;
  run_metadata m;
  for (const auto& f : kFields) {
    auto* x = o->if_contains(f.key);
    if (!x) continue;
    if (!x->is_string() || x->get_string().size() > kRunMetadataMaxField) return bad;
    m.*f.member = std::string(x->get_string());
  }
  if (auto c = parse_die_coordinates(m.die)) {
    m.die_x = c->first;
    m.die_y = c->second;
  }
  for (auto [key, out] : {std::pair{"die_x", &m.die_x}, std::pair{"die_y", &m.die_y}}) {
    auto* x = o->if_contains(key);
    if (!x) continue;
    if (!x->is_int64()) return bad;
    *out = x->as_int64();
  }
  return m;
}

}  // namespace semilab::schemas
