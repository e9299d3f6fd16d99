#pragma once
// A minimal, non-validating XML reader for instrument exports (XRDML): elements, attributes,
// character data, the five predefined entities and numeric character references. Comments,
// processing instructions, DOCTYPE and CDATA are handled; namespaces are kept as written in the
// name and compared by local name. Depth and node count are bounded (hostile input).
#include <semilab/parsers/spectrum.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::parsers::detail {

struct xml_node {
  std::string name;  // local name (prefix stripped)
  std::vector<std::pair<std::string, std::string>> attrs;
  std::string text;  // concatenated character data directly inside this element
  std::size_t offset = 0;
  std::vector<std::unique_ptr<xml_node>> children;

  const xml_node* child(std::string_view local) const noexcept;
  std::vector<const xml_node*> children_named(std::string_view local) const;
  const std::string* attr(std::string_view n) const noexcept;
};

result<std::unique_ptr<xml_node>> parse_xml(std::string_view bytes);

}  // namespace semilab::parsers::detail
