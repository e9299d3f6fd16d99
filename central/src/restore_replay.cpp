// Replay after a restore (central/include/semilab/central/restore_replay.hpp).
#include <semilab/central/restore_replay.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/mqtt.hpp>

#include "log.hpp"

#include <boost/asio/strand.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <climits>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace semilab::central {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::int64_t i64_of(const sql_cell& c) {
  std::int64_t v = 0;
  if (c) std::from_chars(c->data(), c->data() + c->size(), v);
  return v;
}
std::uint64_t u64_of(const sql_cell& c) { return static_cast<std::uint64_t>(i64_of(c)); }

bool fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

struct pending_entry {
  high_water mark;
  bool sent = false;
  std::int64_t sent_ns = 0;
};

json::object to_json(const pending_entry& e) {
  const auto& m = e.mark;
  json::object o;
  o["agent_id"] = m.agent_id;
  o["site"] = m.site;
  // u64 as strings (DESIGN-NOTES: integers beyond 2^53 never as JSON numbers)
  o["store_epoch"] = std::to_string(m.store_epoch);
  o["first_seq"] = std::to_string(m.first_seq);
  o["contiguous"] = std::to_string(m.contiguous);
  o["max_seq"] = std::to_string(m.max_seq);
  o["records"] = std::to_string(m.records);
  o["sent"] = e.sent;
  o["sent_ns"] = std::to_string(e.sent_ns);
  return o;
}

bool u64_field(const json::object& o, const char* k, std::uint64_t& out) {
  const auto* v = o.if_contains(k);
  if (!v || !v->is_string()) return false;
  const auto& s = v->get_string();
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

boost::system::error_code write_entries(const fs::path& file,
                                        const std::vector<pending_entry>& entries,
                                        std::string& error) {
  json::array arr;
  for (const auto& e : entries) arr.push_back(to_json(e));
  json::object root;
  root["format"] = 1;
  root["written_ns"] = std::to_string(now_ns());
  root["agents"] = std::move(arr);
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << json::serialize(root) << '\n';
    f.flush();
    if (!f) {
      error = "cannot write " + tmp.string();
      return make_error_code(errc::backup_failed);
    }
  }
  if (!fsync_path(tmp, O_RDONLY)) {
    error = "cannot fsync " + tmp.string();
    return make_error_code(errc::backup_failed);
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) {
    error = "cannot rename " + tmp.string() + ": " + ec.message();
    return make_error_code(errc::backup_failed);
  }
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (!fsync_path(dir, O_RDONLY | O_DIRECTORY)) {
    error = "cannot fsync directory " + dir.string();
    return make_error_code(errc::backup_failed);
  }
  return {};
}

result<std::vector<pending_entry>> read_entries(const fs::path& file, std::string& error) {
  std::vector<pending_entry> out;
  std::error_code fec;
  if (!fs::exists(file, fec)) return out;
  std::ifstream f(file, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) {
    error = "cannot read " + file.string();
    return make_error_code(errc::backup_failed);
  }
  boost::system::error_code jec;
  auto v = json::parse(ss.str(), jec);
  const json::object* root = jec ? nullptr : v.if_object();
  const json::value* agents = root ? root->if_contains("agents") : nullptr;
  if (!agents || !agents->is_array()) {
    error = file.string() + ": not a restore-replay list (expected {\"agents\": [...]})";
    return make_error_code(errc::backup_failed);
  }
  std::size_t i = 0;
  for (const auto& a : agents->get_array()) {
    const auto* o = a.if_object();
    pending_entry e;
    const json::value* id = o ? o->if_contains("agent_id") : nullptr;
    const json::value* site = o ? o->if_contains("site") : nullptr;
    const json::value* sent = o ? o->if_contains("sent") : nullptr;
    std::uint64_t sent_ns = 0;
    if (!o || !id || !id->is_string() || !site || !site->is_string() ||
        !u64_field(*o, "store_epoch", e.mark.store_epoch) ||
        !u64_field(*o, "first_seq", e.mark.first_seq) ||
        !u64_field(*o, "contiguous", e.mark.contiguous) ||
        !u64_field(*o, "max_seq", e.mark.max_seq) ||
        !u64_field(*o, "records", e.mark.records) || !u64_field(*o, "sent_ns", sent_ns) ||
        !sent || !sent->is_bool()) {
      error = file.string() + ": agents[" + std::to_string(i) + "]: missing or invalid field";
      return make_error_code(errc::backup_failed);
    }
    e.mark.agent_id = std::string(id->get_string());
    e.mark.site = std::string(site->get_string());
    e.sent = sent->get_bool();
    e.sent_ns = static_cast<std::int64_t>(sent_ns);
    out.push_back(std::move(e));
    ++i;
  }
  return out;
}

}  // namespace

