#pragma once
// CPU seconds (user + system) of this process or of another one by pid, for the benches that
// report CPU time per record (the robust figure on a loaded machine: wall time depends on what
// else runs, CPU per record much less).
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace semilab::bench {

// All threads of this process so far.
inline double self_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// utime + stime of a running process (fields 14 and 15 of /proc/PID/stat); 0 when it is gone.
inline double proc_cpu_s(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (pid <= 0 || !std::getline(in, line)) return 0;
  // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
  auto p = line.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream ss(line.substr(p + 2));
  std::string f;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && ss >> f; ++i) {
    if (i == 14) ut = std::stoull(f);
    if (i == 15) st = std::stoull(f);
  }
  return static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace semilab::bench
