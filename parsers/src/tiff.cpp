// SEM image metadata from TIFF (TIFF 6.0, Adobe 1992: header, IFD chain, 12-byte entries with the
// value inline when it fits in 4 bytes). FEI/Thermo write an INI-style ASCII block in private tag
// 34682 ([Beam] HV=, [Scan] PixelWidth=, [Stage] WorkingDistance=, ...); Zeiss SmartSEM writes
// tag 34118 as CR/LF lines pairing a parameter code (AP_PIXEL_SIZE) with "Name = value unit"
// (RosettaSciIO tiff reader; gist solarchemist/9de1a3397aca8b721908).
#include "bytes.hpp"
#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <set>

namespace semilab::parsers {
namespace {
constexpr int kMaxIfds = 64;

std::uint64_t type_size(std::uint16_t t) {
  switch (t) {
    case 1: case 2: case 6: case 7: return 1;
    case 3: case 8: return 2;
    case 4: case 9: case 11: case 13: return 4;
    case 5: case 10: case 12: return 8;
    default: return 0;
  }
}

// "2.233 nm", "50.00 K X", "5.00 kV" -> value in SI (m, V) or plain number (magnification).
std::optional<double> value_with_unit(std::string_view v) {
  v = detail::trim(v);
  auto sp = v.find(' ');
  auto num = detail::parse_double(v.substr(0, sp));
  if (!num) return std::nullopt;
  std::string_view unit = sp == std::string_view::npos ? std::string_view{} : detail::trim(v.substr(sp + 1));
  double f = 1;
  // Zeiss writes micro as Latin-1 0xB5, UTF-8 C2 B5, or a literal '?' after a lossy conversion.
  if (unit == "m" || unit == "V" || unit == "X" || unit.empty()) f = 1;
  else if (unit == "mm" || unit == "mV") f = 1e-3;
  else if (unit == "um" || unit == "\xB5m" || unit == "\xC2\xB5m" || unit == "?m") f = 1e-6;
  else if (unit == "nm") f = 1e-9;
  else if (unit == "pm") f = 1e-12;
  else if (unit == "kV" || unit == "K X" || unit == "KX" || unit == "k X") f = 1e3;
  else if (unit == "M X") f = 1e6;
  else return std::nullopt;
  return *num * f;
}

void parse_fei(std::string_view text, sem_metadata& m) {
  std::string section;
  for (const auto& l : detail::split_lines(text)) {
    auto t = detail::trim(l.text);
    if (t.empty() || t.front() == ';' || t.front() == '#') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = std::string(t.substr(1, t.size() - 2));
      continue;
    }
    auto eq = t.find('=');
    if (eq == std::string_view::npos) continue;
    std::string key = section + "." + std::string(detail::trim(t.substr(0, eq)));
    std::string val(detail::trim(t.substr(eq + 1)));
    m.meta.emplace_back(key, val);
    auto num = detail::parse_double(val);
    if (!num) {
      if (key == "Detectors.Name" || key == "Detectors.Mode") m.detector = m.detector.empty() ? val : m.detector + " " + val;
      continue;
    }
    if (key == "Scan.PixelWidth") m.pixel_size_m = *num;                 // metres
    else if (key == "Beam.HV" || (key == "EBeam.HV" && !m.high_voltage_v)) m.high_voltage_v = *num;  // volts
    else if (key == "Stage.WorkingDistance" || (key == "EBeam.WD" && !m.working_distance_m)) m.working_distance_m = *num;
  }
}

void parse_zeiss(std::string_view text, sem_metadata& m) {
  std::string code;
  for (const auto& l : detail::split_lines(text)) {
    auto t = detail::trim(l.text);
    if (t.empty()) continue;
    if (t.substr(0, 3) == "AP_" || t.substr(0, 3) == "DP_" || t.substr(0, 3) == "SV_") {
      code = std::string(t);
      continue;
    }
    auto eq = t.find(" = ");
    if (code.empty() || eq == std::string_view::npos) continue;
    auto val = t.substr(eq + 3);
    m.meta.emplace_back(code, std::string(t));
    if (code == "AP_PIXEL_SIZE") m.pixel_size_m = value_with_unit(val);
    else if (code == "AP_MAG") m.magnification = value_with_unit(val);
    else if (code == "AP_WD") m.working_distance_m = value_with_unit(val);
    else if (code == "AP_ACTUALKV" || (code == "AP_MANUALKV" && !m.high_voltage_v)) m.high_voltage_v = value_with_unit(val);
    else if (code == "DP_DETECTOR_CHANNEL" || code == "DP_DETECTOR_TYPE") m.detector = std::string(val);
    code.clear();
  }
}
}  // namespace