result<std::vector<high_water>> restored_high_water(storage& s) {
  // Every (agent, epoch) held, with the agent's site; the latest epoch per agent wins.
  auto rows = s.query(
      "SELECT r.agent_id, a.site, r.store_epoch, MIN(r.record_seq), MAX(r.record_seq), "
      "COUNT(*), MAX(r.received_ns) FROM records r JOIN agents a ON a.agent_id = r.agent_id "
      "GROUP BY r.agent_id, a.site, r.store_epoch ORDER BY r.agent_id",
      {});
  if (!rows) return rows.error();
  std::map<std::string, std::pair<high_water, std::int64_t>> latest;
  for (const auto& r : *rows) {
    high_water h;
    h.agent_id = r[0].value_or("");
    h.site = r[1].value_or("");
    h.store_epoch = u64_of(r[2]);
    h.first_seq = u64_of(r[3]);
    h.max_seq = u64_of(r[4]);
    h.contiguous = h.max_seq;
    h.records = u64_of(r[5]);
    const std::int64_t received = i64_of(r[6]);
    const std::string key = h.agent_id;
    auto it = latest.find(key);
    if (it == latest.end() || received > it->second.second)
      latest[key] = {std::move(h), received};
  }
  // The first gap no drop notice explains ends the contiguous run.
  auto gaps = s.gaps({}, std::numeric_limits<std::int32_t>::max());
  if (!gaps) return gaps.error();
  for (const auto& g : *gaps) {
    if (g.explained) continue;
    auto it = latest.find(g.agent_id);
    if (it == latest.end()) continue;
    auto& h = it->second.first;
    if (g.store_epoch == h.store_epoch && g.first >= h.first_seq && g.first - 1 < h.contiguous)
      h.contiguous = g.first - 1;
  }
  std::vector<high_water> out;
  out.reserve(latest.size());
  for (auto& [_, v] : latest) out.push_back(std::move(v.first));
  return out;
}

fs::path pending_replay_path(const central_config& cfg) {
  return fs::path(cfg.central.data_dir) / "restore-replay.json";
}

boost::system::error_code write_pending_replays(const fs::path& file,
                                                const std::vector<high_water>& marks,
                                                std::string& error) {
  std::vector<pending_entry> entries;
  entries.reserve(marks.size());
  for (const auto& m : marks) entries.push_back({m, false, 0});
  return write_entries(file, entries, error);
}

result<std::vector<high_water>> read_pending_replays(const fs::path& file, std::string& error) {
  auto e = read_entries(file, error);
  if (!e) return e.error();
  std::vector<high_water> out;
  for (auto& x : *e)
    if (!x.sent) out.push_back(std::move(x.mark));
  return out;
}

