#include <semilab/schemas/topics.hpp>

namespace semilab::schemas {

bool valid_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64 || id.front() == '.') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view to_string(agent_topic_kind k) noexcept {
  switch (k) {
    case agent_topic_kind::batch: return "batch";
    case agent_topic_kind::ack: return "ack";
    case agent_topic_kind::state: return "state";
    case agent_topic_kind::health: return "health";
    case agent_topic_kind::cmd: return "cmd";
    case agent_topic_kind::dict: return "dict";
  }
  return "batch";
}

std::string agent_topic(std::string_view site, std::string_view agent, agent_topic_kind kind) {
  std::string t(kTopicRoot);
  t += '/';
  t += site;
  t += '/';
  t += agent;
  t += '/';
  t += to_string(kind);
  return t;
}

std::string central_state_topic(std::string_view instance) {
  return std::string(kTopicRoot) + "/central/" + std::string(instance) + "/state";
}

std::string central_batch_subscription() {
  return "$share/" + std::string(kCentralShareGroup) + "/" + std::string(kTopicRoot) + "/+/+/batch";
}

std::string central_dictionary_subscription() { return std::string(kTopicRoot) + "/+/+/dict"; }

result<agent_topic_parts> parse_agent_topic(std::string_view topic) {
  auto bad = make_error_code(errc::bad_topic);
  std::string prefix = std::string(kTopicRoot) + "/";
  if (topic.substr(0, prefix.size()) != prefix) return bad;
  topic.remove_prefix(prefix.size());
  std::string_view parts[3];
  for (int i = 0; i < 2; ++i) {
    auto slash = topic.find('/');
    if (slash == std::string_view::npos) return bad;
    parts[i] = topic.substr(0, slash);
    topic.remove_prefix(slash + 1);
  }
  parts[2] = topic;
  if (!valid_id(parts[0]) || !valid_id(parts[1]) || parts[0] == "central") return bad;
  agent_topic_parts p{std::string(parts[0]), std::string(parts[1]), agent_topic_kind::batch};
  for (auto k : {agent_topic_kind::batch, agent_topic_kind::ack, agent_topic_kind::state,
                 agent_topic_kind::health, agent_topic_kind::cmd, agent_topic_kind::dict}) {
    if (parts[2] == to_string(k)) {
      p.kind = k;
      return p;
    }
  }
  return bad;
}

}  // namespace semilab::schemas
