// The file-drop driver on temp folders with an injected clock: stability, SHA-256, the
// content-addressed zstd archive, records (metadata, parameters, blob chunks), parse failures
// still archived, inotify and polling, and the records accepted by a real outbox.
#include "filedrop.hpp"

#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <zstd.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>
#include <thread>

#include "support/processes.hpp"

using namespace semilab;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct fake_clock {
  agent::filedrop::clock::time_point t{};
  agent::filedrop::now_fn fn() {
    return [this] { return t; };
  }
};

void write(const fs::path& p, const std::string& text) {
  std::ofstream o(p, std::ios::binary);
  o << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string unbase64(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) break;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string unzstd(const std::string& z) {
  const auto n = ZSTD_getFrameContentSize(z.data(), z.size());
  REQUIRE(n != ZSTD_CONTENTSIZE_ERROR);
  REQUIRE(n != ZSTD_CONTENTSIZE_UNKNOWN);
  std::string out(static_cast<std::size_t>(n), '\0');
  const auto r = ZSTD_decompress(out.data(), out.size(), z.data(), z.size());
  REQUIRE(!ZSTD_isError(r));
  out.resize(r);
  return out;
}

// Blob chunks of one file, reassembled in order; checks the "blob:i/n" numbering.
std::string reassemble(const std::vector<schemas::record>& rs) {
  std::string out;
  std::size_t i = 0, n = 0;
  for (const auto& r : rs) {
    if (r.cls != schemas::record_class::blob) continue;
    const auto& text = std::get<std::string>(r.val);
    CHECK(text.size() <= schemas::kMaxTextBytes);
    CHECK(r.channel.rfind("blob:" + std::to_string(i) + "/", 0) == 0);
    n = std::stoul(r.channel.substr(r.channel.find('/') + 1));
    out += unbase64(text);
    ++i;
  }
  CHECK(i == n);
  return out;
}

const schemas::record* find(const std::vector<schemas::record>& rs, const std::string& channel) {
  for (const auto& r : rs)
    if (r.channel == channel) return &r;
  return nullptr;
}

std::string fringe_csv() {
  std::string csv = "Wavelength (nm),Reflectance (%)\n";
  for (int i = 0; i <= 4000; ++i) {
    const double l = 400 + 0.1 * i;
    csv += std::to_string(l) + "," + std::to_string(10 + 5 * std::cos(4 * std::numbers::pi * 1.46 * 1000 / l)) + "\n";
  }
  return csv;
}

}  // namespace