struct restore_replayer::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex_, const central_config& cfg, command_keys keys_,
       std::vector<pending_entry> entries_, fs::path file_)
      : ex(std::move(ex_)),
        key(std::move(keys_.hmac)),
        signer(std::move(keys_.signer)),
        entries(std::move(entries_)),
        file(std::move(file_)),
        mqtt(ex, options(cfg)) {
    pending = static_cast<std::uint64_t>(
        std::count_if(entries.begin(), entries.end(), [](auto& e) { return !e.sent; }));
  }

  static sync::mqtt_options options(const central_config& cfg) {
    sync::mqtt_options mo;
    mo.broker_url = cfg.mqtt.broker;
    mo.client_id = cfg.central.instance + ".restore-replay";
    mo.username = cfg.mqtt.username;
    mo.password = cfg.mqtt.password;
    mo.clean_start = true;  // the retained state messages are all we need at each connect
    mo.session_expiry_s = 0;
    mo.keep_alive = std::chrono::seconds(cfg.mqtt.keep_alive_s);
    mo.connect_timeout = std::chrono::seconds(cfg.mqtt.connect_timeout_s);
    mo.ca_file = cfg.mqtt.tls_ca_file;
    mo.cert_file = cfg.mqtt.tls_cert_file;
    mo.key_file = cfg.mqtt.tls_key_file;
    mo.verify_hostname = cfg.mqtt.tls_verify_hostname;
    return mo;
  }

  // On ex: an agent's presence. Online and owed a replay -> one command, once at a time.
  void on_state(const sync::mqtt_message& m) {
    auto t = schemas::parse_agent_topic(m.topic);
    if (!t || t->kind != schemas::agent_topic_kind::state || t->site == "central") return;
    auto p = schemas::decode_presence(m.payload);
    if (!p || !p->online) return;
    auto it = std::find_if(entries.begin(), entries.end(),
                           [&](const pending_entry& e) { return e.mark.agent_id == t->agent; });
    if (it == entries.end()) {
      if (warned_unknown.insert(t->agent).second) {
        ++unknown;
        logger("central")->warn(
            "restore replay: agent {} (site {}) is online but has no records in the restored "
            "store: its records since the backup can only be replayed by hand "
            "(`semilab-central replay --agent {} --epoch E --from 1 --to N`, E from its status)",
            t->agent, t->site, t->agent);
      }
      return;
    }
    if (it->sent || in_flight.contains(t->agent)) return;
    const auto& h = it->mark;
    schemas::replay_command cmd{h.agent_id, h.store_epoch, h.replay_from(),
                                static_cast<std::uint64_t>(INT64_MAX), now_ns(),
                                schemas::new_nonce()};
    if (cmd.nonce.empty()) {
      logger("central")->error("restore replay: no random bytes for a nonce; {} not asked",
                               h.agent_id);
      return;
    }
    in_flight.insert(h.agent_id);
    const auto topic = schemas::agent_topic(t->site, h.agent_id, schemas::agent_topic_kind::cmd);
    mqtt.publish(topic, schemas::encode_command(cmd, key, signer ? &*signer : nullptr), 1, false,
                 [w = weak_from_this(), agent = h.agent_id, from = cmd.from,
                  epoch = h.store_epoch](boost::system::error_code ec) {
                   if (auto s = w.lock()) s->published(agent, epoch, from, ec);
                 });
  }

  void published(const std::string& agent, std::uint64_t epoch, std::uint64_t from,
                 boost::system::error_code ec) {
    in_flight.erase(agent);
    auto log = logger("central");
    if (ec) {
      // Asked again the next time its state is seen (every reconnect re-reads retained ones).
      log->warn("restore replay: command to {} not acknowledged by the broker: {}", agent,
                ec.message());
      return;
    }
    for (auto& e : entries)
      if (e.mark.agent_id == agent) {
        e.sent = true;
        e.sent_ns = now_ns();
      }
    ++sent;
    pending = pending > 0 ? pending - 1 : 0;
    log->info("restore replay: asked {} to re-send epoch {} from seq {} (restored high-water mark "
              "{}); {} agent(s) still to ask",
              agent, epoch, from, from - 1, pending.load());
    std::string err;
    if (pending == 0) {
      std::error_code fec;
      fs::remove(file, fec);
      if (fec) log->error("restore replay: cannot remove {}: {}", file.string(), fec.message());
      else log->info("restore replay: every agent of the restored store asked; {} removed",
                     file.string());
    } else if (auto wec = write_entries(file, entries, err)) {
      log->error("restore replay: cannot update {}: {}", file.string(), err);
    }
  }

  asio::any_io_executor ex;
  std::string key;
  std::optional<schemas::signing_key> signer;
  std::vector<pending_entry> entries;
  fs::path file;
  sync::mqtt_client mqtt;
  std::set<std::string> in_flight, warned_unknown;
  std::atomic<std::uint64_t> pending{0}, sent{0}, unknown{0};
};

