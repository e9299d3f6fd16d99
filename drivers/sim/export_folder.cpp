#include <semilab/sim/export_folder.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

namespace semilab::sim {

namespace {

constexpr std::string_view kFormats[] = {"xrdml", "jcamp-dx", "vamas", "spc", "csv", "sem-tiff"};

double gauss(double x, double x0, double fwhm) {
  const double s = fwhm / 2.354820045;
  return std::exp(-0.5 * (x - x0) * (x - x0) / (s * s));
}
double lorentz(double x, double x0, double fwhm) {
  const double g = fwhm / 2;
  return g * g / ((x - x0) * (x - x0) + g * g);
}
double pvoigt(double x, double x0, double fwhm, double eta) {
  return eta * lorentz(x, x0, fwhm) + (1 - eta) * gauss(x, x0, fwhm);
}

// Counting noise: Poisson for counts (normal approximation above 30).
double counts(double mean, std::mt19937_64& rng) {
  if (mean <= 0) return 0;
  if (mean < 30) return static_cast<double>(std::poisson_distribution<int>(mean)(rng));
  return std::max(0.0, std::round(std::normal_distribution<double>(mean, std::sqrt(mean))(rng)));
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string number_name(std::uint64_t n, std::string_view what) {
  char b[64];
  std::snprintf(b, sizeof b, "%04llu_", static_cast<unsigned long long>(n));
  return b + std::string(what);
}

// XRDML 1.5 (PANalytical): Si powder, Cu Kα1, 2θ 20-60° step 0.02°, Si(111) and Si(220).
export_file xrdml(std::uint64_t n, std::mt19937_64& rng) {
  const double start = 20, end = 60, step = 0.02;
  const int pts = static_cast<int>(std::lround((end - start) / step)) + 1;
  const double shift = std::normal_distribution<double>(0, 0.01)(rng);
  const double fwhm = 0.12 + std::uniform_real_distribution<double>(0, 0.04)(rng);
  std::string ints;
  for (int i = 0; i < pts; ++i) {
    const double tt = start + step * i;
    const double mean = 40 + 2 * (60 - tt) + 12000 * pvoigt(tt, 28.443 + shift, fwhm, 0.4) +
                        7000 * pvoigt(tt, 47.303 + shift, fwhm * 1.2, 0.4);
    ints += (i ? " " : "") + std::to_string(static_cast<long long>(counts(mean, rng)));
  }
  std::string x =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<xrdMeasurements xmlns=\"http://www.xrdml.com/XRDMeasurement/1.5\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" status=\"Completed\">\n"
      "  <comment>\n    <entry>Configuration=Reflection-Transmission Spinner, Owner=User-1</entry>\n"
      "  </comment>\n"
      "  <sample type=\"To be analyzed\">\n    <id>Si powder NIST-like " + std::to_string(n) + "</id>\n"
      "    <name>Si standard</name>\n  </sample>\n"
      "  <xrdMeasurement measurementType=\"Scan\" status=\"Completed\" sampleMode=\"Reflection\">\n"
      "    <usedWavelength intended=\"K-Alpha 1\">\n"
      "      <kAlpha1 unit=\"Angstrom\">1.5405980</kAlpha1>\n"
      "      <kAlpha2 unit=\"Angstrom\">1.5444260</kAlpha2>\n"
      "      <kBeta unit=\"Angstrom\">1.3922500</kBeta>\n"
      "      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>\n"
      "    </usedWavelength>\n"
      "    <incidentBeamPath>\n      <xRayTube name=\"Cu LFF\">\n"
      "        <tension unit=\"kV\">45</tension>\n        <current unit=\"mA\">40</current>\n"
      "      </xRayTube>\n    </incidentBeamPath>\n"
      "    <scan appendNumber=\"0\" mode=\"Continuous\" scanAxis=\"Gonio\" status=\"Completed\">\n"
      "      <header>\n        <startTimeStamp>2026-11-27T10:00:00+01:00</startTimeStamp>\n"
      "        <author>\n          <name>semilab-sim</name>\n        </author>\n"
      "        <source>\n          <applicationSoftware version=\"5.5\">Data Collector</applicationSoftware>\n"
      "        </source>\n      </header>\n"
      "      <dataPoints>\n"
      "        <positions axis=\"2Theta\" unit=\"deg\">\n"
      "          <startPosition>" + fmt("%.5f", start) + "</startPosition>\n"
      "          <endPosition>" + fmt("%.5f", end) + "</endPosition>\n"
      "        </positions>\n"
      "        <positions axis=\"Omega\" unit=\"deg\">\n"
      "          <startPosition>10.00000</startPosition>\n"
      "          <endPosition>30.00000</endPosition>\n"
      "        </positions>\n"
      "        <commonCountingTime unit=\"seconds\">0.50</commonCountingTime>\n"
      "        <intensities unit=\"counts\">" + ints + "</intensities>\n"
      "      </dataPoints>\n"
      "    </scan>\n  </xrdMeasurement>\n</xrdMeasurements>\n";
  return {number_name(n, "xrd_si.xrdml"), std::move(x)};
}

// UV-Vis absorbance of a ZnO film (direct gap near 3.28 eV) with Urbach tail and noise.
double zno_absorbance(double nm, double eg, std::mt19937_64& rng) {
  const double e = 1239.84193 / nm;
  double alpha_e = e > eg ? std::sqrt(e - eg) * 2.2 : 0;  // (αhν)² linear in hν above the gap
  alpha_e += 0.05 * std::exp((e - eg) / 0.06 < 0 ? (e - eg) / 0.06 : 0);
  return alpha_e / e * 1.8 + 0.04 + std::normal_distribution<double>(0, 0.0004)(rng);
}

// JCAMP-DX 4.24, XYDATA=(X++(Y..Y)) with integer ordinates and YFACTOR.
export_file jcamp(std::uint64_t n, std::mt19937_64& rng) {
  const double eg = 3.28 + std::normal_distribution<double>(0, 0.01)(rng);
  const int first = 300, last = 500, pts = last - first + 1;  // 1 nm step
  const double yfactor = 0.0001;
  std::string s = "##TITLE= ZnO film " + std::to_string(n) + " absorbance\n"
                  "##JCAMP-DX= 4.24\n##DATA TYPE= UV/VIS SPECTRUM\n##ORIGIN= semilab-sim\n"
                  "##OWNER= semilab\n##SPECTROMETER/DATA SYSTEM= UV-2600\n"
                  "##XUNITS= NANOMETERS\n##YUNITS= ABSORBANCE\n##XFACTOR= 1\n"
                  "##YFACTOR= " + fmt("%g", yfactor) + "\n##FIRSTX= " + std::to_string(first) +
                  "\n##LASTX= " + std::to_string(last) + "\n##NPOINTS= " + std::to_string(pts) +
                  "\n##FIRSTY= ";
  std::vector<long> ys;
  for (int i = 0; i < pts; ++i) ys.push_back(std::lround(zno_absorbance(first + i, eg, rng) / yfactor));
  s += fmt("%.4f", static_cast<double>(ys[0]) * yfactor) + "\n##XYDATA= (X++(Y..Y))\n";
  for (int i = 0; i < pts; i += 8) {
    s += std::to_string(first + i);
    for (int k = i; k < std::min(pts, i + 8); ++k) s += " " + std::to_string(ys[static_cast<std::size_t>(k)]);
    s += "\n";
  }
  s += "##END=\n";
  return {number_name(n, "uvvis_zno.jdx"), std::move(s)};
}

// VAMAS (ISO 14976), regular scan, one block: XPS Au 4f with Al Kα (1486.6 eV), kinetic energy
// 1390-1410 eV in 0.05 eV steps (Au 4f7/2 at 84.0 eV binding energy).
export_file vamas(std::uint64_t n, std::mt19937_64& rng) {
  const double hv = 1486.6, start = 1390.0, step = 0.05;
  const int pts = 401;
  const double offset = std::normal_distribution<double>(0, 0.02)(rng);
  std::vector<long> ys;
  long lo = LONG_MAX, hi = 0;
  for (int i = 0; i < pts; ++i) {
    const double be = hv - (start + step * i) - 4.5;  // work function 4.5 eV
    double mean = 800 + 20 * (be - 80) + 30000 * pvoigt(be, 84.0 + offset, 0.8, 0.3) +
                  22500 * pvoigt(be, 87.67 + offset, 0.8, 0.3);
    const long y = static_cast<long>(counts(mean, rng));
    ys.push_back(y);
    lo = std::min(lo, y);
    hi = std::max(hi, y);
  }
  std::string s =
      "VAMAS Surface Chemical Analysis Standard Data Transfer Format 1988 May 4\n"
      "semilab-sim\nXPS simulator\nsemilab\nAu foil energy scale check " + std::to_string(n) + "\n"
      "1\nsimulated export\nNORM\nREGULAR\n1\n0\n0\n0\n0\n0\n1\n"
      "Au 4f\nAu foil\n2026\n11\n27\n12\n0\n0\n0\n0\nXPS\nAl\n" + fmt("%.1f", hv) + "\n300\n0\n0\n54.7\n0\n"
      "FAT\n20\n1\n4.5\n0\n0\n0\n0\n0\nAu\n4f\n-1\nkinetic energy\neV\n" + fmt("%.2f", start) + "\n" +
      fmt("%.2f", step) + "\n1\ncounts\nd\npulse counting\n0.1\n1\n0\n0\n0\n0\n0\n" +
      std::to_string(pts) + "\n" + std::to_string(lo) + "\n" + std::to_string(hi) + "\n";
  for (long y : ys) s += std::to_string(y) + "\n";
  s += "end of experiment\n";
  return {number_name(n, "xps_au4f.vms"), std::move(s)};
}

void put_u32(std::string& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
void put_f64(std::string& b, std::size_t at, double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, 8);
  for (int i = 0; i < 8; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<char>((u >> (8 * i)) & 0xFF);
}

// Galactic SPC, new format (0x4B, little-endian), one subfile, float Y, evenly spaced X:
// Raman shift 400-650 cm-1, the Si line at 520.7 cm-1.
export_file spc(std::uint64_t n, std::mt19937_64& rng) {
  const int pts = 251;
  const double first = 400, last = 650;
  const double centre = 520.7 + std::normal_distribution<double>(0, 0.15)(rng);
  std::string h(512, '\0');
  h[0] = 0x00;             // ftflgs: evenly spaced X, one subfile
  h[1] = 0x4B;             // fversn
  h[2] = 11;               // fexper: Raman
  h[3] = static_cast<char>(0x80);  // fexp: IEEE float Y
  put_u32(h, 4, pts);
  put_f64(h, 8, first);
  put_f64(h, 16, last);
  put_u32(h, 24, 1);
  h[28] = 13;  // fxtype: Raman shift cm-1
  h[29] = 4;   // fytype: counts
  const std::string res = "semilab\0";
  std::memcpy(h.data() + 45, res.data(), std::min<std::size_t>(res.size(), 8));
  const std::string cmnt = "Si wafer " + std::to_string(n) + ", 532 nm, 10 s";
  std::memcpy(h.data() + 88, cmnt.data(), std::min<std::size_t>(cmnt.size(), 129));
  std::string sub(32, '\0');
  sub[1] = static_cast<char>(0x80);
  put_u32(sub, 16, pts);
  std::string data(static_cast<std::size_t>(pts) * 4, '\0');
  for (int i = 0; i < pts; ++i) {
    const double x = first + (last - first) * i / (pts - 1);
    const float y = static_cast<float>(counts(150 + 20000 * lorentz(x, centre, 3.2), rng));
    std::uint32_t u;
    std::memcpy(&u, &y, 4);
    put_u32(data, static_cast<std::size_t>(i) * 4, u);
  }
  return {number_name(n, "raman_si.spc"), h + sub + data};
}

// CSV as a European-locale UV-Vis export: ';' separator, decimal comma, a preamble.
export_file csv(std::uint64_t n, std::mt19937_64& rng) {
  const double eg = 3.28 + std::normal_distribution<double>(0, 0.01)(rng);
  std::string s = "# Exported by UV-Vis software (European locale: \";\" separator, decimal comma)\n"
                  "# Sample: ZnO film " + std::to_string(n) + "\nInstrument;UV-2600\n"
                  "Wavelength (nm);Absorbance [AU];Transmittance / %\n";
  for (int i = 0; i <= 400; ++i) {
    const double nm = 300 + 0.5 * i;
    const double a = zno_absorbance(nm, eg, rng);
    std::string line = fmt("%.1f", nm) + ";" + fmt("%.4f", a) + ";" + fmt("%.2f", 100 * std::pow(10, -a)) + "\n";
    for (auto& c : line)
      if (c == '.') c = ',';
    s += line;
  }
  return {number_name(n, "uvvis_zno.csv"), std::move(s)};
}

// Classic little-endian TIFF, 8-bit grey 64x48, FEI/Thermo INI block in tag 34682.
export_file sem_tiff(std::uint64_t n, std::mt19937_64& rng) {
  const std::uint16_t w = 64, h = 48;
  const double pixel = 2.5e-9 * static_cast<double>(1 + n % 3);
  std::string ini = "[User]\r\nDate=11/27/2026\r\nUser=semilab-sim\r\n[Beam]\r\nHV=5000\r\nBeam=EBeam\r\n"
                    "[EBeam]\r\nHV=5000\r\nWD=0.0041\r\nBeamCurrent=1e-10\r\n[Scan]\r\nPixelWidth=" +
                    fmt("%g", pixel) + "\r\nPixelHeight=" + fmt("%g", pixel) +
                    "\r\nDwelltime=1e-06\r\n[Stage]\r\nWorkingDistance=0.00405\r\n"
                    "[Detectors]\r\nName=TLD\r\nMode=SE\r\n[Image]\r\nMagnification=" +
                    fmt("%g", 0.1 / (pixel * w)) + "\r\n";
  ini.push_back('\0');
  struct entry {
    std::uint16_t tag, type;
    std::uint32_t count, value;
  };
  const std::uint32_t ifd_off = 8, n_entries = 10;
  const std::uint32_t ifd_len = 2 + 12 * n_entries + 4;
  const std::uint32_t pix_off = ifd_off + ifd_len;
  const std::uint32_t txt_off = pix_off + w * h;
  const entry es[] = {{256, 3, 1, w},       {257, 3, 1, h},         {258, 3, 1, 8},
                      {259, 3, 1, 1},       {262, 3, 1, 1},         {273, 4, 1, pix_off},
                      {277, 3, 1, 1},       {278, 3, 1, h},         {279, 4, 1, static_cast<std::uint32_t>(w * h)},
                      {34682, 2, static_cast<std::uint32_t>(ini.size()), txt_off}};
  std::string out = "II";
  auto u16 = [&](std::uint16_t v) {
    out.push_back(static_cast<char>(v & 0xFF));
    out.push_back(static_cast<char>(v >> 8));
  };
  auto u32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  u16(42);
  u32(ifd_off);
  u16(static_cast<std::uint16_t>(n_entries));
  for (const auto& e : es) {
    u16(e.tag);
    u16(e.type);
    u32(e.count);
    if (e.type == 3) {
      u16(static_cast<std::uint16_t>(e.value));
      u16(0);
    } else {
      u32(e.value);
    }
  }
  u32(0);
  // A grainy image: particles on a substrate.
  std::normal_distribution<double> noise(0, 12);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double v = 60 + noise(rng);
      for (int k = 0; k < 5; ++k) {
        const double cx = 8 + 12 * k, cy = 10 + 7 * k;
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < 16) v += 140;
      }
      out.push_back(static_cast<char>(std::clamp(v, 0.0, 255.0)));
    }
  out += ini;
  return {number_name(n, "sem_particles.tif"), std::move(out)};
}

std::atomic<bool> g_stop{false};
void on_export_signal(int) { g_stop = true; }

// Sleeps up to `s` seconds, returning early on a signal.
void nap(double s) {
  using clk = std::chrono::steady_clock;
  const auto until = clk::now() + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(s));
  while (!g_stop && clk::now() < until)
    std::this_thread::sleep_for(std::min<clk::duration>(std::chrono::milliseconds(50), until - clk::now()));
}

}  // namespace

