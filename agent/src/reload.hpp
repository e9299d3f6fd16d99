#pragma once
// Configuration reload on SIGHUP (`systemctl reload semilab-agent`), on the main io_context.
//
// The file the daemon started from is read again and validated by the same loader. Refused
// (reason logged, an event on the status page, the running configuration kept) when invalid.
// Otherwise, by instrument id: an instrument whose table is unchanged keeps its runner, session
// and connection; a changed one is stopped and started again with the new table; a new one
// starts; a removed one stops. The outbox, the sync engine and everything buffered are never
// touched, so nothing is lost. [[filedrop]] tables are applied the same way by id (the daemon's
// handler, on_filedrops). `[sync] central_public_keys` is applied in place (on_central_keys: the
// sync engine swaps its pinned keys, the MQTT session and every buffered record stay), so a
// central key rotation needs no agent restart. Other [agent], [mqtt], [sync] and [status]
// changes are not applied (logged: they need a restart).
#include <semilab/agent/config.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/service/systemd.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <toml++/toml.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::agent {

class recorder;
class runner;
class event_log;

// What a reload does, computed from the two files' TOML trees (values, not text: comments and
// layout do not count, a key written out with its default value does). Compared as TOML so that
// every key, present and future, is covered without a hand-kept list. A Modbus map file edited
// in place under the same path is not seen (change the table or restart).
struct reload_plan {
  std::vector<std::string> unchanged, changed, added, removed;  // instrument ids
  std::vector<std::string> needs_restart;  // "[mqtt]", ...: tables that differ, not applied
};
reload_plan plan_reload(const toml::table& running, const toml::table& next);

// A runner for one instrument (Modbus or SCPI), not started.
std::shared_ptr<runner> make_runner(boost::asio::io_context& io, const instrument_config& ic,
                                    recorder& rec);

class reloader {
 public:
  // `live` and `runners` are the daemon's: runners[i] drives live.instruments[i], an invariant
  // the status sampler relies on and every reload keeps. All of them outlive the reloader and
  // are only touched on the io_context's (single) thread.
  reloader(boost::asio::io_context& io, agent_config& live,
           std::vector<std::shared_ptr<runner>>& runners, recorder& rec, event_log& events,
           service::notifier& sd);
  void cancel();  // stop listening for SIGHUP (shutdown)

  // [[filedrop]] tables are applied by the daemon, which owns the drivers: `h` gets the new
  // list after a valid reload and returns a summary for the log and the event.
  using filedrop_handler = std::function<std::string(const std::vector<filedrop_config>&)>;
  void on_filedrops(filedrop_handler h) { filedrops_ = std::move(h); }
  // A changed `[sync] central_public_keys` (validated by the loader) is handed to `h`, parsed;
  // without a handler the change is reported as needing a restart.
  using central_keys_handler = std::function<void(std::vector<schemas::ed25519_public_key>)>;
  void on_central_keys(central_keys_handler h) { central_keys_ = std::move(h); }

  // Re-read live.source and apply it. Returns false (and keeps everything) when invalid.
  // Never throws (runs in an Asio handler).
  bool reload() noexcept;

 private:
  void wait();
  boost::asio::io_context& io_;
  toml::table running_toml_;  // the file as the running configuration was read from it
  agent_config& live_;
  std::vector<std::shared_ptr<runner>>& runners_;
  recorder& rec_;
  event_log& events_;
  service::notifier& sd_;
  filedrop_handler filedrops_;
  central_keys_handler central_keys_;
  boost::asio::signal_set hup_;
};

}  // namespace semilab::agent