result<sem_metadata> parse_sem_tiff(std::string_view bytes) {
  detail::reader r{bytes, false};
  if (bytes.size() < 8) return detail::error_at(bytes.size(), "TIFF: shorter than the 8-byte header");
  if (bytes.substr(0, 2) == "MM") r.big = true;
  else if (bytes.substr(0, 2) != "II") return detail::error_at(0, "TIFF: byte-order mark is not II or MM");
  const auto magic = *r.get<std::uint16_t>(2);
  if (magic == 43) return detail::error_at(2, "TIFF: BigTIFF is not supported");
  if (magic != 42) return detail::error_at(2, "TIFF: magic is not 42");
  sem_metadata m;
  std::uint64_t ifd = *r.get<std::uint32_t>(4);
  std::set<std::uint64_t> seen;
  std::string_view fei, zeiss;
  for (int k = 0; ifd != 0; ++k) {
    if (k >= kMaxIfds) return detail::error_at(ifd, "TIFF: more than 64 IFDs");
    if (!seen.insert(ifd).second) return detail::error_at(ifd, "TIFF: IFD chain loops");
    auto count = r.get<std::uint16_t>(ifd);
    if (!count || !r.has(ifd + 2, 12ull * *count + 4)) return detail::error_at(ifd, "TIFF: IFD outside the file");
    for (std::uint16_t e = 0; e < *count; ++e) {
      const std::uint64_t at = ifd + 2 + 12ull * e;
      const auto tag = *r.get<std::uint16_t>(at);
      const auto type = *r.get<std::uint16_t>(at + 2);
      const auto n = *r.get<std::uint32_t>(at + 4);
      const std::uint64_t sz = type_size(type);
      if (sz == 0) continue;  // unknown types are skipped, as TIFF 6.0 asks readers to
      const std::uint64_t total = sz * n;
      const std::uint64_t data = total <= 4 ? at + 8 : *r.get<std::uint32_t>(at + 8);
      if (!r.has(data, total)) {
        if (tag == kTagFeiMetadata || tag == kTagZeissMetadata || tag == 256 || tag == 257)
          return detail::error_at(at, "TIFF: tag " + std::to_string(tag) + " points outside the file");
        continue;
      }
      if (k == 0 && (tag == 256 || tag == 257) && n >= 1) {
        std::uint32_t v = type == 3 ? *r.get<std::uint16_t>(data) : type == 4 ? *r.get<std::uint32_t>(data) : 0;
        (tag == 256 ? m.width : m.height) = v;
      }
      if ((tag == kTagFeiMetadata || tag == kTagZeissMetadata) && (type == 1 || type == 2 || type == 7)) {
        auto text = bytes.substr(static_cast<std::size_t>(data), static_cast<std::size_t>(total));
        text = text.substr(0, text.find('\0'));
        (tag == kTagFeiMetadata ? fei : zeiss) = text;
      }
    }
    ifd = *r.get<std::uint32_t>(ifd + 2 + 12ull * *count);
  }
  if (!fei.empty()) {
    m.vendor = "fei";
    parse_fei(fei, m);
  } else if (!zeiss.empty()) {
    m.vendor = "zeiss";
    parse_zeiss(zeiss, m);
  }
  return m;
}

}  // namespace semilab::parsers