std::span<const std::string_view> export_formats() { return kFormats; }

export_file make_export_file(std::string_view format, std::uint64_t n, std::mt19937_64& rng) {
  if (format == "xrdml") return xrdml(n, rng);
  if (format == "jcamp-dx") return jcamp(n, rng);
  if (format == "vamas") return vamas(n, rng);
  if (format == "spc") return spc(n, rng);
  if (format == "csv") return csv(n, rng);
  if (format == "sem-tiff") return sem_tiff(n, rng);
  return {};
}

int run_export_folder(const export_folder_options& o) {
  std::vector<std::string> formats = o.formats;
  if (formats.empty())
    for (auto f : kFormats) formats.emplace_back(f);
  for (const auto& f : formats) {
    bool known = false;
    for (auto k : kFormats) known |= f == k;
    if (!known) {
      spdlog::error("--formats: unknown format '{}' (xrdml, jcamp-dx, vamas, spc, csv, sem-tiff)", f);
      return 2;
    }
  }
  if (!(o.period_s > 0) || o.pieces < 1) {
    spdlog::error("--period must be > 0");
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec || !std::filesystem::is_directory(o.dir)) {
    spdlog::error("export folder {}: {}", o.dir.string(), ec ? ec.message() : "not a directory");
    return 3;
  }
  std::signal(SIGINT, on_export_signal);
  std::signal(SIGTERM, on_export_signal);
  std::mt19937_64 rng(o.seed);
  const double pause = o.piece_pause_s >= 0 ? o.piece_pause_s : std::min(o.period_s / 10, 0.3);
  std::cout << "ready " << o.dir.string() << std::endl;
  auto next = std::chrono::steady_clock::now();
  for (std::uint64_t n = 1; !g_stop && (o.count == 0 || n <= o.count); ++n) {
    auto f = make_export_file(formats[(n - 1) % formats.size()], n, rng);
    const auto path = o.dir / f.name;
    // Not atomic, on purpose: the final name exists while it is being filled.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      spdlog::error("{}: {}", path.string(), std::strerror(errno));
      return 3;
    }
    const std::size_t piece = (f.bytes.size() + static_cast<std::size_t>(o.pieces) - 1) / static_cast<std::size_t>(o.pieces);
    for (std::size_t off = 0; off < f.bytes.size(); off += piece) {
      if (off) nap(pause);
      const auto len = std::min(piece, f.bytes.size() - off);
      for (std::size_t done = 0; done < len;) {
        auto w = ::write(fd, f.bytes.data() + off + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          spdlog::error("{}: {}", path.string(), std::strerror(errno));
          ::close(fd);
          return 3;
        }
        done += static_cast<std::size_t>(w);
      }
    }
    ::close(fd);
    std::cout << "wrote " << path.string() << std::endl;
    spdlog::debug("wrote {} ({} bytes)", path.string(), f.bytes.size());
    if (o.count != 0 && n == o.count) break;
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o.period_s));
    nap(std::chrono::duration<double>(next - std::chrono::steady_clock::now()).count());
  }
  return 0;
}

}  // namespace semilab::sim