TEST_CASE("sha256_hex and base64 against known vectors") {
  CHECK(agent::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(agent::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(agent::base64("") == "");
  CHECK(agent::base64("f") == "Zg==");
  CHECK(agent::base64("fo") == "Zm8=");
  CHECK(agent::base64("foo") == "Zm9v");
  CHECK(agent::base64("foobar") == "Zm9vYmFy");
  CHECK(agent::base64(std::string("\xff\x00\x80", 3)) == "/wCA");
}

TEST_CASE("filedrop: a file is handled once it has been stable; archived, parsed, analysed") {
  for (bool inotify : {true, false}) {
    CAPTURE(inotify);
    test::temp_dir d;
    fs::create_directories(d.path() / "in");
    fake_clock clk;
    agent::filedrop_options o;
    o.folders = {{d.path() / "in", "fringe-thickness"}};
    o.archive_dir = d.path() / "archive";
    o.stable_for = 2s;
    o.use_inotify = inotify;
    o.instrument = "uvvis-1";
    o.analysis.refractive_index = 1.46;
    agent::filedrop fd(o, clk.fn(), [] { return std::int64_t{1'700'000'000'000'000'000}; });
    CHECK(fd.inotify_active() == inotify);
    CHECK(fd.fallback_reason().empty() == inotify);

    const auto csv = fringe_csv();
    write(d.path() / "in" / "film.csv", csv.substr(0, csv.size() / 2));  // still being written
    CHECK(fd.poll().empty());
    CHECK(fd.pending() == 1);
    clk.t += 1s;
    write(d.path() / "in" / "film.csv", csv);  // grew: the stability clock restarts
    CHECK(fd.poll().empty());
    clk.t += 1500ms;
    CHECK(fd.poll().empty());  // 1.5 s since the last change
    clk.t += 600ms;
    auto out = fd.poll();
    REQUIRE(out.size() == 1);
    REQUIRE(out[0].has_value());
    const auto& f = *out[0];
    CHECK(f.size == csv.size());
    CHECK(f.sha256 == agent::sha256_hex(csv));
    CHECK(f.format == "csv");
    CHECK(f.parse_error.empty());
    CHECK(f.analysis_error.empty());
    CHECK(f.archived_new);
    CHECK(f.archive == d.path() / "archive" / f.sha256.substr(0, 2) / (f.sha256 + ".zst"));
    CHECK(unzstd(slurp(f.archive)) == csv);
    CHECK(fd.pending() == 0);

    // Records: file metadata first, then parameters, then blob chunks; one run_id.
    REQUIRE(!f.records.empty());
    const auto& info = f.records.front();
    CHECK(info.channel == "filedrop.file");
    CHECK(info.cls == schemas::record_class::run_result);
    CHECK(info.instrument == "uvvis-1");
    CHECK(info.ts_ns == 1'700'000'000'000'000'000);
    auto j = boost::json::parse(std::get<std::string>(info.val)).as_object();
    CHECK(j.at("name").as_string() == "film.csv");
    CHECK(j.at("sha256").as_string() == f.sha256);
    CHECK(j.at("format").as_string() == "csv");
    CHECK(!j.contains("parse_error"));
    CHECK(j.at("meta").as_object().contains("delimiter"));
    for (const auto& r : f.records) CHECK(r.run_id == "file:" + f.sha256);
    auto* th = find(f.records, "fringe-thickness.thickness");
    REQUIRE(th != nullptr);
    CHECK(th->unit == "nm");
    CHECK(std::fabs(std::get<double>(th->val) - 1000) <= 1);
    CHECK(reassemble(f.records) == csv);
    std::size_t blobs = 0;
    for (const auto& r : f.records) blobs += r.cls == schemas::record_class::blob;
    CHECK(blobs == (csv.size() + 3071) / 3072);

    // Handled once: not again while unchanged; again after it changed.
    clk.t += 10s;
    CHECK(fd.poll().empty());
    write(d.path() / "in" / "film.csv", csv + "\n");
    CHECK(fd.poll().empty());
    clk.t += 3s;
    auto again = fd.poll();
    REQUIRE(again.size() == 1);
    REQUIRE(again[0].has_value());
    CHECK(again[0]->sha256 != f.sha256);
  }
}

TEST_CASE("filedrop: unparseable files are archived and recorded with the parse error; dedup; ignored names") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "in", "raman-peak"}};
  o.archive_dir = d.path() / "archive";
  o.stable_for = 1s;
  o.use_inotify = false;
  agent::filedrop fd(o, clk.fn());
  CHECK(!fd.inotify_active());

  const std::string broken = "x,y\n1,2\n2,oops\n3,4\n";
  std::string binary(10000, '\0');
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>((i * 7919) & 0xFF);
  write(d.path() / "in" / "broken.csv", broken);
  write(d.path() / "in" / "blob.bin", binary);
  write(d.path() / "in" / ".hidden", broken);
  write(d.path() / "in" / "copy.csv.part", broken);
  CHECK(fd.poll().empty());
  CHECK(fd.pending() == 2);
  clk.t += 1s;
  auto out = fd.poll();
  REQUIRE(out.size() == 2);
  for (auto& r : out) {
    REQUIRE(r.has_value());
    CHECK(fs::exists(r->archive));
    CHECK(r->archived_new);
    CHECK(!r->parse_error.empty());
    auto j = boost::json::parse(std::get<std::string>(r->records.front().val)).as_object();
    CHECK(j.at("parse_error").as_string() == r->parse_error);
    CHECK(find(r->records, "raman-peak.center") == nullptr);  // nothing analysed
    if (r->path.filename() == "broken.csv") {
      CHECK(r->parse_error.find("line 3") != std::string::npos);
      CHECK(reassemble(r->records) == broken);
    } else {
      CHECK(r->format.empty());  // binary of no known format
      CHECK(reassemble(r->records) == binary);
      std::size_t blobs = 0;
      for (const auto& rec : r->records) blobs += rec.cls == schemas::record_class::blob;
      CHECK(blobs == 4);  // 10000 bytes in 3072-byte chunks
    }
  }
  // The same content under another name: one archive object.
  write(d.path() / "in" / "again.csv", broken);
  CHECK(fd.poll().empty());
  clk.t += 1s;
  auto dup = fd.poll();
  REQUIRE(dup.size() == 1);
  REQUIRE(dup[0].has_value());
  CHECK(!dup[0]->archived_new);
  CHECK(fs::exists(dup[0]->archive));
  std::size_t objects = 0;
  for (auto& e : fs::recursive_directory_iterator(d.path() / "archive")) objects += e.is_regular_file();
  CHECK(objects == 2);
}

