#include "xml.hpp"

#include "text.hpp"

namespace semilab::parsers::detail {
namespace {
constexpr std::size_t kMaxDepth = 256;
constexpr std::size_t kMaxNodes = 1'000'000;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == ':' || static_cast<unsigned char>(c) >= 0x80;
}

std::string local(std::string_view n) {
  auto p = n.rfind(':');
  return std::string(p == std::string_view::npos ? n : n.substr(p + 1));
}

void put_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) out.push_back(static_cast<char>(cp));
  else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Appends s with entities decoded; returns false on an unknown or malformed reference.
bool decode(std::string_view s, std::string& out) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') { out.push_back(s[i]); continue; }
    auto semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 12) return false;
    auto ent = s.substr(i + 1, semi - i - 1);
    if (ent == "lt") out.push_back('<');
    else if (ent == "gt") out.push_back('>');
    else if (ent == "amp") out.push_back('&');
    else if (ent == "quot") out.push_back('"');
    else if (ent == "apos") out.push_back('\'');
    else if (ent.size() >= 2 && ent[0] == '#') {
      unsigned long cp = 0;
      bool hex = ent[1] == 'x';
      auto digits = ent.substr(hex ? 2 : 1);
      if (digits.empty()) return false;
      for (char c : digits) {
        int d = c >= '0' && c <= '9' ? c - '0' : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10 : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        cp = cp * (hex ? 16 : 10) + static_cast<unsigned long>(d);
        if (cp > 0x10FFFF) return false;
      }
      put_utf8(out, cp);
    } else return false;
    i = semi;
  }
  return true;
}
}  // namespace

const xml_node* xml_node::child(std::string_view n) const noexcept {
  for (const auto& c : children)
    if (c->name == n) return c.get();
  return nullptr;
}
std::vector<const xml_node*> xml_node::children_named(std::string_view n) const {
  std::vector<const xml_node*> r;
  for (const auto& c : children)
    if (c->name == n) r.push_back(c.get());
  return r;
}
const std::string* xml_node::attr(std::string_view n) const noexcept {
  for (const auto& [k, v] : attrs)
    if (k == n) return &v;
  return nullptr;
}

result<std::unique_ptr<xml_node>> parse_xml(std::string_view b) {
  std::unique_ptr<xml_node> root;
  std::vector<xml_node*> stack;
  std::size_t nodes = 0;
  std::size_t i = 0;
  auto err = [&](std::size_t at, std::string why) { return error_at(at, "XML: " + std::move(why)); };
  while (i < b.size()) {
    if (b[i] != '<') {
      auto lt = b.find('<', i);
      if (lt == std::string_view::npos) lt = b.size();
      auto chunk = b.substr(i, lt - i);
      if (!stack.empty()) {
        if (!decode(chunk, stack.back()->text)) return err(i, "bad entity reference");
      } else if (!trim(chunk).empty() && chunk.substr(0, 3) != "\xEF\xBB\xBF") {
        return err(i, "text outside the root element");
      }
      i = lt;
      continue;
    }
    auto rest = b.substr(i);
    if (rest.substr(0, 4) == "<!--") {
      auto e = b.find("-->", i + 4);
      if (e == std::string_view::npos) return err(i, "unterminated comment");
      i = e + 3;
      continue;
    }
    if (rest.substr(0, 9) == "<![CDATA[") {
      auto e = b.find("]]>", i + 9);
      if (e == std::string_view::npos) return err(i, "unterminated CDATA");
      if (stack.empty()) return err(i, "CDATA outside the root element");
      stack.back()->text.append(b.substr(i + 9, e - i - 9));
      i = e + 3;
      continue;
    }
    if (rest.substr(0, 2) == "<?") {
      auto e = b.find("?>", i + 2);
      if (e == std::string_view::npos) return err(i, "unterminated processing instruction");
      i = e + 2;
      continue;
    }
    if (rest.substr(0, 2) == "<!") {  // DOCTYPE without an internal subset
      auto e = b.find('>', i + 2);
      if (e == std::string_view::npos) return err(i, "unterminated declaration");
      if (b.substr(i, e - i).find('[') != std::string_view::npos) return err(i, "DOCTYPE internal subset not supported");
      i = e + 1;
      continue;
    }
    if (rest.substr(0, 2) == "</") {
      std::size_t j = i + 2;
      while (j < b.size() && name_char(b[j])) ++j;
      auto name = local(b.substr(i + 2, j - i - 2));
      while (j < b.size() && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n')) ++j;
      if (j >= b.size() || b[j] != '>') return err(i, "malformed end tag");
      if (stack.empty() || stack.back()->name != name) return err(i, "end tag </" + name + "> does not match");
      stack.pop_back();
      i = j + 1;
      continue;
    }
    // Start tag.
    std::size_t j = i + 1;
    while (j < b.size() && name_char(b[j])) ++j;
    if (j == i + 1) return err(i, "malformed tag");
    if (root && stack.empty()) return err(i, "second root element");
    if (stack.size() >= kMaxDepth) return err(i, "nesting deeper than 256");
    if (++nodes > kMaxNodes) return err(i, "too many elements");
    auto node = std::make_unique<xml_node>();
    node->name = local(b.substr(i + 1, j - i - 1));
    node->offset = i;
    bool self_close = false;
    for (;;) {
      while (j < b.size() && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n')) ++j;
      if (j >= b.size()) return err(i, "unterminated start tag");
      if (b[j] == '>') { ++j; break; }
      if (b[j] == '/' && j + 1 < b.size() && b[j + 1] == '>') { self_close = true; j += 2; break; }
      std::size_t k = j;
      while (k < b.size() && name_char(b[k])) ++k;
      if (k == j) return err(j, "malformed attribute");
      auto an = b.substr(j, k - j);
      while (k < b.size() && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' || b[k] == '\n')) ++k;
      if (k >= b.size() || b[k] != '=') return err(k, "attribute without '='");
      ++k;
      while (k < b.size() && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' || b[k] == '\n')) ++k;
      if (k >= b.size() || (b[k] != '"' && b[k] != '\'')) return err(k, "attribute value not quoted");
      auto q = b.find(b[k], k + 1);
      if (q == std::string_view::npos) return err(k, "unterminated attribute value");
      std::string v;
      if (!decode(b.substr(k + 1, q - k - 1), v)) return err(k, "bad entity reference");
      node->attrs.emplace_back(local(an), std::move(v));
      j = q + 1;
    }
    xml_node* raw = node.get();
    if (stack.empty()) root = std::move(node);
    else stack.back()->children.push_back(std::move(node));
    if (!self_close) stack.push_back(raw);
    i = j;
  }
  if (!root) return err(0, "no root element");
  if (!stack.empty()) return err(b.size(), "element <" + stack.back()->name + "> not closed");
  return root;
}

}  // namespace semilab::parsers::detail
