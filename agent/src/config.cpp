#include <semilab/agent/config.hpp>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/visa_resource.hpp>
#include <semilab/schemas/config_map.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/service/log_config.hpp>

#include <set>

#include "cli_analyze.hpp"
#include "health.hpp"

namespace semilab::agent {

namespace cfg = schemas::config;

namespace {

std::optional<std::string> check_id(const std::string& v) {
  if (!schemas::valid_id(v)) return "'" + v + "' is not allowed: use 1-64 of A-Z a-z 0-9 . _ -";
  return std::nullopt;
}

std::optional<std::string> check_broker(const std::string& v) {
  if (v.rfind("tcp://", 0) != 0 && v.rfind("ssl://", 0) != 0 && v.rfind("mqtt://", 0) != 0 &&
      v.rfind("mqtts://", 0) != 0)
    return "'" + v + "' is not a broker URL (tcp://host:port or ssl://host:port)";
  return std::nullopt;
}

std::optional<std::string> check_policy(const std::string& v) {
  if (v != "pause" && v != "drop_oldest") return "must be \"pause\" or \"drop_oldest\"";
  return std::nullopt;
}

const cfg::option<agent_config> kAgent[] = {
    cfg::string_opt<agent_config>("id", &agent_config::id, "",
                                  "Agent id, unique across the deployment; also the MQTT client id",
                                  check_id),
    cfg::string_opt<agent_config>("site", &agent_config::site, "", "Site label used in topics",
                                  check_id),
    cfg::string_opt<agent_config>("data_dir", &agent_config::data_dir, "",
                                  "Directory of the outbox database and runtime files"),
    cfg::string_opt<agent_config>(
        "durability", &agent_config::durability, "full",
        "`full`: a stored record survives a power cut; `normal`: survives a crash of the agent, the "
        "last commits may be lost on power loss",
        [](const std::string& v) -> std::optional<std::string> {
          if (v != "full" && v != "normal") return "must be \"full\" or \"normal\"";
          return std::nullopt;
        }),
    cfg::int_opt<agent_config>("quota_mb", &agent_config::quota_mb, "1024", "MiB",
                               "Outbox quota in stored bytes of held records (0 = none); when "
                               "reached, each class follows its policy, every pause or drop is "
                               "counted and announced by a drop notice",
                               0, 1'000'000),
    cfg::int_opt<agent_config>("quota_reserve_mb", &agent_config::quota_reserve_mb, "16", "MiB",
                               "Room above the quota that only events and run results may use "
                               "(they are never dropped)",
                               0, 100'000),
    cfg::string_opt<agent_config>("telemetry_when_full", &agent_config::telemetry_when_full,
                                  "pause",
                                  "`pause`: new telemetry is refused while the outbox is full; "
                                  "`drop_oldest`: the oldest held telemetry is evicted",
                                  check_policy),
    cfg::string_opt<agent_config>("blob_when_full", &agent_config::blob_when_full, "drop_oldest",
                                  "Same choice for blobs", check_policy),
    cfg::int_opt<agent_config>("integrity_check_s", &agent_config::integrity_check_s, "3600", "s",
                               "Period of the background PRAGMA quick_check of the outbox (0 = "
                               "only after an I/O error); a corrupt outbox is moved aside",
                               0, 604'800),
    cfg::int_opt<agent_config>("retain_hours", &agent_config::retain_hours, "168", "h",
                               "Acked records stay this long after central's ack, for replays "
                               "(`semilab-central replay`); 0 = deleted at the ack",
                               0, 87'600),
    cfg::int_opt<agent_config>("retain_mb", &agent_config::retain_mb, "256", "MiB",
                               "At most this much acked records are retained (oldest go first); "
                               "counted in quota_mb and evicted first under its pressure; 0 = "
                               "deleted at the ack",
                               0, 1'000'000),
    cfg::string_opt<agent_config>("control_socket", &agent_config::control_socket,
                                  "\"<data_dir>/control.sock\"",
                                  "Unix socket of the local CLI (`semilab-agent status`, `pause`, "
                                  "...), created with mode 0660: the daemon's user and group may "
                                  "use it (docs/agent-cli.md)"),
};

const cfg::option<agent_config> kMqtt[] = {
    cfg::string_opt<agent_config>("broker", &agent_config::broker, "tcp://127.0.0.1:1883",
                                  "Broker URL", check_broker),
    cfg::string_opt<agent_config>("username", &agent_config::username, "\"\"", "MQTT user name"),
    cfg::string_opt<agent_config>("password", &agent_config::password, "\"\"",
                                  "MQTT password (never logged)"),
    cfg::string_opt<agent_config>("tls_ca_file", &agent_config::tls_ca_file, "\"\"",
                                  "CA certificate (PEM) the broker's certificate must chain to, "
                                  "for an ssl:// broker (\"\" = the system's trust store)"),
    cfg::string_opt<agent_config>("tls_cert_file", &agent_config::tls_cert_file, "\"\"",
                                  "Client certificate (PEM) for an ssl:// broker; its CN should be "
                                  "the agent id"),
    cfg::string_opt<agent_config>("tls_key_file", &agent_config::tls_key_file, "\"\"",
                                  "Private key (PEM) of the client certificate"),
    cfg::bool_opt<agent_config>("tls_verify_hostname", &agent_config::tls_verify_hostname, "true",
                                "Check that the broker's certificate names the broker's host "
                                "(the chain is always verified)"),
};

const cfg::option<agent_config> kSync[] = {
    cfg::int_opt<agent_config>("batch_max_records", &agent_config::batch_max_records, "2000",
                               "records", "Records per batch at most", 1, 100'000),
    cfg::int_opt<agent_config>("max_inflight_batches", &agent_config::max_inflight_batches, "4",
                               "batches", "Batches sent and not yet acked by central at most", 1,
                               256),
    cfg::double_opt<agent_config>("ack_timeout_s", &agent_config::ack_timeout_s, "10", "s",
                                  "Resend a batch when central's ack has not come after this",
                                  0.1, 3600),
    cfg::int_opt<agent_config>("linger_ms", &agent_config::linger_ms, "100", "ms",
                               "Wait this long for more records before sending a small batch", 0,
                               60'000),
    cfg::int_opt<agent_config>("zstd_level", &agent_config::zstd_level, "3", "",
                               "zstd level of batch bodies (1-3 are the sweet spot; higher costs "
                               "CPU for little gain)",
                               1, 19),
    cfg::int_opt<agent_config>("zstd_dictionary_records", &agent_config::zstd_dictionary_records,
                               "0", "records",
                               "Train a zstd dictionary from this many recent telemetry records "
                               "and compress batches with it (retrained daily; central fetches "
                               "it); pays off for small live batches; 0 = none",
                               0, 1'000'000),
    cfg::double_opt<agent_config>("max_bytes_per_s", &agent_config::max_bytes_per_s, "0", "bytes/s",
                                  "Upload bandwidth cap, resends included (0 = none)", 0, 1e12),
    cfg::double_opt<agent_config>("max_batches_per_s", &agent_config::max_batches_per_s, "0",
                                  "batches/s", "Upload batch-rate cap (0 = none)", 0, 1e6),
    cfg::string_opt<agent_config>("command_key_file", &agent_config::command_key_file, "\"\"",
                                  "File holding the secret shared with central that authenticates "
                                  "commands on the cmd topic (HMAC-SHA256, at least 16 bytes); "
                                  "\"\" = every command is refused unless central_public_keys "
                                  "is set"),
    cfg::string_opt<agent_config>(
        "central_public_keys", &agent_config::central_public_keys, "\"\"",
        "Pinned Ed25519 public key(s) of central (64 hex digits each, comma-separated; printed by "
        "`semilab-central keygen`). When set, acks and commands must carry central's signature: "
        "unsigned or badly signed ones are ignored, logged and counted, and command_key_file is "
        "no longer needed. SIGHUP applies a changed list without a restart (key rotation)",
        [](const std::string& v) -> std::optional<std::string> {
          if (!schemas::parse_public_key_list(v))
            return "expected 64-hex-digit Ed25519 public keys separated by commas";
          return std::nullopt;
        }),
};

const cfg::option<agent_config> kStatus[] = {
    cfg::bool_opt<agent_config>("enabled", &agent_config::status_enabled, "true",
                                "Serve the status page, its JSON API and /metrics"),
    cfg::string_opt<agent_config>(
        "bind", &agent_config::status_bind, "127.0.0.1",
        "Address the status page listens on; anything but loopback needs HTTPS (`tls_cert_file` "
        "and `tls_key_file`) or, on a trusted network only, `insecure_http = true`"),
    cfg::int_opt<agent_config>("port", &agent_config::status_port, "8470", "",
                               "TCP port of the status page (0 = any free port, logged)", 0, 65535),
    cfg::string_opt<agent_config>("operator_token", &agent_config::operator_token, "\"\"",
                                  "Bearer token for scripts: `Authorization: Bearer ...` runs "
                                  "the page's actions as an engineer; empty = only logged-in "
                                  "local users (`semilab-agent user add`) act. Never logged"),
    cfg::string_opt<agent_config>("tls_cert_file", &agent_config::status_tls_cert_file, "\"\"",
                                  "Certificate chain (PEM) of the page: with tls_key_file the page "
                                  "serves HTTPS only (TLS 1.2+)"),
    cfg::string_opt<agent_config>("tls_key_file", &agent_config::status_tls_key_file, "\"\"",
                                  "Private key (PEM) of tls_cert_file; keep it mode 0600 "
                                  "(`semilab-agent security-check`)"),
    cfg::bool_opt<agent_config>("insecure_http", &agent_config::status_insecure_http, "false",
                                "Allow plain HTTP on a non-loopback address (trusted networks only)"),
    cfg::int_opt<agent_config>("health_period_s", &agent_config::health_period_s, "60", "s",
                               "The retained health topic is republished on every change and at "
                               "least this often",
                               1, 86'400),
};

const cfg::option<instrument_config> kInstrument[] = {
    cfg::string_opt<instrument_config>("id", &instrument_config::id, "",
                                       "Instrument id, unique within the agent", check_id),
    cfg::string_opt<instrument_config>(
        "model", &instrument_config::model, "(SCPI: required)", "SCPI driver model, e.g. keithley2450",
        [](const std::string& v) -> std::optional<std::string> {
          if (!drivers::find_model(v)) {
            std::string known;
            for (auto& m : drivers::models()) known += (known.empty() ? "" : ", ") + std::string(m.name);
            return "unknown model '" + v + "' (known: " + known + ")";
          }
          return std::nullopt;
        }),
    cfg::string_opt<instrument_config>(
        "resource", &instrument_config::resource, "",
        "VISA resource string (TCPIP0::10.0.0.5::5025::SOCKET, TCPIP0::10.0.0.5::inst0::INSTR, "
        "USB0::0x05E6::0x2450::04012345::INSTR, ASRL/dev/ttyUSB0::INSTR?baud=9600) or Modbus URI "
        "(modbus-tcp://10.0.0.7:502?unit=1, modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3)",
        [](const std::string& v) -> std::optional<std::string> {
          auto r = drivers::parse_resource(v);
          if (!r) return r.error().message;
          if (drivers::modbus::link_resource_of(*r)) return std::nullopt;
          if (auto o = drivers::require_openable(*r); !o) return o.error().message;
          return std::nullopt;
        }),
    cfg::string_opt<instrument_config>("map", &instrument_config::map, "(Modbus: map or profile)",
                                       "Modbus register map file (TOML, [[point]] tables)"),
    cfg::string_opt<instrument_config>("profile", &instrument_config::profile,
                                       "(Modbus: map or profile)",
                                       "Shipped Modbus profile: eurotherm3200, vacuum-gauge, mfc"),
    cfg::double_opt<instrument_config>("poll_interval_s", &instrument_config::poll_interval_s,
                                       "1.0", "s", "Time between readings", 0.001, 86'400),
    cfg::int_opt<instrument_config>("count", &instrument_config::count, "0", "readings",
                                    "Polls to make, then stop (each stores one reading per channel; 0 = unlimited)", 0,
                                    INT64_MAX),
    cfg::int_opt<instrument_config>("timeout_ms", &instrument_config::timeout_ms, "2000", "ms",
                                    "Deadline of one instrument operation", 10, 600'000),
    cfg::string_opt<instrument_config>(
        "calibration_due", &instrument_config::calibration_due, "\"\"",
        "Calibration due date, YYYY-MM-DD (UTC); health notes it 14 days before and is degraded "
        "after",
        [](const std::string& v) -> std::optional<std::string> {
          if (!v.empty() && !health::parse_date_ns(v)) return "'" + v + "' is not a YYYY-MM-DD date";
          return std::nullopt;
        }),
    {"settings", "table", "{}", "", "Model settings (see `semilab-agent models`)",
     [](instrument_config& s, const toml::node& n) -> std::optional<std::string> {
       auto* t = n.as_table();
       if (!t) return "expected a table of model settings";
       for (auto&& [k, v] : *t) {
         if (auto d = v.value<double>(); d && v.is_number()) {
           std::ostringstream os;
           os.precision(17);
           os << *d;
           s.settings[std::string(k.str())] = os.str();
         } else if (auto str = v.value<std::string>()) {
           s.settings[std::string(k.str())] = *str;
         } else {
           return "setting '" + std::string(k.str()) + "' must be a number or a string";
         }
       }
       return std::nullopt;
     }},
};

const cfg::option<filedrop_config> kFiledrop[] = {
    cfg::string_opt<filedrop_config>("id", &filedrop_config::id, "",
                                     "Instrument id of the folder's records (unique among "
                                     "[[instrument]] and [[filedrop]] ids)",
                                     check_id),
    cfg::string_opt<filedrop_config>(
        "folder", &filedrop_config::folder, "",
        "Watched directory, e.g. a share of the instrument PC. A folder missing at start is "
        "logged and watched by polling until it appears",
        [](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return "must not be empty";
          return std::nullopt;
        }),
    cfg::string_opt<filedrop_config>("pattern", &filedrop_config::pattern, "*",
                                     "File name glob (fnmatch: * ? [..]); names starting with '.' "
                                     "or ending in .tmp, .part, ~ are always skipped"),
    cfg::string_opt<filedrop_config>(
        "format", &filedrop_config::format, "auto",
        "`auto` (detected from the content, as `semilab-agent analyze` does) or one of csv, "
        "jcamp-dx, xrdml, vamas, spc, sem-tiff",
        [](const std::string& v) -> std::optional<std::string> {
          for (const char* f : {"auto", "csv", "jcamp-dx", "xrdml", "vamas", "spc", "sem-tiff"})
            if (v == f) return std::nullopt;
          return "unknown format '" + v + "' (auto, csv, jcamp-dx, xrdml, vamas, spc, sem-tiff)";
        }),
    cfg::string_opt<filedrop_config>(
        "kind", &filedrop_config::kind, "\"\"",
        "Analysis computed on each parsed file (`semilab-agent analyze --list`); \"\" = parse and "
        "archive only",
        [](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return std::nullopt;
          std::string known;
          for (const auto& k : analyze_kinds()) {
            if (v == k.name) return std::nullopt;
            known += (known.empty() ? "" : ", ") + std::string(k.name);
          }
          return "unknown analysis kind '" + v + "' (known: " + known + ")";
        }),
    cfg::double_opt<filedrop_config>("stable_s", &filedrop_config::stable_s, "5", "s",
                                     "A file is taken once its size and mtime have not changed "
                                     "for this long (vendor software writes in pieces)",
                                     0, 86'400),
    cfg::double_opt<filedrop_config>("poll_interval_s", &filedrop_config::poll_interval_s, "2",
                                     "s",
                                     "Period of the folder scan without inotify (network shares), "
                                     "and of the stability check with it",
                                     0.05, 3600),
    cfg::bool_opt<filedrop_config>("inotify", &filedrop_config::inotify, "true",
                                   "Use inotify events (falls back to polling when the folder "
                                   "cannot be watched); false = polling only, for CIFS/NFS shares "
                                   "where remote writes raise no events"),
    cfg::string_opt<filedrop_config>("archive_dir", &filedrop_config::archive_dir,
                                     "\"<data_dir>/archive\"",
                                     "Content-addressed archive of the raw files "
                                     "(<sha256[0..2]>/<sha256>.zst) and the ledger of files "
                                     "already recorded"),
    cfg::int_opt<filedrop_config>("max_file_mb", &filedrop_config::max_file_mb, "256", "MiB",
                                  "Larger files are reported and skipped", 1, 4096),
};

const cfg::option<agent_config> kRuns[] = {
    cfg::bool_opt<agent_config>("enabled", &agent_config::runs_enabled, "true",
                                "Accept recipe runs (POST /api/v1/runs, `semilab-agent run-recipe`)"),
    cfg::string_opt<agent_config>("token", &agent_config::runs_token, "\"\"",
                                  "Bearer token that submitting and aborting runs require; \"\" = the "
                                  "[status] operator_token; with neither, runs are accepted on a "
                                  "loopback bind only. Never logged"),
    cfg::int_opt<agent_config>("history", &agent_config::runs_history, "50", "runs",
                               "Finished runs listed by /api/v1/runs (all stay in the outbox database)",
                               1, 100'000),
    {"roles", "table", "{}", "",
     "Default binding of recipe roles to instrument ids, e.g. { gate = \"smu-a\", drain = \"smu-b\" } "
     "(a submission's --bind and a recipe's roles.NAME.instrument take precedence)",
     [](agent_config& c, const toml::node& n) -> std::optional<std::string> {
       auto* t = n.as_table();
       if (!t) return "expected a table of role = \"instrument id\"";
       for (auto&& [k, v] : *t) {
         auto str = v.value<std::string>();
         if (!str || !v.is_string()) return "role '" + std::string(k.str()) + "' must name an instrument id";
         c.runs_roles[std::string(k.str())] = *str;
       }
       return std::nullopt;
     }},
};

template <class S, std::size_t N>
std::span<const cfg::option<S>> span_of(const cfg::option<S> (&a)[N]) {
  return {a, N};
}

}  // namespace

std::optional<agent_config> load_config(const std::filesystem::path& file, std::string& error) {
  toml::table root;
  if (auto e = cfg::parse_file(file.string(), root)) {
    error = e->message;
    return std::nullopt;
  }
  agent_config c;
  c.source = file.string();
  const std::string f = file.string();
  for (auto&& [k, node] : root) {
    auto key = k.str();
    if (key != "agent" && key != "mqtt" && key != "sync" && key != "status" &&
        key != "instrument" && key != "filedrop" && key != "runs" && key != "log") {
      error = cfg::where(f, k.source()) + ": " + std::string(key) +
              ": unknown table (expected [agent], [mqtt], [sync], [status], [runs], [log], "
              "[[instrument]], [[filedrop]])";
      return std::nullopt;
    }
  }
  auto table = [&](std::string_view name, auto opts) -> std::optional<cfg::load_error> {
    auto* n = root.get(name);
    if (!n) {
      static const toml::table empty;
      return cfg::read_table(c, empty, opts, f, name);
    }
    auto* t = n->as_table();
    if (!t) return cfg::load_error{cfg::where(f, n->source()) + ": " + std::string(name) + ": expected a table"};
    return cfg::read_table(c, *t, opts, f, name);
  };
  for (auto [name, opts] : {std::pair{"agent", span_of(kAgent)}, std::pair{"mqtt", span_of(kMqtt)},
                            std::pair{"sync", span_of(kSync)}, std::pair{"status", span_of(kStatus)},
                            std::pair{"runs", span_of(kRuns)}}) {
    if (auto e = table(name, opts)) {
      error = e->message;
      return std::nullopt;
    }
  }
  if (auto* n = root.get("log")) {
    auto* t = n->as_table();
    if (!t) {
      error = cfg::where(f, n->source()) + ": log: expected a table";
      return std::nullopt;
    }
    const auto& lt = service::log_option_table();
    if (auto e = cfg::read_table(c.log, *t, std::span<const cfg::option<service::log_options>>(lt), f, "log")) {
      error = e->message;
      return std::nullopt;
    }
  }
  std::set<std::string> ids;
  if (auto* arr = root.get_as<toml::array>("instrument")) {
    std::size_t i = 0;
    for (auto& n : *arr) {
      std::string path = "instrument[" + std::to_string(i++) + "]";
      auto* t = n.as_table();
      if (!t) {
        error = cfg::where(f, n.source()) + ": " + path + ": expected [[instrument]] tables";
        return std::nullopt;
      }
      instrument_config ic;
      if (auto e = cfg::read_table(ic, *t, span_of(kInstrument), f, path)) {
        error = e->message;
        return std::nullopt;
      }
      auto here = cfg::where(f, t->source()) + ": " + path;
      auto res = drivers::parse_resource(ic.resource);
      if (!res) {
        error = here + ".resource: " + res.error().message;
        return std::nullopt;
      }
      if (drivers::modbus::link_resource_of(*res)) {
        if (ic.map.empty() == ic.profile.empty()) {
          error = here + ": a Modbus instrument needs exactly one of `map` or `profile`";
          return std::nullopt;
        }
        if (!ic.model.empty() || !ic.settings.empty()) {
          error = here + ": `model` and `settings` are for SCPI instruments; a Modbus instrument "
                         "is described by its map";
          return std::nullopt;
        }
        auto m = ic.map.empty() ? drivers::modbus::load_profile(ic.profile)
                                : drivers::modbus::load_map(ic.map);
        if (!m) {
          error = here + (ic.map.empty() ? ".profile: " : ".map: ") + m.error().message;
          return std::nullopt;
        }
        ic.modbus_map = std::make_shared<const drivers::modbus::device_map>(std::move(*m));
      } else {
        if (ic.model.empty()) {
          error = here + ".model: required for an SCPI instrument";
          return std::nullopt;
        }
        if (!ic.map.empty() || !ic.profile.empty()) {
          error = here + ": `map` and `profile` are for Modbus instruments";
          return std::nullopt;
        }
        auto settings = drivers::resolve_settings(*drivers::find_model(ic.model), ic.settings);
        if (!settings) {
          error = here + ".settings: " + settings.error().message;
          return std::nullopt;
        }
      }
      if (!ids.insert(ic.id).second) {
        error = cfg::where(f, t->source()) + ": " + path + ".id: duplicate instrument id '" + ic.id + "'";
        return std::nullopt;
      }
      c.instruments.push_back(std::move(ic));
    }
  } else if (root.contains("instrument")) {
    error = f + ": instrument: expected [[instrument]] tables";
    return std::nullopt;
  }
  if (auto* arr = root.get_as<toml::array>("filedrop")) {
    std::set<std::string> folders;
    std::size_t i = 0;
    for (auto& n : *arr) {
      std::string path = "filedrop[" + std::to_string(i++) + "]";
      auto* t = n.as_table();
      if (!t) {
        error = cfg::where(f, n.source()) + ": " + path + ": expected [[filedrop]] tables";
        return std::nullopt;
      }
      filedrop_config fc;
      if (auto e = cfg::read_table(fc, *t, span_of(kFiledrop), f, path)) {
        error = e->message;
        return std::nullopt;
      }
      auto here = cfg::where(f, t->source()) + ": " + path;
      if (!ids.insert(fc.id).second) {
        error = here + ".id: duplicate id '" + fc.id + "' (already an instrument or a filedrop)";
        return std::nullopt;
      }
      std::error_code ec;
      auto canon = std::filesystem::weakly_canonical(fc.folder, ec);
      // One folder may be split by pattern between drops (one analysis kind each); the same
      // folder and pattern twice would take every file twice.
      if (!folders.insert((ec ? fc.folder : canon.string()) + '\n' + fc.pattern).second) {
        error = here + ".pattern: '" + fc.folder + "' is already watched with pattern '" +
                fc.pattern + "' by another [[filedrop]]";
        return std::nullopt;
      }
      if (fc.archive_dir.empty())
        fc.archive_dir = (std::filesystem::path(c.data_dir) / "archive").string();
      c.filedrops.push_back(std::move(fc));
    }
  } else if (root.contains("filedrop")) {
    error = f + ": filedrop: expected [[filedrop]] tables";
    return std::nullopt;
  }
  // DESIGN-NOTES: bound elsewhere than loopback the page serves HTTPS; plain HTTP there only
  // when the operator explicitly accepts it.
  auto status_key = [&](const char* key) {
    auto* n = root.at_path(std::string("status.") + key).node();
    return (n ? cfg::where(f, n->source()) : f) + ": status." + key;
  };
  if (c.status_tls_cert_file.empty() != c.status_tls_key_file.empty()) {
    error = status_key(c.status_tls_cert_file.empty() ? "tls_key_file" : "tls_cert_file") +
            ": HTTPS needs both tls_cert_file and tls_key_file";
    return std::nullopt;
  }
  bool loopback = c.status_bind == "::1" || c.status_bind == "localhost" ||
                  c.status_bind.rfind("127.", 0) == 0;
  if (c.status_enabled && !loopback && !c.status_tls() && !c.status_insecure_http) {
    error = status_key("bind") + ": '" + c.status_bind +
            "' is not loopback: serve HTTPS there (set tls_cert_file and tls_key_file) or, on a "
            "trusted network only, set `insecure_http = true`; or bind 127.0.0.1";
    return std::nullopt;
  }
  return c;
}

std::string config_reference() {
  std::string s = "# semilab-agent configuration\n\n";
  s += cfg::print_reference<agent_config>("[agent]", span_of(kAgent)) + "\n";
  s += cfg::print_reference<agent_config>("[mqtt]", span_of(kMqtt)) + "\n";
  s += cfg::print_reference<agent_config>("[sync]", span_of(kSync)) + "\n";
  s += cfg::print_reference<agent_config>("[status]", span_of(kStatus)) + "\n";
  s += cfg::print_reference<agent_config>("[runs]", span_of(kRuns)) + "\n";
  s += cfg::print_reference<service::log_options>(
           "[log]", std::span<const cfg::option<service::log_options>>(service::log_option_table())) +
       "\n";
  s += cfg::print_reference<instrument_config>("[[instrument]]", span_of(kInstrument)) + "\n";
  s += cfg::print_reference<filedrop_config>("[[filedrop]]", span_of(kFiledrop));
  return s;
}

}  // namespace semilab::agent
