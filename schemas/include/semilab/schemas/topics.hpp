#pragma once
// MQTT topic layout, version 1. See schemas/WIRE.md.
#include <semilab/schemas/error.hpp>

#include <string>
#include <string_view>

namespace semilab::schemas {

inline constexpr std::string_view kTopicRoot = "semilab/v1";
inline constexpr std::string_view kCentralShareGroup = "semilab-central";

// Ids (agent, site, central instance): 1..64 of [A-Za-z0-9._-], not starting with '.'.
bool valid_id(std::string_view id) noexcept;

// dict: agent -> central, a zstd dictionary a frame names (WIRE.md "Dictionaries").
enum class agent_topic_kind { batch, ack, state, health, cmd, dict };
std::string_view to_string(agent_topic_kind k) noexcept;

std::string agent_topic(std::string_view site, std::string_view agent, agent_topic_kind kind);
std::string central_state_topic(std::string_view instance);
// "$share/semilab-central/semilab/v1/+/+/batch"
std::string central_batch_subscription();
// "semilab/v1/+/+/dict": not shared, every central instance learns every dictionary.
std::string central_dictionary_subscription();

struct agent_topic_parts {
  std::string site;
  std::string agent;
  agent_topic_kind kind = agent_topic_kind::batch;
};
result<agent_topic_parts> parse_agent_topic(std::string_view topic);

}  // namespace semilab::schemas
