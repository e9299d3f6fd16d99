#include "reload.hpp"

#include <semilab/agent/recorder.hpp>
#include <semilab/schemas/config_map.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <map>

#include "instrument_runner.hpp"
#include "modbus_runner.hpp"
#include "status_model.hpp"

namespace semilab::agent {

namespace asio = boost::asio;

namespace {

std::map<std::string, const toml::table*> instruments_by_id(const toml::table& root) {
  std::map<std::string, const toml::table*> out;
  if (auto* arr = root.get_as<toml::array>("instrument"))
    for (auto& n : *arr)
      if (auto* t = n.as_table())
        if (auto id = (*t)["id"].value<std::string>()) out.emplace(*id, t);
  return out;
}

std::vector<std::string> ids_in_order(const toml::table& root) {
  std::vector<std::string> ids;
  if (auto* arr = root.get_as<toml::array>("instrument"))
    for (auto& n : *arr)
      if (auto* t = n.as_table())
        if (auto id = (*t)["id"].value<std::string>()) ids.push_back(*id);
  return ids;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "-" : s;
}

}  // namespace

reload_plan plan_reload(const toml::table& running, const toml::table& next) {
  reload_plan p;
  // Every table but [[instrument]]: present in either file and not equal.
  std::vector<std::string> keys;
  for (auto&& [k, v] : running) keys.emplace_back(k.str());
  for (auto&& [k, v] : next) keys.emplace_back(k.str());
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const auto& k : keys) {
    if (k == "instrument" || k == "filedrop") continue;  // applied by reload()
    auto* a = running.get(k);
    auto* b = next.get(k);
    static const toml::table empty;
    const toml::node& na = a ? *a : static_cast<const toml::node&>(empty);
    const toml::node& nb = b ? *b : static_cast<const toml::node&>(empty);
    auto* ta = na.as_table();
    auto* tb = nb.as_table();
    bool same = ta && tb ? *ta == *tb : (a && b ? false : (!a && !b));
    if (!same) p.needs_restart.push_back("[" + k + "]");
  }
  auto old_ids = instruments_by_id(running);
  auto new_ids = instruments_by_id(next);
  for (const auto& id : ids_in_order(next)) {
    auto it = old_ids.find(id);
    if (it == old_ids.end()) p.added.push_back(id);
    else if (*it->second == *new_ids.at(id)) p.unchanged.push_back(id);
    else p.changed.push_back(id);
  }
  for (const auto& id : ids_in_order(running))
    if (!new_ids.count(id)) p.removed.push_back(id);
  return p;
}

std::shared_ptr<runner> make_runner(asio::io_context& io, const instrument_config& ic,
                                    recorder& rec) {
  if (ic.modbus_map) return std::make_shared<modbus_runner>(io, ic, rec);
  return std::make_shared<instrument_runner>(io, ic, rec);
}

reloader::reloader(asio::io_context& io, agent_config& live,
                   std::vector<std::shared_ptr<runner>>& runners, recorder& rec,
                   event_log& events, service::notifier& sd)
    : io_(io), live_(live), runners_(runners), rec_(rec), events_(events), sd_(sd),
      hup_(io, SIGHUP) {
  // The daemon validated this file a moment ago; were it unreadable now, the first reload
  // would find every instrument "added" and restart them all, which is safe.
  if (auto e = schemas::config::parse_file(live_.source, running_toml_))
    spdlog::warn("[agent] reload: cannot re-read {}: {}", live_.source, e->message);
  wait();
}

void reloader::cancel() {
  boost::system::error_code ignored;
  hup_.cancel(ignored);
}

void reloader::wait() {
  hup_.async_wait([this](boost::system::error_code ec, int) {
    if (ec) return;  // cancelled: shutting down
    reload();
    wait();
  });
}

