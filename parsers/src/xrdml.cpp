// PANalytical XRDML (XML, schema http://www.xrdml.com/XRDMeasurement/1.x): xrdMeasurements /
// xrdMeasurement / scan / dataPoints with <positions axis="2Theta" unit="deg"> holding
// <startPosition>/<endPosition> or <listPositions>, and <intensities> or <counts>.
#include "text.hpp"
#include "xml.hpp"

#include <semilab/parsers/formats.hpp>

namespace semilab::parsers {
namespace {
using detail::xml_node;

// Whitespace-separated numbers; false on a non-number.
bool numbers(std::string_view s, std::vector<double>& out) {
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    if (i >= s.size()) break;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\r' && s[j] != '\n') ++j;
    auto v = detail::parse_double(s.substr(i, j - i));
    if (!v || out.size() >= kMaxPoints) return false;
    out.push_back(*v);
    i = j;
  }
  return true;
}
}  // namespace

result<spectrum> parse_xrdml(std::string_view bytes) {
  auto doc = detail::parse_xml(bytes);
  if (!doc) return doc.error();
  const xml_node& root = **doc;
  const xml_node* meas = root.name == "xrdMeasurement" ? &root : root.child("xrdMeasurement");
  if (!meas) return detail::error_at(root.offset, "not XRDML: no <xrdMeasurement>");
  const xml_node* scan = meas->child("scan");
  if (!scan) return detail::error_at(meas->offset, "no <scan> in <xrdMeasurement>");
  const xml_node* dp = scan->child("dataPoints");
  if (!dp) return detail::error_at(scan->offset, "no <dataPoints> in <scan>");

  spectrum s;
  s.format = "xrdml";
  if (auto* st = root.child("sample")) {
    if (auto* id = st->child("id")) s.meta.emplace_back("sample.id", std::string(detail::trim(id->text)));
  }
  if (auto* a = meas->attr("measurementType")) s.meta.emplace_back("measurementType", *a);
  if (auto* wl = meas->child("usedWavelength")) {
    for (const char* k : {"kAlpha1", "kAlpha2", "kBeta", "ratioKAlpha2KAlpha1"})
      if (auto* n = wl->child(k)) s.meta.emplace_back(std::string("wavelength.") + k, std::string(detail::trim(n->text)));
  }
  if (auto* a = scan->attr("scanAxis")) s.meta.emplace_back("scanAxis", *a);
  if (auto* a = scan->attr("status")) s.meta.emplace_back("status", *a);
  if (auto* h = scan->child("header"))
    if (auto* t = h->child("startTimeStamp")) s.meta.emplace_back("startTimeStamp", std::string(detail::trim(t->text)));
  if (auto* t = dp->child("commonCountingTime")) s.meta.emplace_back("commonCountingTime", std::string(detail::trim(t->text)));

  // Intensities: <intensities> (counts per step) or <counts>.
  const xml_node* inten = dp->child("intensities");
  if (!inten) inten = dp->child("counts");
  if (!inten) return detail::error_at(dp->offset, "no <intensities> or <counts> in <dataPoints>");
  s.y.resize(1);
  if (!numbers(inten->text, s.y[0])) return detail::error_at(inten->offset, "<" + inten->name + "> holds a non-number");
  const std::size_t n = s.y[0].size();
  if (n == 0) return detail::error_at(inten->offset, "no intensity values");
  s.y_labels = {inten->name};
  s.y_units = {inten->attr("unit") ? *inten->attr("unit") : std::string("counts")};

  auto pos = dp->children_named("positions");
  if (pos.empty()) return detail::error_at(dp->offset, "no <positions> in <dataPoints>");
  const xml_node* p = pos.front();
  for (const auto* c : pos)
    if (c->attr("axis") && (*c->attr("axis") == "2Theta" || (scan->attr("scanAxis") && *c->attr("axis") == *scan->attr("scanAxis")))) {
      p = c;
      break;
    }
  s.x_label = p->attr("axis") ? *p->attr("axis") : "position";
  s.x_unit = p->attr("unit") ? *p->attr("unit") : "";
  for (const auto* c : pos) {  // the other axes' fixed positions are metadata
    if (c == p || !c->attr("axis")) continue;
    if (auto* cp = c->child("commonPosition")) s.meta.emplace_back("position." + *c->attr("axis"), std::string(detail::trim(cp->text)));
  }
  if (auto* lp = p->child("listPositions")) {
    if (!numbers(lp->text, s.x)) return detail::error_at(lp->offset, "<listPositions> holds a non-number");
    if (s.x.size() != n)
      return detail::error_at(lp->offset, std::to_string(s.x.size()) + " positions for " + std::to_string(n) + " intensities");
    return s;
  }
  auto* st = p->child("startPosition");
  auto* en = p->child("endPosition");
  if (!st || !en) return detail::error_at(p->offset, "<positions> without startPosition/endPosition or listPositions");
  auto a = detail::parse_double(st->text), b = detail::parse_double(en->text);
  if (!a) return detail::error_at(st->offset, "startPosition is not a number");
  if (!b) return detail::error_at(en->offset, "endPosition is not a number");
  s.x.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    s.x[i] = n == 1 ? *a : *a + (*b - *a) * static_cast<double>(i) / static_cast<double>(n - 1);
  return s;
}

}  // namespace semilab::parsers
