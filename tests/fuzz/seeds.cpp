// Writes the seed corpora (run once; the files are committed under tests/fuzz/corpus/).
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>

#include <fstream>
#include <string>

using namespace semilab::schemas;

int main(int, char** argv) {
  std::string dir = argv[1];
  for (auto c : {codec::zstd, codec::none}) {
    for (std::size_t n : {1u, 7u, 60u}) {
      batch b{"agent-1", 0x8000000000000001ull, n, {}};
      std::uint64_t seq = 9;
      for (std::size_t i = 0; i < n; ++i) {
        record r;
        seq += i % 3 ? 1 : 2;  // sparse ranges, as when classes interleave
        r.seq = seq;
        r.cls = static_cast<record_class>(i % 4);
        r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i) * 1'000'000;
        r.instrument = "smu1";
        r.channel = i % 2 ? "curr" : "volt";
        r.unit = i % 2 ? "A" : "V";
        if (i % 4 == 0) r.val = decimal{1234567, -9};
        else if (i % 4 == 1) r.val = std::int64_t{-42};
        else if (i % 4 == 2) r.val = 2.5;
        else r.val = std::string("event text");
        if (i % 5 == 0) r.run_id = "run-1";
        r.quality = i % 3 == 0 ? quality::compliance : 0;
        b.records.push_back(r);
      }
      frame_encoder enc(c);
      auto f = *enc.encode(b);
      std::ofstream(dir + "/frame/seed-" + std::to_string(static_cast<int>(c)) + "-" + std::to_string(n),
                    std::ios::binary)
          .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
    }
  }
  ack a{"agent-1", 5, 6, true, {{1, 10}, {12, 12}}, reject_code::invalid_frame, false, "", "c1"};
  std::ofstream(dir + "/ack/stored") << encode_ack(a);
  a.stored = false;
  a.reason = "checksum mismatch";
  std::ofstream(dir + "/ack/rejected") << encode_ack(a);
  std::ofstream(dir + "/ack/presence") << R"({"v":1,"state":"online","id":"a","ts_ns":"1","version":"0.1.0"})";
  int i = 0;
  for (auto s : {"+1.234500E-03", "-12", "9.9E37", "0.000", ".5", "1e-300", "123456789012345678"})
    std::ofstream(dir + "/decimal/d" + std::to_string(i++)) << s;
  i = 0;
  for (auto s : {"3.978508E-07", "+1.000000E-01", "9.9E37", "-4.2E-12,1.0", "0,\"No error\"",
                 "-113,\"Undefined header\"", "TCPIP0::10.0.0.5::5025::SOCKET",
                 "USB0::0x05E6::0x2450::04412345::INSTR", "modbus-tcp://h:502?unit=1"})
    std::ofstream(dir + "/scpi_reply/r" + std::to_string(i++)) << s;
  return 0;
}
