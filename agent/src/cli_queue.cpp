// `semilab-agent queue dead-letters [--retry] [--json]`: records central rejected permanently.
#include <semilab/agent/daemon.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/json.hpp>

#include <iostream>

namespace semilab::agent {

int run_queue_dead_letters(const agent_config& cfg, bool retry, bool as_json) {
  std::string err;
  if (!std::filesystem::exists(cfg.outbox_path())) {
    std::cerr << "semilab-agent: " << cfg.outbox_path().string() << ": no outbox yet\n";
    return 1;
  }
  if (retry) {
    auto moved = sync::outbox::retry_dead_letters_in(cfg.outbox_path(), err);
    if (!moved) {
      std::cerr << "semilab-agent: queue dead-letters --retry: " << err << "\n";
      return 1;
    }
    if (as_json)
      std::cout << boost::json::serialize(boost::json::object{{"retried", *moved}}) << "\n";
    else
      std::cout << *moved << " record(s) moved back to the outbox; a running agent sends them "
                   "within seconds\n";
    return 0;
  }
  auto list = sync::outbox::list_dead_letters(cfg.outbox_path(), 100'000, err);
  if (!list) {
    std::cerr << "semilab-agent: queue dead-letters: " << err << "\n";
    return 1;
  }
  if (as_json) {
    boost::json::array a;
    for (auto& d : *list)
      a.push_back({{"seq", std::to_string(d.seq)},
                   {"class", std::string(schemas::to_string(d.cls))},
                   {"ts_ns", std::to_string(d.ts_ns)},
                   {"instrument", d.instrument},
                   {"channel", d.channel},
                   {"reason", d.reason},
                   {"attempts", d.attempts},
                   {"moved_ns", std::to_string(d.moved_ns)}});
    std::cout << boost::json::serialize(a) << "\n";
    return 0;
  }
  std::cout << list->size() << " dead letter(s)\n";
  for (auto& d : *list)
    std::cout << d.seq << "  " << schemas::to_string(d.cls) << "  " << d.instrument << "/"
              << d.channel << "  attempts " << d.attempts << "  " << d.reason << "\n";
  return 0;
}

}  // namespace semilab::agent
