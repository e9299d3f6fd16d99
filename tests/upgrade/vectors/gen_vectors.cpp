// Writes and reads the wire vectors of tests/upgrade/vectors with one release's schemas/
// library; gen_vectors.sh compiles it against each release (README.md). Uses only what every
// release had, plus what the GEN_* macros say the release has.
//   gen_vectors write DIR PREFIX [KEY.pem]   frames and acks this release writes
//   gen_vectors read FILE...                 one verdict line per file: how this release reads it
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>
#ifdef GEN_SIGNING
#include <semilab/schemas/signing.hpp>
#endif

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "../canonical_batch.hpp"

using namespace semilab::schemas;

namespace {

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}
std::string get(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
std::string bin(const std::vector<std::uint8_t>& v) { return {v.begin(), v.end()}; }

int write(const std::string& dir, const std::string& prefix, const char* key_file) {
  const auto b = upgrade_vectors::canonical_batch();
  for (auto [name, c] : {std::pair{"none", codec::none}, std::pair{"zstd", codec::zstd}}) {
    frame_encoder enc(c, 3);
    auto f = enc.encode(b);
    if (!f) return std::fprintf(stderr, "encode %s failed\n", name), 1;
    put(dir + "/" + prefix + "_frame_" + name + ".bin", bin(*f));
  }
#ifdef GEN_SIGNING
  if (key_file) {
    std::string err;
    auto key = signing_key::load(key_file, err);
    if (!key) return std::fprintf(stderr, "key: %s\n", err.c_str()), 1;
    frame_encoder enc(codec::zstd, 3);
    auto f = enc.encode(b, &*key);
    if (!f) return std::fprintf(stderr, "encode signed failed\n"), 1;
    put(dir + "/" + prefix + "_frame_signed.bin", bin(*f));
  }
#else
  (void)key_file;
#endif
  put(dir + "/" + prefix + "_ack_stored.json", encode_ack(upgrade_vectors::stored_ack()));
  put(dir + "/" + prefix + "_ack_quota.json",
      encode_ack(upgrade_vectors::rejected_ack(reject_code::quota, true)));
  put(dir + "/" + prefix + "_ack_invalid.json",
      encode_ack(upgrade_vectors::rejected_ack(reject_code::invalid_frame, false)));
#ifdef GEN_SIGNING
  // Codes added with signing (19fa98a): what an older agent makes of them is in verdicts.txt.
  put(dir + "/" + prefix + "_ack_bad_signature.json",
      encode_ack(upgrade_vectors::rejected_ack(reject_code::bad_signature, false)));
  put(dir + "/" + prefix + "_ack_unapproved.json",
      encode_ack(upgrade_vectors::rejected_ack(reject_code::unapproved, true)));
#endif
  return 0;
}

std::string verdict(const std::string& path) {
  auto bytes = get(path);
  if (path.ends_with(".bin")) {
    frame_decoder dec;
    auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    if (!f) return "error " + f.error().message();
    return "ok records=" + std::to_string(f->records.size()) + " digest=" + upgrade_vectors::digest(f->records) +
           " signature_bytes=" + std::to_string(f->header.signature.size());
  }
  auto a = decode_ack(bytes);
  if (!a) return "error " + a.error().message();
  std::string s = "ok " + std::string(a->stored ? "stored" : "rejected");
  if (a->stored) {
    s += " ranges=";
    for (auto& r : a->ranges) s += std::to_string(r.first) + "-" + std::to_string(r.last) + ",";
  } else {
    s += " code=" + std::string(to_string(a->code)) + " retry=" + (a->retry ? "1" : "0");
  }
  return s + " central=" + a->central_instance;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "write") return write(argv[2], argv[3], argc > 4 ? argv[4] : nullptr);
  if (argc >= 2 && std::string(argv[1]) == "read") {
    for (int i = 2; i < argc; ++i) {
      std::string p = argv[i];
      std::printf("%s: %s\n", p.substr(p.rfind('/') + 1).c_str(), verdict(p).c_str());
    }
    return 0;
  }
  if (argc == 2 && std::string(argv[1]) == "digest") {
    std::printf("%s\n", upgrade_vectors::digest(upgrade_vectors::canonical_batch().records).c_str());
    return 0;
  }
  std::fprintf(stderr, "usage: gen_vectors write DIR PREFIX [KEY] | read FILE... | digest\n");
  return 2;
}