restore_replayer::restore_replayer(asio::any_io_executor ex, const central_config& cfg,
                                   command_keys keys, std::vector<high_water> pending,
                                   fs::path file, std::vector<high_water> done) {
  std::vector<pending_entry> entries;
  for (auto& m : pending) entries.push_back({std::move(m), false, 0});
  for (auto& m : done) entries.push_back({std::move(m), true, 0});
  impl_ = std::make_shared<impl>(asio::make_strand(ex), cfg, std::move(keys), std::move(entries),
                                 std::move(file));
}

restore_replayer::~restore_replayer() { stop(std::chrono::milliseconds(1000)); }

boost::system::error_code restore_replayer::start() {
  // "semilab/v1/+/+/state": the agents' retained births (and the central instances', ignored).
  impl_->mqtt.add_subscription(std::string(schemas::kTopicRoot) + "/+/+/state", 1);
  impl_->mqtt.on_message([w = std::weak_ptr<impl>(impl_)](sync::mqtt_message m) {
    if (auto s = w.lock()) s->on_state(m);
  });
  return impl_->mqtt.start();
}

void restore_replayer::stop(std::chrono::milliseconds timeout) {
  if (impl_) impl_->mqtt.stop(timeout);
}

restore_replay_stats restore_replayer::stats() const {
  return {impl_->pending.load(), impl_->sent.load(), impl_->unknown.load()};
}

std::unique_ptr<restore_replayer> start_restore_replayer(asio::any_io_executor ex,
                                                         const central_config& cfg) {
  auto log = logger("central");
  const auto file = pending_replay_path(cfg);
  std::string err;
  auto entries = read_entries(file, err);
  if (!entries) {
    log->error("restore replay: {}", err);
    return nullptr;
  }
  const auto owed = std::count_if(entries->begin(), entries->end(), [](auto& e) { return !e.sent; });
  if (owed == 0) {
    std::error_code fec;
    if (!entries->empty()) fs::remove(file, fec);
    return nullptr;
  }
  // Signed with central's key and/or MACed with the shared secret, as `semilab-central replay`.
  command_keys keys;
  std::string why;
  if (cfg.mqtt.command_key_file.empty() && cfg.central.signing_key_file.empty())
    why = "neither [central] signing_key_file nor [mqtt] command_key_file is set";
  else if (!cfg.mqtt.command_key_file.empty() &&
           !schemas::load_command_key(cfg.mqtt.command_key_file, keys.hmac, err))
    why = err;
  else if (!cfg.central.signing_key_file.empty()) {
    auto k = schemas::signing_key::load(cfg.central.signing_key_file, err);
    if (k) keys.signer = std::move(*k);
    else why = err;
  }
  if (!why.empty()) {
    log->error("restore replay: {} agent(s) are owed a replay after the restore, but the "
               "commands cannot be authenticated: {} (fix and restart)", owed, why);
    return nullptr;
  }
  std::vector<high_water> marks, done;
  for (auto& e : *entries) (e.sent ? done : marks).push_back(std::move(e.mark));
  log->info("restore replay: {} agent(s) will be asked to re-send what followed the restored "
            "high-water marks, each when it is seen online ({})",
            marks.size(), file.string());
  auto r = std::make_unique<restore_replayer>(ex, cfg, std::move(keys), std::move(marks), file,
                                              std::move(done));
  if (auto ec = r->start()) {
    log->error("restore replay: mqtt client for {}: {}", cfg.mqtt.broker, ec.message());
    return nullptr;
  }
  return r;
}

}  // namespace semilab::central
