#include "filedrop.hpp"

#include <boost/json.hpp>
#include <openssl/evp.h>
#include <zstd.h>

#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>
#include <spdlog/spdlog.h>

#include <semilab/parsers/formats.hpp>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace semilab::agent {
namespace fs = std::filesystem;

namespace {

// Names vendor software and copy tools use while a file is still being written.
bool ignored_name(const fs::path& p) {
  const auto n = p.filename().string();
  if (n.empty() || n.front() == '.' || n.back() == '~') return true;
  for (const char* suffix : {".tmp", ".part", ".partial", ".crdownload"})
    if (n.size() > std::strlen(suffix) && n.ends_with(suffix)) return true;
  return false;
}

std::string errno_text(int e) { return std::strerror(e); }

// Writes `data` to `path` durably: temp file in the same directory, fsync, rename, fsync dir.
std::string write_durably(const fs::path& path, std::string_view data) {
  const auto tmp = path.parent_path() / (".tmp-" + path.filename().string());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "open " + tmp.string() + ": " + errno_text(errno);
  std::size_t off = 0;
  while (off < data.size()) {
    auto n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return "write " + tmp.string() + ": " + errno_text(e);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return "fsync " + tmp.string() + ": " + errno_text(e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return "rename " + path.string() + ": " + errno_text(e);
  }
  int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::int64_t utc_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string base64(std::string_view in) {
  static constexpr char kTab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const auto v = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                   (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) | static_cast<unsigned char>(in[i + 2]);
    out += {kTab[v >> 18], kTab[(v >> 12) & 63], kTab[(v >> 6) & 63], kTab[v & 63]};
  }
  if (const auto rest = in.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out += kTab[v >> 18];
    out += kTab[(v >> 12) & 63];
    out += rest == 2 ? kTab[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

filedrop::filedrop(filedrop_options opt, now_fn now, wall_fn wall)
    : opt_(std::move(opt)), now_(std::move(now)), wall_(wall ? std::move(wall) : wall_fn(utc_ns)) {
  if (opt_.blob_chunk_bytes == 0 || opt_.blob_chunk_bytes > schemas::kMaxTextBytes / 4 * 3)
    opt_.blob_chunk_bytes = schemas::kMaxTextBytes / 4 * 3;
  if (!opt_.use_inotify) {
    fallback_reason_ = "inotify disabled by configuration";
    return;
  }
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) {
    fallback_reason_ = "inotify_init1: " + errno_text(errno);
    return;
  }
  for (std::size_t i = 0; i < opt_.folders.size(); ++i) {
    const int wd = ::inotify_add_watch(inotify_fd_, opt_.folders[i].path.c_str(),
                                       IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB);
    if (wd < 0) {
      // One folder without events means polling for all: simpler than mixing, and rare.
      fallback_reason_ = "inotify_add_watch " + opt_.folders[i].path.string() + ": " + errno_text(errno);
      ::close(inotify_fd_);
      inotify_fd_ = -1;
      watch_folder_.clear();
      return;
    }
    watch_folder_[wd] = i;
  }
}

filedrop::~filedrop() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void filedrop::mark_done(const fs::path& p, std::uintmax_t size, fs::file_time_type mtime) {
  done_[p] = {size, mtime};
  pending_.erase(p);
}

void filedrop::forget(const fs::path& p) {
  done_.erase(p);
  rescan_ = true;  // seen again at the next poll even without an event
}

void filedrop::note(const fs::path& p, std::size_t folder) {
  if (ignored_name(p)) return;
  if (!opt_.pattern.empty() && opt_.pattern != "*" &&
      ::fnmatch(opt_.pattern.c_str(), p.filename().c_str(), 0) != 0)
    return;
  std::error_code ec;
  auto status = fs::status(p, ec);
  if (ec || !fs::is_regular_file(status)) return;
  const auto size = fs::file_size(p, ec);
  if (ec) return;
  const auto mtime = fs::last_write_time(p, ec);
  if (ec) return;
  if (auto d = done_.find(p); d != done_.end() && d->second == std::pair{size, mtime}) return;
  auto [it, inserted] = pending_.try_emplace(p);
  if (inserted || it->second.size != size || it->second.mtime != mtime)
    it->second = {size, mtime, now_(), folder};
}

void filedrop::scan_folder(std::size_t i) {
  std::error_code ec;
  for (fs::directory_iterator it(opt_.folders[i].path, ec), end; !ec && it != end; it.increment(ec))
    note(it->path(), i);
}

void filedrop::scan_all() {
  for (std::size_t i = 0; i < opt_.folders.size(); ++i) scan_folder(i);
}

void filedrop::drain_inotify() {
  alignas(inotify_event) std::array<char, 16384> buf{};
  for (;;) {
    const auto n = ::read(inotify_fd_, buf.data(), buf.size());
    if (n <= 0) return;  // EAGAIN: drained
    for (std::size_t off = 0; off < static_cast<std::size_t>(n);) {
      inotify_event ev{};
      std::memcpy(&ev, buf.data() + off, sizeof ev);
      const char* name = buf.data() + off + sizeof ev;
      off += sizeof ev + ev.len;
      if (ev.mask & IN_Q_OVERFLOW) {
        rescan_ = true;
        continue;
      }
      auto f = watch_folder_.find(ev.wd);
      if ((ev.mask & IN_IGNORED) && f != watch_folder_.end()) {
        // The folder was deleted, moved or unmounted: its watch is gone. Polling finds it again
        // if it comes back.
        fallback_reason_ = "watch on " + opt_.folders[f->second].path.string() + " removed";
        ::close(inotify_fd_);
        inotify_fd_ = -1;
        watch_folder_.clear();
        rescan_ = true;
        return;
      }
      if (f == watch_folder_.end() || ev.len == 0) continue;
      note(opt_.folders[f->second].path / std::string(name, ::strnlen(name, ev.len)), f->second);
    }
  }
}

std::vector<filedrop_outcome> filedrop::poll() {
  if (inotify_fd_ >= 0) drain_inotify();
  if (rescan_ || inotify_fd_ < 0) {
    scan_all();
    rescan_ = false;
  }
  std::vector<filedrop_outcome> out;
  const auto now = now_();
  for (auto it = pending_.begin(); it != pending_.end();) {
    const auto& p = it->first;
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    const auto mtime = ec ? fs::file_time_type{} : fs::last_write_time(p, ec);
    if (ec) {  // gone (moved away, deleted) before it was stable
      it = pending_.erase(it);
      continue;
    }
    if (size != it->second.size || mtime != it->second.mtime) {
      it->second.size = size;
      it->second.mtime = mtime;
      it->second.since = now;
      ++it;
      continue;
    }
    if (now - it->second.since < opt_.stable_for) {
      ++it;
      continue;
    }
    auto r = ingest(p, it->second);
    if (!r && size > opt_.max_file_bytes) {  // will not shrink by waiting: reported once
      done_[p] = {size, mtime};
      out.push_back(std::move(r));
      it = pending_.erase(it);
      continue;
    }
    if (!r) {
      // Retried once it has been stable again for stable_for (a share that went away, a full disk).
      it->second.since = now;
      out.push_back(std::move(r));
      ++it;
      continue;
    }
    done_[p] = {size, mtime};
    out.push_back(std::move(r));
    it = pending_.erase(it);
  }
  return out;
}

filedrop_outcome filedrop::ingest(const fs::path& p, const file_state& st) {
  const auto fail = [&](std::string why) { return filedrop_failure{p, std::move(why)}; };
  if (st.size > opt_.max_file_bytes)
    return fail("file of " + std::to_string(st.size) + " bytes is over max_file_bytes (" +
                std::to_string(opt_.max_file_bytes) + ")");
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail("cannot open: " + errno_text(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail("read error");
  if (bytes.size() != st.size) return fail("changed while being read");  // not stable after all

  ingested_file f;
  f.path = p;
  f.size = bytes.size();
  f.mtime = st.mtime;
  f.sha256 = sha256_hex(bytes);
  if (f.sha256.empty()) return fail("SHA-256 failed");

  // Archive first: the raw bytes are kept whatever the parser thinks of them.
  const auto dir = opt_.archive_dir / f.sha256.substr(0, 2);
  f.archive = dir / (f.sha256 + ".zst");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail("archive directory " + dir.string() + ": " + ec.message());
  if (!fs::exists(f.archive, ec)) {
    std::string z(ZSTD_compressBound(bytes.size()), '\0');
    const auto zn = ZSTD_compress(z.data(), z.size(), bytes.data(), bytes.size(), opt_.zstd_level);
    if (ZSTD_isError(zn)) return fail(std::string("zstd: ") + ZSTD_getErrorName(zn));
    z.resize(zn);
    if (auto e = write_durably(f.archive, z); !e.empty()) return fail("archive: " + e);
    f.archived_new = true;
  }

  const auto& folder = opt_.folders[st.folder];
  const auto ts = wall_();
  const std::string run_id = "file:" + f.sha256;
  auto make = [&](schemas::record_class cls, std::string channel, std::string unit, schemas::value v) {
    schemas::record r;
    r.cls = cls;
    r.ts_ns = ts;
    r.instrument = opt_.instrument;
    r.channel = std::move(channel);
    r.unit = std::move(unit);
    r.val = std::move(v);
    r.run_id = run_id;
    return r;
  };

  const bool forced = !opt_.format.empty() && opt_.format != "auto";
  if (forced) f.format = opt_.format;
  else if (auto fmt = detect_export_format(bytes, p.string())) f.format = *fmt;
  parsers::metadata meta;
  if (f.format == "sem-tiff") {  // an image: its metadata is the result, there is no spectrum
    auto m = parsers::parse_sem_tiff(bytes);
    if (!m) {
      f.parse_error = m.error().to_string();
    } else {
      auto num = [](double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.9g", v);
        return std::string(b);
      };
      meta = {{"vendor", m->vendor}, {"width", std::to_string(m->width)}, {"height", std::to_string(m->height)}};
      if (m->pixel_size_m) meta.emplace_back("pixel_size_m", num(*m->pixel_size_m));
      if (m->high_voltage_v) meta.emplace_back("high_voltage_v", num(*m->high_voltage_v));
      if (m->working_distance_m) meta.emplace_back("working_distance_m", num(*m->working_distance_m));
      if (m->magnification) meta.emplace_back("magnification", num(*m->magnification));
      if (!m->detector.empty()) meta.emplace_back("detector", m->detector);
      meta.insert(meta.end(), m->meta.begin(), m->meta.end());
    }
  } else if (auto s = parse_export(bytes, p.string(), forced ? std::string_view(f.format) : std::string_view{}); !s) {
    f.parse_error = s.error().to_string();
  } else {
    meta = s->meta;
    if (!folder.kind.empty()) {
      auto params = analyze_spectrum(folder.kind, *s, opt_.analysis);
      if (!params) {
        f.analysis_error = params.error().reason;
      } else {
        for (const auto& prm : *params) {
          const auto ch = folder.kind + "." + prm.name;
          f.records.push_back(make(schemas::record_class::run_result, ch, prm.unit, prm.value));
          if (prm.uncertainty)
            f.records.push_back(make(schemas::record_class::run_result, ch + ".sigma", prm.unit, *prm.uncertainty));
          if (prm.pass)
            f.records.push_back(make(schemas::record_class::run_result, ch + ".pass", "", std::int64_t{*prm.pass ? 1 : 0}));
        }
      }
    }
  }

  boost::json::object info{{"name", p.filename().string()},
                           {"folder", folder.path.string()},
                           {"size", f.size},
                           {"sha256", f.sha256},
                           {"format", f.format}};
  if (!f.parse_error.empty()) info["parse_error"] = f.parse_error;
  if (!f.analysis_error.empty()) info["analysis_error"] = f.analysis_error;
  auto text = boost::json::serialize(info);
  if (!meta.empty()) {
    // Metadata as far as it fits the text limit (the archived file keeps all of it).
    boost::json::object m;
    for (const auto& [k, v] : meta) {
      m[k] = v;
      info["meta"] = m;
      auto t = boost::json::serialize(info);
      if (t.size() > schemas::kMaxTextBytes) break;
      text = std::move(t);
    }
  }
  if (text.size() > schemas::kMaxTextBytes) {  // a very long parse error or path: keep the essentials
    info = boost::json::object{{"size", f.size}, {"sha256", f.sha256}, {"format", f.format}};
    text = boost::json::serialize(info);
  }
  f.records.insert(f.records.begin(), make(schemas::record_class::run_result, "filedrop.file", "", text));

  const std::size_t chunk = opt_.blob_chunk_bytes;
  const std::size_t n = bytes.empty() ? 1 : (bytes.size() + chunk - 1) / chunk;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view part = std::string_view(bytes).substr(std::min(bytes.size(), i * chunk), chunk);
    f.records.push_back(make(schemas::record_class::blob, "blob:" + std::to_string(i) + "/" + std::to_string(n), "",
                             base64(part)));
  }
  return f;
}

// ---- filedrop_driver ------------------------------------------------------------------------

filedrop_driver::filedrop_driver(const filedrop_config& cfg, recorder& rec)
    : cfg_(std::make_unique<filedrop_config>(cfg)), rec_(rec), st_(std::make_shared<shared_state>()) {
  st_->id = cfg_->id;
}

filedrop_driver::~filedrop_driver() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string filedrop_driver::start() {
  if (thread_.joinable()) return {};
  std::error_code ec;
  fs::create_directories(cfg_->archive_dir, ec);
  if (ec) return "archive_dir " + cfg_->archive_dir + ": " + ec.message();
  st_->ledger = fs::path(cfg_->archive_dir) / ("ledger-" + cfg_->id + ".txt");
  if (!fs::is_directory(cfg_->folder, ec))
    spdlog::warn("[filedrop] {}: folder {} is not there (yet): polling until it appears", cfg_->id,
                 cfg_->folder);
  filedrop_options o;
  o.folders = {{cfg_->folder, cfg_->kind}};
  o.archive_dir = cfg_->archive_dir;
  o.pattern = cfg_->pattern;
  o.format = cfg_->format;
  o.stable_for = std::chrono::milliseconds(static_cast<std::int64_t>(cfg_->stable_s * 1000));
  // A folder missing at start cannot be watched: poll (it is scanned again every poll).
  o.use_inotify = cfg_->inotify && fs::is_directory(cfg_->folder, ec);
  o.instrument = cfg_->id;
  o.max_file_bytes = static_cast<std::uint64_t>(cfg_->max_file_mb) << 20;
  fd_ = std::make_unique<filedrop>(std::move(o));
  load_ledger();
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return std::string("eventfd: ") + std::strerror(errno);
  {
    std::lock_guard lk(st_->mu);
    st_->stats.inotify = fd_->inotify_active();
    st_->stats.fallback_reason = fd_->fallback_reason();
  }
  spdlog::info("[filedrop] {}: watching {} ({}){}{}, stable after {} s, archive {}", cfg_->id,
               cfg_->folder, fd_->inotify_active() ? "inotify" : "polling every " +
               std::to_string(cfg_->poll_interval_s) + " s: " + fd_->fallback_reason(),
               cfg_->pattern == "*" ? "" : ", pattern " + cfg_->pattern,
               cfg_->kind.empty() ? "" : ", analysis " + cfg_->kind, cfg_->stable_s, cfg_->archive_dir);
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
  return {};
}

void filedrop_driver::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
}

filedrop_stats filedrop_driver::stats() const {
  std::lock_guard lk(st_->mu);
  return st_->stats;
}

void filedrop_driver::load_ledger() {
  std::ifstream in(st_->ledger);
  std::string line;
  struct entry {
    std::uintmax_t size;
    fs::file_time_type mtime;
    std::string sha;
  };
  std::map<fs::path, entry> entries;
  std::size_t lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    // "<mtime ns> <size> <sha256> <path>"; a torn last line (crash while appending) is skipped.
    std::istringstream is(line);
    std::int64_t mt = 0;
    std::uintmax_t size = 0;
    std::string sha;
    if (!(is >> mt >> size >> sha) || sha.size() != 64 || is.get() != ' ') continue;
    std::string path((std::istreambuf_iterator<char>(is)), std::istreambuf_iterator<char>());
    if (path.empty()) continue;
    entries[path] = {size, fs::file_time_type(fs::file_time_type::duration(mt)), sha};
  }
  std::uint64_t skipped = 0;
  std::error_code ec;
  for (auto it = entries.begin(); it != entries.end();) {
    if (!fs::exists(it->first, ec)) {  // gone: no need to remember it
      it = entries.erase(it);
      continue;
    }
    fd_->mark_done(it->first, it->second.size, it->second.mtime);
    ++skipped;
    ++it;
  }
  // Compacted when it holds much more than the files still there (rename: never half a file).
  if (lines > 2 * entries.size() + 64) {
    auto tmp = st_->ledger;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& [p, v] : entries)
        out << v.mtime.time_since_epoch().count() << ' ' << v.size << ' ' << v.sha << ' ' << p.string() << '\n';
    }
    fs::rename(tmp, st_->ledger, ec);
  }
  std::lock_guard lk(st_->mu);
  st_->stats.skipped_ledger = skipped;
}

void filedrop_driver::shared_state::append_ledger(const ingested_file& f) {
  const auto p = f.path.string();
  if (p.find('\n') != std::string::npos) return;  // taken again after a restart: harmless
  std::ofstream out(ledger, std::ios::app);
  out << f.mtime.time_since_epoch().count() << ' ' << f.size << ' ' << f.sha256 << ' ' << p << '\n';
}

void filedrop_driver::run() {
  const std::string name = ("fd-" + cfg_->id).substr(0, 15);
  pthread_setname_np(pthread_self(), name.c_str());
  const int interval_ms = std::max(1, static_cast<int>(cfg_->poll_interval_s * 1000));
  while (!stopping_) {
    {
      std::vector<fs::path> again;
      {
        std::lock_guard lk(st_->mu);
        again.swap(st_->retry);
      }
      for (const auto& p : again) fd_->forget(p);
    }
    for (auto& o : fd_->poll()) {
      if (!o) {
        auto& last = last_failure_[o.error().path];
        if (last != o.error().reason) {  // logged once per reason, retried quietly
          spdlog::warn("[filedrop] {}: {}: {}", cfg_->id, o.error().path.string(), o.error().reason);
          last = o.error().reason;
        }
        std::lock_guard lk(st_->mu);
        ++st_->stats.failures;
        continue;
      }
      last_failure_.erase(o->path);
      auto file = std::make_shared<ingested_file>(std::move(*o));
      auto records = std::move(file->records);
      spdlog::info("[filedrop] {}: {} ({} bytes, {}, sha256 {}){}{}", cfg_->id, file->path.filename().string(),
                   file->size, file->format.empty() ? "unknown format" : file->format, file->sha256.substr(0, 12),
                   file->parse_error.empty() ? "" : ": parse error: " + file->parse_error,
                   file->analysis_error.empty() ? "" : ": analysis error: " + file->analysis_error);
      // Runs on the outbox writer thread after the commit: quick, no blocking on this thread.
      rec_.submit(std::move(records), [st = st_, file](boost::system::error_code ec, schemas::seq_range r) {
        std::lock_guard lk(st->mu);
        if (ec) {
          spdlog::error("[filedrop] {}: records of {} not stored ({}); taken again", st->id,
                        file->path.string(), ec.message());
          ++st->stats.failures;
          st->retry.push_back(file->path);
          return;
        }
        st->append_ledger(*file);
        ++st->stats.files;
        if (!file->parse_error.empty()) ++st->stats.parse_errors;
        spdlog::debug("[filedrop] {}: {} stored as seq {}..{}", st->id, file->path.string(), r.first, r.last);
      });
    }
    {
      std::lock_guard lk(st_->mu);
      st_->stats.pending = fd_->pending();
      st_->stats.inotify = fd_->inotify_active();
      st_->stats.fallback_reason = fd_->fallback_reason();
    }
    // Wake on inotify events, on stop(), or after the interval (stability checks, polling).
    std::array<pollfd, 2> pfd{{{wake_fd_, POLLIN, 0}, {fd_->fd(), POLLIN, 0}}};
    const nfds_t n = fd_->fd() >= 0 ? 2 : 1;
    int wait_ms = interval_ms;
    if (fd_->pending() > 0) wait_ms = std::min(wait_ms, std::max(50, static_cast<int>(cfg_->stable_s * 250)));
    ::poll(pfd.data(), n, wait_ms);
    if (n == 2 && (pfd[1].revents & POLLIN)) {
      // Let a burst of writes settle into one poll instead of one per event.
      ::poll(pfd.data(), 1, 20);
    }
  }
}

}  // namespace semilab::agent
