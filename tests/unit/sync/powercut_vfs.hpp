#pragma once
// Test-only SQLite VFS shim that simulates a power cut: it passes every call to the default VFS
// and keeps, per file, the image the disk is guaranteed to hold (what was there at first open,
// plus every write and truncate made durable by an xSync). cut() makes every later I/O call fail
// (the machine is off); restore() then puts the durable images back on disk, dropping every
// write that was not synced, and removes the -shm files (shared memory does not survive a
// reboot). Worst case for the application: a real disk may keep some unsynced writes, never
// more than these.
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace semilab::test {

class powercut_vfs {
 public:
  // Registers the shim as the default VFS of this process (until uninstall()).
  static powercut_vfs& install() {
    static powercut_vfs v;
    v.real_ = sqlite3_vfs_find(nullptr);
    if (v.real_ == &v.vfs_) return v;
    v.vfs_ = *v.real_;
    v.vfs_.szOsFile = static_cast<int>(sizeof(file) + static_cast<std::size_t>(v.real_->szOsFile));
    v.vfs_.zName = "powercut";
    v.vfs_.pAppData = &v;
    v.vfs_.xOpen = &x_open;
    v.vfs_.xDelete = &x_delete;
    sqlite3_vfs_register(&v.vfs_, 1);
    return v;
  }
  void uninstall() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(real_, 1);
  }

  // Cuts the power right before the n-th xSync from now (1 = the next one): that sync and
  // everything after it fails, its pending writes never reach the disk.
  void cut_before_sync(int n) { syncs_left_ = n; }
  void cut() { dead_ = true; }
  bool dead() const { return dead_; }
  int syncs() const { return syncs_; }

  // After every connection is closed: the disk as it would be found after the reboot.
  void restore() {
    std::lock_guard lk(mu_);
    for (auto& [path, img] : images_) {
      if (!img.exists) {
        std::filesystem::remove(path);
        continue;
      }
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f.write(img.bytes.data(), static_cast<std::streamsize>(img.bytes.size()));
    }
    for (auto& [path, img] : images_)
      if (path.size() > 4 && path.compare(path.size() - 4, 4, "-wal") == 0) {
        auto shm = path.substr(0, path.size() - 4) + "-shm";
        std::filesystem::remove(shm);
      }
    images_.clear();
    pending_.clear();
    dead_ = false;
    syncs_left_ = 0;
  }

 private:
  struct image {
    bool exists = false;
    std::string bytes;
  };
  struct op {
    bool truncate = false;
    sqlite3_int64 offset = 0;
    std::string data;
  };
  struct file {
    sqlite3_file base;
    powercut_vfs* owner;
    std::string path;
    sqlite3_io_methods methods;
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };

  static powercut_vfs& self(sqlite3_vfs* v) { return *static_cast<powercut_vfs*>(v->pAppData); }
  static file& f(sqlite3_file* p) { return *reinterpret_cast<file*>(p); }
  static const sqlite3_io_methods* R(sqlite3_file* p) { return f(p).real()->pMethods; }

  static void apply(image& img, const op& o) {
    auto off = static_cast<std::size_t>(o.offset);
    if (o.truncate) {
      img.bytes.resize(off);
      return;
    }
    if (img.bytes.size() < off + o.data.size()) img.bytes.resize(off + o.data.size());
    std::memcpy(img.bytes.data() + off, o.data.data(), o.data.size());
  }

  static int x_open(sqlite3_vfs* v, const char* name, sqlite3_file* out, int flags, int* oflags) {
    auto& me = self(v);
    auto& fl = *new (out) file{};
    fl.owner = &me;
    fl.base.pMethods = nullptr;
    if (me.dead_) return SQLITE_IOERR;
    int rc = me.real_->xOpen(me.real_, name, fl.real(), flags, oflags);
    if (rc != SQLITE_OK) return rc;
    fl.path = name ? name : "";
    {
      std::lock_guard lk(me.mu_);
      if (!fl.path.empty() && !me.images_.count(fl.path)) {
        image img;
        std::ifstream in(fl.path, std::ios::binary);
        img.exists = static_cast<bool>(in);
        if (in) img.bytes.assign(std::istreambuf_iterator<char>(in), {});
        // A file created now exists on disk only once synced; treat creation as durable (the
        // directory entry), its content as empty.
        img.exists = true;
        me.images_[fl.path] = std::move(img);
      }
    }
    fl.methods = *fl.real()->pMethods;
    // Every method receives our file: forward to the real one.
    auto& m = fl.methods;
    m.xFileSize = [](sqlite3_file* p, sqlite3_int64* s) { return R(p)->xFileSize(f(p).real(), s); };
    m.xLock = [](sqlite3_file* p, int l) { return R(p)->xLock(f(p).real(), l); };
    m.xUnlock = [](sqlite3_file* p, int l) { return R(p)->xUnlock(f(p).real(), l); };
    m.xCheckReservedLock = [](sqlite3_file* p, int* o) {
      return R(p)->xCheckReservedLock(f(p).real(), o);
    };
    m.xFileControl = [](sqlite3_file* p, int op, void* a) {
      return R(p)->xFileControl(f(p).real(), op, a);
    };
    m.xSectorSize = [](sqlite3_file* p) { return R(p)->xSectorSize(f(p).real()); };
    m.xDeviceCharacteristics = [](sqlite3_file* p) {
      return R(p)->xDeviceCharacteristics(f(p).real());
    };
    if (m.iVersion >= 2) {
      m.xShmMap = [](sqlite3_file* p, int pg, int sz, int ext, void volatile** mapped) {
        return R(p)->xShmMap(f(p).real(), pg, sz, ext, mapped);
      };
      m.xShmLock = [](sqlite3_file* p, int off, int n, int fl2) {
        return R(p)->xShmLock(f(p).real(), off, n, fl2);
      };
      m.xShmBarrier = [](sqlite3_file* p) { R(p)->xShmBarrier(f(p).real()); };
      m.xShmUnmap = [](sqlite3_file* p, int del) { return R(p)->xShmUnmap(f(p).real(), del); };
    }
    // No memory-mapped I/O: every read goes through xRead.
    if (m.iVersion >= 3) m.iVersion = 2;
    fl.methods.xClose = [](sqlite3_file* p) {
      auto* r = f(p).real();
      int closed = r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
      f(p).~file();
      return closed;
    };
    fl.methods.xWrite = [](sqlite3_file* p, const void* buf, int n, sqlite3_int64 off) {
      auto& x = f(p);
      if (x.owner->dead_) return SQLITE_IOERR_WRITE;
      {
        std::lock_guard lk(x.owner->mu_);
        x.owner->pending_[x.path].push_back({false, off, std::string(static_cast<const char*>(buf),
                                                                     static_cast<std::size_t>(n))});
      }
      return x.real()->pMethods->xWrite(x.real(), buf, n, off);
    };
    fl.methods.xTruncate = [](sqlite3_file* p, sqlite3_int64 size) {
      auto& x = f(p);
      if (x.owner->dead_) return SQLITE_IOERR_TRUNCATE;
      {
        std::lock_guard lk(x.owner->mu_);
        x.owner->pending_[x.path].push_back({true, size, {}});
      }
      return x.real()->pMethods->xTruncate(x.real(), size);
    };
    fl.methods.xSync = [](sqlite3_file* p, int sync_flags) {
      auto& x = f(p);
      auto& vfs = *x.owner;
      if (vfs.dead_) return SQLITE_IOERR_FSYNC;
      if (vfs.syncs_left_ > 0 && --vfs.syncs_left_ == 0) {
        vfs.dead_ = true;  // the power goes before this sync completes
        return SQLITE_IOERR_FSYNC;
      }
      ++vfs.syncs_;
      {
        std::lock_guard lk(vfs.mu_);
        auto& img = vfs.images_[x.path];
        for (auto& o : vfs.pending_[x.path]) apply(img, o);
        vfs.pending_[x.path].clear();
      }
      return x.real()->pMethods->xSync(x.real(), sync_flags);
    };
    fl.methods.xRead = [](sqlite3_file* p, void* buf, int n, sqlite3_int64 off) {
      auto& x = f(p);
      if (x.owner->dead_) return SQLITE_IOERR_READ;
      return x.real()->pMethods->xRead(x.real(), buf, n, off);
    };
    fl.base.pMethods = &fl.methods;
    return SQLITE_OK;
  }

  static int x_delete(sqlite3_vfs* v, const char* name, int dirsync) {
    auto& me = self(v);
    if (me.dead_) return SQLITE_IOERR_DELETE;
    {
      std::lock_guard lk(me.mu_);
      me.images_.erase(name);
      me.pending_.erase(name);
    }
    return me.real_->xDelete(me.real_, name, dirsync);
  }

  sqlite3_vfs vfs_{};
  sqlite3_vfs* real_ = nullptr;
  std::mutex mu_;
  std::map<std::string, image> images_;
  std::map<std::string, std::vector<op>> pending_;
  std::atomic<bool> dead_{false};
  std::atomic<int> syncs_left_{0};
  std::atomic<int> syncs_{0};
};

}  // namespace semilab::test
