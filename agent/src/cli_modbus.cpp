#include "cli_modbus.hpp"

#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_link.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <iostream>
#include <optional>

namespace semilab::agent {
namespace mb = semilab::drivers::modbus;
namespace asio = boost::asio;

modbus_cli::modbus_cli(CLI::App& app) {
  cmd_ = app.add_subcommand("modbus", "Read, write or scan a Modbus TCP/RTU device");
  cmd_->require_subcommand(1);
  auto add_source = [this](CLI::App* c) {
    c->add_option("uri", uri_, "modbus-tcp://host:port?unit=N or modbus-rtu:///dev/ttyX?baud=..")
        ->required();
    auto* m = c->add_option("--map", map_, "Register map file (TOML)");
    auto* p = c->add_option("--profile", profile_, "Profile name (eurotherm3200, vacuum-gauge, mfc)");
    m->excludes(p);
    p->excludes(m);
  };
  read_ = cmd_->add_subcommand("read", "Read every point of a map once");
  add_source(read_);
  read_->add_flag("--json", json_, "JSON list of {name, value, unit}");
  write_ = cmd_->add_subcommand("write", "Write a writable point, verified by read-back");
  add_source(write_);
  write_->add_option("point", point_, "Point name")->required();
  write_->add_option("value", value_, "Value in the point's unit")->required();
  write_->add_flag("--yes", yes_, "Confirm the write (it changes the device)");
  scan_ = cmd_->add_subcommand("scan", "List the unit ids that answer");
  scan_->add_option("uri", uri_, "modbus-tcp://host:port or modbus-rtu:///dev/ttyX?baud=..")->required();
  scan_->add_option("--first", first_, "First unit id")->check(CLI::Range(1, 247))->capture_default_str();
  scan_->add_option("--last", last_, "Last unit id")->check(CLI::Range(1, 247))->capture_default_str();
  scan_->add_option("--timeout-ms", timeout_ms_, "Wait per unit")->check(CLI::Range(1, 10000))->capture_default_str();
}

bool modbus_cli::parsed() const { return cmd_->parsed(); }

int modbus_cli::run() const {
  if (read_->parsed()) return read();
  if (write_->parsed()) return write();
  return scan();
}

namespace {

struct opened {
  mb::link_resource res;
  std::shared_ptr<const mb::device_map> map;
};

std::optional<opened> open(const std::string& uri, const std::string& map, const std::string& profile) {
  auto res = mb::parse_link_resource(uri);
  if (!res) {
    std::cerr << "semilab-agent: " << res.error().message << "\n";
    return std::nullopt;
  }
  if (map.empty() == profile.empty()) {
    std::cerr << "semilab-agent: give --map FILE or --profile NAME\n";
    return std::nullopt;
  }
  auto m = map.empty() ? mb::load_profile(profile) : mb::load_map(map);
  if (!m) {
    std::cerr << "semilab-agent: " << m.error().message << "\n";
    return std::nullopt;
  }
  return opened{*res, std::make_shared<const mb::device_map>(std::move(*m))};
}

// Runs one operation of a session to completion on this thread.
template <class T, class Start>
T run_one(const opened& o, Start start) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::optional<T> out;
  mb::session s(io.get_executor(), o.res, o.map, {.name = "cli", .timeout_s = o.map->timeout_s});
  start(s, [&](T r) {
    out = std::move(r);
    guard.reset();
  });
  io.run();
  return std::move(*out);
}

boost::json::value json_of(const mb::value& v) {
  constexpr std::uint64_t kExact = std::uint64_t{1} << 53;
  if (auto* b = std::get_if<bool>(&v)) return *b;
  if (auto* i = std::get_if<std::int64_t>(&v)) {
    if (*i > static_cast<std::int64_t>(kExact) || *i < -static_cast<std::int64_t>(kExact))
      return boost::json::string(std::to_string(*i));
    return *i;
  }
  if (auto* u = std::get_if<std::uint64_t>(&v)) {
    if (*u > kExact) return boost::json::string(std::to_string(*u));
    return *u;
  }
  if (auto* d = std::get_if<double>(&v)) return *d;
  return boost::json::string(std::get<std::string>(v));
}

}  // namespace

int modbus_cli::read() const {
  auto o = open(uri_, map_, profile_);
  if (!o) return 2;
  auto r = run_one<mb::poll_result>(*o, [](mb::session& s, auto done) { s.async_poll({}, done); });
  int rc = 0;
  boost::json::array out;
  for (const auto& pv : r.values) {
    const auto& p = o->map->points[pv.index];
    if (!pv.v) {
      rc = 1;
      std::cerr << "semilab-agent: " << p.name << ": " << pv.v.error().message << "\n";
      if (json_)
        out.push_back(boost::json::object{{"name", p.name}, {"value", nullptr}, {"unit", p.unit},
                                          {"error", pv.v.error().message}});
      continue;
    }
    if (json_)
      out.push_back(boost::json::object{{"name", p.name}, {"value", json_of(*pv.v)}, {"unit", p.unit}});
    else
      std::cout << p.name << '\t' << mb::to_text(*pv.v) << '\t' << p.unit << '\n';
  }
  if (json_) std::cout << boost::json::serialize(out) << '\n';
  return rc;
}

int modbus_cli::write() const {
  if (!yes_) {
    std::cerr << "semilab-agent: modbus write changes the device: add --yes to confirm\n";
    return 2;
  }
  auto o = open(uri_, map_, profile_);
  if (!o) return 2;
  auto index = o->map->index_of(point_);
  if (!index) {
    std::cerr << "semilab-agent: " << o->map->source << ": no point '" << point_ << "'\n";
    return 2;
  }
  const auto& p = o->map->points[*index];
  if (!p.writable) {
    std::cerr << "semilab-agent: " << o->map->source << ":" << p.line << ": point '" << p.name
              << "' is not writable\n";
    return 2;
  }
  auto v = mb::parse_value(p, value_);
  if (!v) {
    std::cerr << "semilab-agent: " << v.error().message << "\n";
    return 2;
  }
  if (!mb::is_bit_table(p.tab)) {
    if (auto enc = mb::encode(p, *v); !enc) {  // range check before opening the link
      std::cerr << "semilab-agent: " << enc.error().message << "\n";
      return 2;
    }
  }
  auto r = run_one<drivers::result<mb::value>>(*o, [&](mb::session& s, auto done) {
    s.async_write(*index, *v, done);
  });
  if (!r) {
    std::cerr << "semilab-agent: " << r.error().message << "\n";
    return 1;
  }
  std::cout << p.name << '\t' << mb::to_text(*r) << '\t' << p.unit << '\n';
  return 0;
}

int modbus_cli::scan() const {
  auto res = mb::parse_link_resource(uri_);
  if (!res) {
    std::cerr << "semilab-agent: " << res.error().message << "\n";
    return 2;
  }
  if (first_ > last_) {
    std::cerr << "semilab-agent: --first must not be above --last\n";
    return 2;
  }
  auto hits = mb::scan_units(*res, first_, last_, timeout_ms_ / 1000.0);
  if (!hits) {
    std::cerr << "semilab-agent: " << hits.error().message << "\n";
    return 1;
  }
  for (const auto& h : *hits) std::cout << "unit " << h.unit << '\t' << h.detail << '\n';
  if (hits->empty()) {
    std::cerr << "semilab-agent: no unit in " << first_ << ".." << last_ << " answered\n";
    return 1;
  }
  return 0;
}

}  // namespace semilab::agent