TEST_CASE("filedrop: an analysis that fails still records the file; archive errors are reported and retried") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "in", "xrd-peak"}};
  o.archive_dir = d.path() / "archive";
  o.stable_for = 1s;
  agent::filedrop fd(o, clk.fn());
  write(d.path() / "in" / "flat.xy", "10 5\n11 5\n12 5\n13 5\n14 5\n15 5\n16 5\n");
  CHECK(fd.poll().empty());
  clk.t += 1s;
  auto out = fd.poll();
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].has_value());
  CHECK(out[0]->parse_error.empty());
  CHECK(!out[0]->analysis_error.empty());
  auto j = boost::json::parse(std::get<std::string>(out[0]->records.front().val)).as_object();
  CHECK(j.at("analysis_error").as_string() == out[0]->analysis_error);

  // The archive directory cannot be created (a file is in the way): an error for this poll, the
  // file stays pending and is handled once the problem is gone.
  fs::remove_all(d.path() / "archive");
  write(d.path() / "archive", "in the way");
  write(d.path() / "in" / "later.xy", "1 2\n");
  CHECK(fd.poll().empty());
  clk.t += 1s;
  out = fd.poll();
  REQUIRE(out.size() == 1);
  REQUIRE(!out[0].has_value());
  CHECK(out[0].error().path.filename() == "later.xy");
  CHECK(out[0].error().reason.find("archive") != std::string::npos);
  CHECK(fd.pending() == 1);
  fs::remove(d.path() / "archive");
  clk.t += 500ms;
  CHECK(fd.poll().empty());  // retried only after stable_for again
  clk.t += 600ms;
  out = fd.poll();
  REQUIRE(out.size() == 1);
  CHECK(out[0].has_value());
}

TEST_CASE("filedrop: a file over max_file_bytes is reported once, not archived") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "in", ""}};
  o.archive_dir = d.path() / "archive";
  o.stable_for = 1s;
  o.max_file_bytes = 100;
  agent::filedrop fd(o, clk.fn());
  write(d.path() / "in" / "big.csv", std::string(101, 'x'));
  write(d.path() / "in" / "ok.csv", std::string(100, 'x'));
  CHECK(fd.poll().empty());
  clk.t += 1s;
  auto out = fd.poll();
  REQUIRE(out.size() == 2);
  std::size_t failed = 0;
  for (auto& r : out) {
    if (r.has_value()) continue;
    ++failed;
    CHECK(r.error().path.filename() == "big.csv");
    CHECK(r.error().reason.find("max_file_bytes") != std::string::npos);
  }
  CHECK(failed == 1);
  CHECK(fd.pending() == 0);
  clk.t += 10s;
  CHECK(fd.poll().empty());
}

TEST_CASE("filedrop: a folder inotify cannot watch falls back to polling") {
  test::temp_dir d;
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "missing", ""}};
  o.archive_dir = d.path() / "archive";
  agent::filedrop fd(o, clk.fn());
  CHECK(!fd.inotify_active());
  CHECK(fd.fallback_reason().find("missing") != std::string::npos);
  CHECK(fd.poll().empty());
  // Polling sees the folder once it exists.
  fs::create_directories(d.path() / "missing");
  write(d.path() / "missing" / "a.xy", "1 2\n2 3\n");
  CHECK(fd.poll().empty());
  clk.t += 5s;
  auto out = fd.poll();
  REQUIRE(out.size() == 1);
  CHECK(out[0].has_value());
}

