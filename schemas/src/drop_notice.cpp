#include <semilab/schemas/drop_notice.hpp>

#include "json_util.hpp"

namespace semilab::schemas {

namespace {
constexpr drop_action kActions[] = {drop_action::dropped, drop_action::paused, drop_action::resumed,
                                    drop_action::unrecoverable};
constexpr record_class kClasses[] = {record_class::event, record_class::run_result,
                                     record_class::telemetry, record_class::blob};

bool parse_i64(std::string_view s, std::int64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

std::optional<std::uint64_t> u64_of(const boost::json::value& v) {
  if (!v.is_string()) return std::nullopt;
  auto s = v.get_string();
  std::uint64_t out = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return out;
}
}  // namespace

std::string_view to_string(drop_action a) noexcept {
  switch (a) {
    case drop_action::dropped: return "dropped";
    case drop_action::paused: return "paused";
    case drop_action::resumed: return "resumed";
    case drop_action::unrecoverable: return "unrecoverable";
  }
  return "dropped";
}

std::string encode_drop_notice(const drop_notice& n) {
  boost::json::object o;
  o["v"] = 1;
  o["action"] = to_string(n.action);
  o["reason"] = n.reason;
  o["class"] = to_string(n.cls);
  o["epoch"] = detail::u64_str(n.store_epoch);
  o["records"] = detail::u64_str(n.records);
  boost::json::array ranges;
  for (auto& r : n.ranges)
    ranges.push_back(boost::json::array{detail::u64_str(r.first), detail::u64_str(r.last)});
  o["ranges"] = std::move(ranges);
  o["first_ts_ns"] = std::to_string(n.first_ts_ns);
  o["last_ts_ns"] = std::to_string(n.last_ts_ns);
  if (!n.detail.empty()) o["detail"] = n.detail.substr(0, 512);
  return boost::json::serialize(o);
}

result<drop_notice> decode_drop_notice(std::string_view json) {
  auto bad = make_error_code(errc::bad_json);
  auto o = detail::parse_object(json);
  if (!o) return bad;
  auto* v = o->if_contains("v");
  if (!v || !v->is_int64() || v->as_int64() != 1) return bad;
  drop_notice n;
  auto action = detail::get_str(*o, "action");
  auto cls = detail::get_str(*o, "class");
  auto reason = detail::get_str(*o, "reason");
  auto epoch = detail::get_u64(*o, "epoch");
  auto records = detail::get_u64(*o, "records");
  auto t0 = detail::get_str(*o, "first_ts_ns");
  auto t1 = detail::get_str(*o, "last_ts_ns");
  if (!action || !cls || !reason || !epoch || !records || !t0 || !t1) return bad;
  bool found = false;
  for (auto a : kActions)
    if (to_string(a) == *action) n.action = a, found = true;
  if (!found) return bad;
  found = false;
  for (auto c : kClasses)
    if (to_string(c) == *cls) n.cls = c, found = true;
  if (!found) return bad;
  n.reason = *reason;
  n.store_epoch = *epoch;
  n.records = *records;
  if (!parse_i64(*t0, n.first_ts_ns) || !parse_i64(*t1, n.last_ts_ns)) return bad;
  auto* rs = o->if_contains("ranges");
  if (!rs || !rs->is_array()) return bad;
  for (auto& e : rs->as_array()) {
    if (!e.is_array() || e.as_array().size() != 2) return bad;
    auto a = u64_of(e.as_array()[0]);
    auto b = u64_of(e.as_array()[1]);
    if (!a || !b || *a > *b) return bad;
    if (!n.ranges.empty() && *a <= n.ranges.back().last) return bad;
    n.ranges.push_back({*a, *b});
  }
  if (auto d = detail::get_str(*o, "detail")) n.detail = *d;
  return n;
}

record make_drop_notice_record(const drop_notice& n, std::int64_t now_ns) {
  record r;
  r.cls = record_class::event;
  r.ts_ns = now_ns;
  r.instrument = kDropNoticeInstrument;
  r.channel = kDropNoticeChannel;
  r.val = encode_drop_notice(n);
  return r;
}

bool is_drop_notice(const record& r) noexcept {
  return r.cls == record_class::event && r.instrument == kDropNoticeInstrument &&
         r.channel == kDropNoticeChannel;
}

}  // namespace semilab::schemas
