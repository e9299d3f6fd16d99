// Replays a fuzz corpus through a fuzz target without libFuzzer: every file in the given
// directories is one input. Used by ctest in the sanitizer tree; `./dev fuzz` runs libFuzzer.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  std::size_t n = 0;
  for (int i = 1; i < argc; ++i) {
    for (auto& e : std::filesystem::directory_iterator(argv[i])) {
      if (!e.is_regular_file()) continue;
      std::ifstream f(e.path(), std::ios::binary);
      std::vector<std::uint8_t> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(buf.data(), buf.size());
      // Every truncation of each input too: the cheapest mutation, and the most common bug.
      for (std::size_t k = 0; k < buf.size(); k += 1 + buf.size() / 64)
        LLVMFuzzerTestOneInput(buf.data(), k);
      ++n;
    }
  }
  std::printf("replayed %zu inputs\n", n);
  return n == 0 ? 1 : 0;
}
