// Fuzz target: the agent's and central's TOML configuration files (text an operator, a package
// script or a config-management tool writes; `semilab-agent config check FILE` reads any file it
// is given). The input is written to a file and loaded by both real loaders, since they take a
// path (toml++'s parse_file, then the option tables). Either a loader fills its struct or it
// fails with a message naming the file; it never crashes, throws or reads out of bounds.
//
// Inputs that name other files (a Modbus `map`, a `[[filedrop]]` folder) make the agent loader
// follow them as it would at start; nothing is written anywhere but this process's temp file.
#include <semilab/agent/config.hpp>
#include <semilab/central/config.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

// One file per process (libFuzzer -fork/-jobs run several), removed at exit.
struct scratch {
  std::string path;
  scratch() {
    path = (std::filesystem::temp_directory_path() /
            ("semilab-fuzz-config-" + std::to_string(::getpid()) + ".toml"))
               .string();
  }
  ~scratch() { std::remove(path.c_str()); }
};

const scratch& file() {
  static const scratch s;
  return s;
}

bool write_all(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;  // configuration files are small; keep the runs fast
  const std::string& path = file().path;
  if (!write_all(path, data, size)) std::abort();  // the harness itself failed

  std::string error;
  auto a = semilab::agent::load_config(path, error);
  if (!a && error.find(path) == std::string::npos) std::abort();  // errors name the file
  if (a && a->source != path) std::abort();

  semilab::central::central_config c;
  auto e = semilab::central::load_config(path, c);
  if (e && e->message.find(path) == std::string::npos) std::abort();
  return 0;
}
