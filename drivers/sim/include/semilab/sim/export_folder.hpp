#pragma once
// semilab-sim --model export-folder DIR [--period SECONDS]: the export side of optical,
// structural and chemical instruments (issue #11). Every period one file of the next format in
// turn appears in DIR: XRDML (Si powder, Cu Kα), JCAMP-DX (UV-Vis absorbance of a ZnO film),
// VAMAS (XPS Au 4f, Al Kα), Galactic SPC (Raman Si line), CSV (UV-Vis, European locale:
// ';' and decimal comma) and SEM TIFF (FEI metadata block). Values carry seeded noise.
//
// Files are written the way vendor software writes them, not atomically: the final name is
// created first and filled in pieces with pauses between them (the agent's "wait until stable"
// path is exercised), then closed. One stdout line per file once it is complete:
// "wrote PATH" (flushed), after a first "ready DIR".
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

struct export_file {
  std::string name;   // file name, e.g. "0003_xps_au4f.vms"
  std::string bytes;  // its content
};

// Formats in the order they are written: xrdml, jcamp-dx, vamas, spc, csv, sem-tiff.
std::span<const std::string_view> export_formats();

// File number `n` (1-based, in its name) of `format`; nullopt-like empty name for an unknown one.
export_file make_export_file(std::string_view format, std::uint64_t n, std::mt19937_64& rng);

struct export_folder_options {
  std::filesystem::path dir;
  double period_s = 5;
  std::uint64_t seed = 1;
  std::uint64_t count = 0;                 // files to write, then exit (0 = until a signal)
  std::vector<std::string> formats;        // empty = all, in turn
  int pieces = 4;                          // a file is written in this many pieces
  double piece_pause_s = -1;               // pause between pieces; < 0 = min(period / 10, 0.3 s)
};

// Runs until SIGINT/SIGTERM or `count` files. Returns the exit code (0; 2 bad options; 3 the
// folder cannot be written).
int run_export_folder(const export_folder_options& opts);

}  // namespace semilab::sim