bool reloader::reload() noexcept {
  try {
    sd_.reloading();
    spdlog::info("[agent] SIGHUP: reloading {}", live_.source);
    std::string err;
    toml::table next_toml;
    auto next = load_config(live_.source, err);
    if (next) {
      if (auto e = schemas::config::parse_file(live_.source, next_toml)) {
        next.reset();
        err = e->message;
      }
    }
    if (!next) {
      spdlog::error("[agent] reload refused, the running configuration stays: {}", err);
      events_.add(utc_now_ns(), "degraded", "config", "reload refused: " + err);
      sd_.ready("running; last reload refused: " + err);
      return false;
    }
    // Pinned central keys: applied in place. running_toml_ then holds the key as applied, so
    // that [sync] is reported as needing a restart only for its other keys.
    std::string keys_summary;
    if (central_keys_ && next->central_public_keys != live_.central_public_keys) {
      auto keys = schemas::parse_public_key_list(next->central_public_keys);
      if (!keys) {  // the loader checks the list; kept as a guard, never applied half-way
        err = live_.source + ": sync.central_public_keys: not a list of 64-hex-digit Ed25519 keys";
        spdlog::error("[agent] reload refused, the running configuration stays: {}", err);
        events_.add(utc_now_ns(), "degraded", "config", "reload refused: " + err);
        sd_.ready("running; last reload refused: " + err);
        return false;
      }
      std::string ids;
      for (const auto& k : *keys) ids += (ids.empty() ? "" : ", ") + schemas::key_id_of(k);
      keys_summary = keys->empty() ? "none pinned (acks and commands unsigned)"
                                   : std::to_string(keys->size()) + " pinned (" + ids + ")";
      central_keys_(std::move(*keys));
      live_.central_public_keys = next->central_public_keys;
      auto* next_sync = next_toml.get_as<toml::table>("sync");
      const toml::node* nk = next_sync ? next_sync->get("central_public_keys") : nullptr;
      if (!running_toml_.get_as<toml::table>("sync")) running_toml_.insert_or_assign("sync", toml::table{});
      auto* run_sync = running_toml_.get_as<toml::table>("sync");
      if (nk) run_sync->insert_or_assign("central_public_keys", *nk);
      else run_sync->erase("central_public_keys");
    }
    auto plan = plan_reload(running_toml_, next_toml);

    // The new runner list, in the new file's order (runners_[i] drives instruments[i]).
    std::map<std::string, std::shared_ptr<runner>> old;
    for (std::size_t i = 0; i < runners_.size() && i < live_.instruments.size(); ++i)
      old.emplace(live_.instruments[i].id, runners_[i]);
    auto listed = [](const std::vector<std::string>& v, const std::string& id) {
      return std::find(v.begin(), v.end(), id) != v.end();
    };
    // Stop first, so a changed instrument's device (serial port, USB interface) is free again.
    for (auto& [id, r] : old)
      if (listed(plan.changed, id) || listed(plan.removed, id)) r->stop();
    std::vector<std::shared_ptr<runner>> fresh;
    std::vector<instrument_config> instruments;
    for (const auto& ic : next->instruments) {
      auto it = old.find(ic.id);
      if (it != old.end() && listed(plan.unchanged, ic.id)) {
        fresh.push_back(it->second);
        // Keep the running table: the runner was made from it (same values).
        auto same = std::find_if(live_.instruments.begin(), live_.instruments.end(),
                                 [&](const instrument_config& c) { return c.id == ic.id; });
        instruments.push_back(*same);
        continue;
      }
      auto r = make_runner(io_, ic, rec_);
      r->start();
      spdlog::info("[acq] {}: {} at {}, every {} s ({})", ic.id,
                   ic.modbus_map ? "modbus map " + ic.modbus_map->name : ic.model, ic.resource,
                   ic.poll_interval_s, it != old.end() ? "restarted: configuration changed" : "added");
      fresh.push_back(std::move(r));
      instruments.push_back(ic);
    }
    runners_ = std::move(fresh);
    live_.instruments = std::move(instruments);
    std::string drops_summary;
    if (filedrops_) drops_summary = filedrops_(next->filedrops);
    live_.filedrops = next->filedrops;

    // Only the instrument tables are applied; the rest of the running configuration stays.
    toml::table applied = running_toml_;
    if (auto* arr = next_toml.get_as<toml::array>("instrument"))
      applied.insert_or_assign("instrument", *arr);
    else applied.erase("instrument");
    if (auto* arr = next_toml.get_as<toml::array>("filedrop"))
      applied.insert_or_assign("filedrop", *arr);
    else applied.erase("filedrop");
    running_toml_ = std::move(applied);

    std::string summary = "changed: " + join(plan.changed) + "; added: " + join(plan.added) +
                          "; removed: " + join(plan.removed) + "; unchanged: " + join(plan.unchanged) +
                          (drops_summary.empty() ? "" : "; file drops: " + drops_summary) +
                          (keys_summary.empty() ? "" : "; central keys: " + keys_summary);
    spdlog::info("[agent] reload applied ({})", summary);
    events_.add(utc_now_ns(), "ok", "config", "reloaded (" + summary + ")");
    if (!plan.needs_restart.empty()) {
      spdlog::warn("[agent] reload: {} changed; not applied until a restart", join(plan.needs_restart));
      events_.add(utc_now_ns(), "degraded", "config",
                  join(plan.needs_restart) + " changed: restart the agent to apply");
    }
    sd_.ready("running; configuration reloaded");
    return true;
  } catch (const std::exception& e) {
    // Allocation failures and the like: the running configuration is kept as far as it got.
    spdlog::error("[agent] reload failed: {}", e.what());
    sd_.ready();
    return false;
  }
}

}  // namespace semilab::agent
