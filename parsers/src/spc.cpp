// Thermo Galactic SPC, new format (fversn 0x4B), after "GRAMS SPC file format" (Galactic
// Industries, 1997; also documented by the spc Python package, github.com/rohanisaac/spc):
// 512-byte main header, optional X array (TXVALS), then per subfile a 32-byte header and Y values.
#include "bytes.hpp"
#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <cmath>

namespace semilab::parsers {
namespace {
constexpr std::uint8_t kTSPREC = 0x01, kTMULTI = 0x04, kTXYXYS = 0x40, kTXVALS = 0x80;

const char* x_unit(std::uint8_t t) {
  switch (t) {
    case 1: return "cm-1";
    case 2: return "um";
    case 3: return "nm";
    case 4: return "s";
    case 5: return "min";
    case 6: return "Hz";
    case 9: return "m/z";
    case 10: return "ppm";
    case 13: return "cm-1";  // Raman shift
    case 14: return "eV";
    case 18: return "deg";
    case 20: return "degC";
    case 21: return "K";
    case 23: return "ms";
    case 27: return "cm";
    case 28: return "m";
    case 29: return "mm";
    default: return "";
  }
}
const char* x_label(std::uint8_t t) {
  switch (t) {
    case 1: return "wavenumber";
    case 2: case 3: return "wavelength";
    case 13: return "Raman shift";
    case 14: return "energy";
    case 18: return "angle";
    default: return "x";
  }
}
const char* y_label(std::uint8_t t) {
  switch (t) {
    case 2: return "absorbance";
    case 3: return "Kubelka-Munk";
    case 4: return "counts";
    case 10: return "log(1/R)";
    case 11: return "percent";
    case 12: return "intensity";
    case 13: return "relative intensity";
    case 128: return "transmission";
    case 129: return "reflectance";
    case 131: return "emission";
    default: return "y";
  }
}
}  // namespace

result<spectrum> parse_spc(std::string_view bytes) {
  detail::reader r{bytes, false};
  if (bytes.size() < 512) return detail::error_at(bytes.size(), "SPC: shorter than the 512-byte header");
  const auto flags = static_cast<std::uint8_t>(bytes[0]);
  const auto version = static_cast<std::uint8_t>(bytes[1]);
  if (version == 0x4D) return detail::error_at(1, "SPC: old format (0x4D) is not supported");
  if (version == 0x4C) return detail::error_at(1, "SPC: big-endian new format (0x4C) is not supported");
  if (version != 0x4B) return detail::error_at(1, "SPC: unknown version byte");
  if (flags & kTXYXYS) return detail::error_at(0, "SPC: XYXY multifile (per-subfile X arrays) is not supported");
  const auto fexp = static_cast<std::int8_t>(bytes[3]);
  const auto npts = *r.get<std::uint32_t>(4);
  const auto first = *r.get<double>(8);
  const auto last = *r.get<double>(16);
  const auto nsub = *r.get<std::uint32_t>(24);
  const auto xtype = static_cast<std::uint8_t>(bytes[28]);
  const auto ytype = static_cast<std::uint8_t>(bytes[29]);
  if ((flags & kTMULTI) && nsub != 1) return detail::error_at(24, "SPC: " + std::to_string(nsub) + " subfiles; only single-Y files are supported");
  if (npts == 0 || npts > kMaxPoints) return detail::error_at(4, "SPC: point count " + std::to_string(npts) + " out of range");
  if (!std::isfinite(first) || !std::isfinite(last)) return detail::error_at(8, "SPC: first/last X not finite");

  spectrum s;
  s.format = "spc";
  s.x_label = x_label(xtype);
  s.x_unit = x_unit(xtype);
  s.y_labels = {y_label(ytype)};
  s.y_units = {""};
  s.meta.emplace_back("fxtype", std::to_string(xtype));
  s.meta.emplace_back("fytype", std::to_string(ytype));
  std::string_view cmnt = bytes.substr(88, 130);
  cmnt = cmnt.substr(0, cmnt.find('\0'));
  if (!cmnt.empty()) s.meta.emplace_back("comment", std::string(detail::trim(cmnt)));
  std::string_view src = bytes.substr(45, 9);
  src = src.substr(0, src.find('\0'));
  if (!src.empty()) s.meta.emplace_back("source", std::string(detail::trim(src)));

  // Every size is checked against the file before anything is allocated: a forged point count
  // must not cost memory or time (found by fuzzing).
  const std::uint64_t x_off = 512;
  const std::uint64_t sub_off = x_off + ((flags & kTXVALS) ? 4ull * npts : 0);
  if ((flags & kTXVALS) && !r.has(x_off, 4ull * npts)) return detail::error_at(x_off, "SPC: file ends inside the X array");
  if (!r.has(sub_off, 32)) return detail::error_at(sub_off, "SPC: file ends inside the subfile header");
  const auto subexp = static_cast<std::int8_t>(bytes[sub_off + 1]);
  const auto subnpts = *r.get<std::uint32_t>(sub_off + 16);
  // Single-file SPC: the exponent of the main header applies; a subfile exponent of 0x80 (float)
  // is honoured too since some writers only set it there.
  const bool is_float = fexp == -128 || subexp == -128;
  const std::uint64_t off = sub_off + 32;
  if (subnpts != 0 && subnpts != npts)
    return detail::error_at(sub_off + 16, "SPC: subfile point count " + std::to_string(subnpts) + " differs from " + std::to_string(npts));
  const std::uint64_t width = is_float ? 4 : (flags & kTSPREC) ? 2 : 4;
  if (!r.has(off, width * npts)) return detail::error_at(off, "SPC: file ends inside the Y data");
  s.x.resize(npts);
  if (flags & kTXVALS) {
    for (std::uint32_t i = 0; i < npts; ++i) {
      float v = *r.get<float>(x_off + 4ull * i);
      if (!std::isfinite(v)) return detail::error_at(x_off + 4ull * i, "SPC: X value not finite");
      s.x[i] = v;
    }
  } else {
    for (std::uint32_t i = 0; i < npts; ++i)
      s.x[i] = npts == 1 ? first : first + (last - first) * static_cast<double>(i) / static_cast<double>(npts - 1);
  }
  s.y.assign(1, std::vector<double>(npts));
  for (std::uint32_t i = 0; i < npts; ++i) {
    const std::uint64_t o = off + width * i;
    double v;
    if (is_float) {
      float f = *r.get<float>(o);
      if (!std::isfinite(f)) return detail::error_at(o, "SPC: Y value not finite");
      v = f;
    } else if (width == 2) {
      v = std::ldexp(static_cast<double>(*r.get<std::int16_t>(o)), fexp - 16);
    } else {
      v = std::ldexp(static_cast<double>(*r.get<std::int32_t>(o)), fexp - 32);
    }
    s.y[0][i] = v;
  }
  return s;
}

}  // namespace semilab::parsers
