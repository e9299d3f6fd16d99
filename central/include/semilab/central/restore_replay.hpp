#pragma once
// Replay after a restore: nothing an agent had acked since the backup is lost.
//
// `semilab-central restore` computes, from the restored database, each agent's high-water mark
// (restored_high_water) and writes them to <data_dir>/restore-replay.json (pending file). When
// the service starts with that file present, a restore_replayer (its own MQTT client, client id
// "<instance>.restore-replay") watches the agents' retained state topics and, as soon as an agent
// of the list is seen online, publishes a signed replay command (schemas/command.hpp) for
// seq replay_from..INT64_MAX of its latest epoch on its cmd topic. The agent re-sends what it
// still retains (acked records stay for its retention window, default 7 days); ingest stores what
// the restored database lacks and ignores the rest (the record key dedups). An agent is removed
// from the file once the broker acknowledged its command; the file is deleted when the list is
// empty, so an agent offline for days still gets its replay when it comes back (commands are
// fresh only for schemas::kCommandWindow, which is why they are made when the agent is seen,
// not at restore time).
//
// Limits: an agent whose current store epoch is not in the restored database (first batch after
// the backup, or its outbox was replaced since) cannot be asked (the agent refuses a command for
// another epoch): the replayer logs it with the by-hand command (`semilab-central replay`).
#include <semilab/central/config.hpp>
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/signing.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace semilab::central {

// One agent's mark in the restored database, for its latest store epoch (the epoch of its most
// recently received record).
struct high_water {
  std::string agent_id;
  std::string site;
  std::uint64_t store_epoch = 0;
  std::uint64_t first_seq = 0;     // lowest seq held
  std::uint64_t contiguous = 0;    // highest seq H with first_seq..H held or explained by drop notices
  std::uint64_t max_seq = 0;       // highest seq held
  std::uint64_t records = 0;       // records held of that epoch
  std::uint64_t replay_from() const noexcept { return contiguous + 1; }
};

// Per agent, from the records (and drop notices) of `s`. Agents ordered by id.
result<std::vector<high_water>> restored_high_water(storage& s);

// <data_dir>/restore-replay.json
std::filesystem::path pending_replay_path(const central_config& cfg);

// Writes the list atomically (temporary file, fsync, rename, fsync of the directory).
boost::system::error_code write_pending_replays(const std::filesystem::path& file,
                                                const std::vector<high_water>& marks,
                                                std::string& error);
// The list in the file; an empty list when there is no file. bad_config (with `error`) when the
// file does not parse.
result<std::vector<high_water>> read_pending_replays(const std::filesystem::path& file,
                                                     std::string& error);

// Counters of a replayer (read on its executor, or after it stopped).
struct restore_replay_stats {
  std::uint64_t pending = 0;    // agents still owed a command
  std::uint64_t sent = 0;       // commands acknowledged by the broker
  std::uint64_t unknown = 0;    // online agents whose epoch the restored store lacks (logged)
};

// How commands are authenticated (schemas/command.hpp): HMAC with the shared secret ([mqtt]
// command_key_file) and/or an Ed25519 signature ([central] signing_key_file); at least one.
struct command_keys {
  std::string hmac;
  std::optional<schemas::signing_key> signer;
};

class restore_replayer {
 public:
  // `keys` authenticate the commands (already loaded); `pending`
  // are owed a command, `done` were asked before (kept in the file so that a restart does not
  // take them for agents unknown to the restored store).
  restore_replayer(boost::asio::any_io_executor ex, const central_config& cfg, command_keys keys,
                   std::vector<high_water> pending, std::filesystem::path file,
                   std::vector<high_water> done = {});
  ~restore_replayer();
  restore_replayer(const restore_replayer&) = delete;
  restore_replayer& operator=(const restore_replayer&) = delete;

  boost::system::error_code start();
  void stop(std::chrono::milliseconds timeout);
  restore_replay_stats stats() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

// The service side (app.cpp): when the pending file exists, loads it and the command key and
// starts a replayer on `ex`; nullptr when there is nothing to do or on error (logged).
std::unique_ptr<restore_replayer> start_restore_replayer(boost::asio::any_io_executor ex,
                                                         const central_config& cfg);

}  // namespace semilab::central