TEST_CASE("filedrop: a watched folder that goes away switches to polling, which finds it again") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "in", ""}};
  o.archive_dir = d.path() / "archive";
  o.stable_for = 1s;
  agent::filedrop fd(o, clk.fn());
  REQUIRE(fd.inotify_active());
  CHECK(fd.poll().empty());
  fs::remove_all(d.path() / "in");
  CHECK(fd.poll().empty());
  CHECK(!fd.inotify_active());
  CHECK(fd.fallback_reason().find("removed") != std::string::npos);
  fs::create_directories(d.path() / "in");
  write(d.path() / "in" / "a.xy", "1 2\n2 3\n");
  CHECK(fd.poll().empty());
  clk.t += 1s;
  auto out = fd.poll();
  REQUIRE(out.size() == 1);
  CHECK(out[0].has_value());
}

TEST_CASE("filedrop: its records are accepted by the outbox") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  fake_clock clk;
  agent::filedrop_options o;
  o.folders = {{d.path() / "in", "fringe-thickness"}};
  o.archive_dir = d.path() / "archive";
  o.stable_for = 1s;
  o.analysis.refractive_index = 1.46;
  agent::filedrop fd(o, clk.fn());
  write(d.path() / "in" / "film.csv", fringe_csv());
  CHECK(fd.poll().empty());
  clk.t += 1s;
  auto out = fd.poll();
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].has_value());
  const auto n = out[0]->records.size();
  std::string err;
  {
    auto box = sync::outbox::open({d.path() / "o.db", "agent-1", sync::durability::normal}, err);
    REQUIRE(box.has_value());
    auto range = (*box)->enqueue_wait(out[0]->records);
    REQUIRE(range.has_value());
  }
  auto st = sync::outbox::read_status(d.path() / "o.db", err);
  REQUIRE(st.has_value());
  CHECK(st->held == n);
}

TEST_CASE("filedrop_driver: pattern, forced format, outbox commit, ledger; a restart takes nothing again") {
  test::temp_dir d;
  fs::create_directories(d.path() / "in");
  agent::filedrop_config cfg;
  cfg.id = "uvvis";
  cfg.folder = (d.path() / "in").string();
  cfg.pattern = "*.txt";
  cfg.format = "csv";  // no extension the detector would use; forced
  cfg.stable_s = 0.05;
  cfg.poll_interval_s = 0.05;
  cfg.archive_dir = (d.path() / "archive").string();
  write(d.path() / "in" / "film.txt", fringe_csv());
  write(d.path() / "in" / "notes.doc", "not matched by the pattern");
  std::string err;
  auto box = sync::outbox::open({d.path() / "o.db", "agent-1", sync::durability::normal}, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  agent::recorder rec(**box);
  auto wait_files = [](agent::filedrop_driver& drv, std::uint64_t n) {
    for (int i = 0; i < 400 && drv.stats().files < n; ++i) std::this_thread::sleep_for(25ms);
    return drv.stats().files;
  };
  std::uint64_t produced = 0;
  {
    agent::filedrop_driver drv(cfg, rec);
    REQUIRE(drv.start().empty());
    REQUIRE(wait_files(drv, 1) == 1);
    drv.stop();
    CHECK(drv.stats().parse_errors == 0);
    produced = (*box)->counters().produced;
    CHECK(produced > 3);  // metadata + blob chunks
  }
  const auto ledger = slurp(d.path() / "archive" / "ledger-uvvis.txt");
  CHECK(ledger.find(agent::sha256_hex(fringe_csv())) != std::string::npos);
  CHECK(ledger.find("film.txt") != std::string::npos);
  CHECK(ledger.find("notes.doc") == std::string::npos);
  {
    agent::filedrop_driver drv(cfg, rec);
    REQUIRE(drv.start().empty());
    CHECK(drv.stats().skipped_ledger == 1);
    // A new file is taken; the one in the ledger is not.
    write(d.path() / "in" / "second.txt", "x;y\n1;2\n");
    REQUIRE(wait_files(drv, 1) == 1);
    drv.stop();
  }
  const auto second = (*box)->counters().produced - produced;
  CHECK(second == 2);  // filedrop.file + one blob chunk of the small file
}
