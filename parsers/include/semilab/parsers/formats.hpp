#pragma once
// Export-file parsers (measurement-methods.md §7). Each takes the complete file as bytes.
#include <semilab/parsers/spectrum.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace semilab::parsers {

// Hard limits against hostile input; a file over them is an error, not a truncation.
inline constexpr std::size_t kMaxPoints = 10'000'000;

// CSV/TSV/whitespace columns. Detects the delimiter (tab, ';', ',', blanks) and a decimal comma
// (only with a delimiter other than ','), a header row, units in the header ("Wavelength (nm)",
// "2Theta [deg]", "Intensity / counts"). Leading lines that are not data ("# key: value",
// "key;value") become metadata. Column 0 is x, the others y channels.
[[nodiscard]] result<spectrum> parse_csv(std::string_view bytes);

// JCAMP-DX 4.24/5.01 single spectrum: ##XYDATA=(X++(Y..Y)) in AFFN or ASDF (SQZ, DIF, DUP, with
// the DIF Y-check value) and ##XYPOINTS=(XY..XY). X is rebuilt from FIRSTX/LASTX/NPOINTS and Y is
// scaled by YFACTOR. NTUPLES (multi-page) files are reported as unsupported.
[[nodiscard]] result<spectrum> parse_jcamp(std::string_view bytes);

// PANalytical XRDML: the first scan's dataPoints, 2Theta (or the first) positions with
// start/end or listPositions, intensities or counts; wavelength and sample id in metadata.
[[nodiscard]] result<spectrum> parse_xrdml(std::string_view bytes);

// VAMAS (ISO 14976), REGULAR scan mode. Returns the first block; the number of blocks and each
// block's identifiers are in metadata ("blocks", ...). All blocks: parse_vamas_blocks.
[[nodiscard]] result<std::vector<spectrum>> parse_vamas_blocks(std::string_view bytes);
[[nodiscard]] result<spectrum> parse_vamas(std::string_view bytes);

// Thermo Galactic SPC, new format (0x4B, little-endian): evenly spaced X (or an X array with
// TXVALS), a single Y subfile; 16/32-bit integer Y with exponent or IEEE float Y.
[[nodiscard]] result<spectrum> parse_spc(std::string_view bytes);

// SEM image metadata from a TIFF (classic, II or MM). Walks the IFD chain and reads the FEI/Thermo
// INI block (tag 34682) and the Zeiss SmartSEM block (tag 34118). No pixel data is decoded.
struct sem_metadata {
  std::string vendor;  // "fei", "zeiss" or "" when neither tag is present
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::optional<double> pixel_size_m;       // metres per pixel (x)
  std::optional<double> high_voltage_v;     // accelerating voltage, volts
  std::optional<double> working_distance_m; // metres
  std::optional<double> magnification;
  std::string detector;
  parsers::metadata meta;  // FEI: "Section.Key" -> value; Zeiss: "AP_CODE" -> "Name = value unit"
};
inline constexpr std::uint16_t kTagFeiMetadata = 34682;
inline constexpr std::uint16_t kTagZeissMetadata = 34118;
[[nodiscard]] result<sem_metadata> parse_sem_tiff(std::string_view bytes);

}  // namespace semilab::parsers
