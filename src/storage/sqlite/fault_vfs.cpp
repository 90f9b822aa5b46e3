#include "storage/sqlite/fault_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <stdexcept>

namespace cw::storage {
namespace {

// The shim's file: SQLite allocates szOsFile bytes and hands them to xOpen;
// our header comes first (SQLite reads pMethods from it), the wrapped VFS's
// own file object follows at kRealOffset.
struct FaultFile {
  sqlite3_file base;
};

constexpr int kRealOffset = static_cast<int>((sizeof(FaultFile) + alignof(std::max_align_t) - 1) &
                                             ~(alignof(std::max_align_t) - 1));

sqlite3_vfs* g_real = nullptr;  // set once, before registration
FaultVfs* g_faults = nullptr;   // likewise
sqlite3_vfs g_vfs;

sqlite3_file* Real(sqlite3_file* file) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kRealOffset);
}

const sqlite3_io_methods* RealMethods(sqlite3_file* file) { return Real(file)->pMethods; }

// io methods: each forwards to the wrapped file, except that xWrite and xSync
// ask the FaultVfs first.

int Close(sqlite3_file* f) {
  const int rc = RealMethods(f)->xClose(Real(f));
  f->pMethods = nullptr;
  return rc;
}
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
  return RealMethods(f)->xRead(Real(f), buf, n, offset);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  if (g_faults->ShouldFailWrite()) return SQLITE_IOERR_WRITE;
  return RealMethods(f)->xWrite(Real(f), buf, n, offset);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return RealMethods(f)->xTruncate(Real(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  if (g_faults->ShouldFailSync()) return SQLITE_IOERR_FSYNC;
  return RealMethods(f)->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return RealMethods(f)->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return RealMethods(f)->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return RealMethods(f)->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return RealMethods(f)->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return RealMethods(f)->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return RealMethods(f)->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return RealMethods(f)->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return RealMethods(f)->xShmMap(Real(f), page, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return RealMethods(f)->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { RealMethods(f)->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return RealMethods(f)->xShmUnmap(Real(f), delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
  return RealMethods(f)->xFetch(Real(f), offset, n, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return RealMethods(f)->xUnfetch(Real(f), offset, p);
}

constexpr sqlite3_io_methods MethodsOfVersion(int version) {
  return {version,
          Close,
          Read,
          Write,
          Truncate,
          Sync,
          FileSize,
          Lock,
          Unlock,
          CheckReservedLock,
          FileControl,
          SectorSize,
          DeviceCharacteristics,
          version >= 2 ? ShmMap : nullptr,
          version >= 2 ? ShmLock : nullptr,
          version >= 2 ? ShmBarrier : nullptr,
          version >= 2 ? ShmUnmap : nullptr,
          version >= 3 ? Fetch : nullptr,
          version >= 3 ? Unfetch : nullptr};
}

// One table per io-methods version, so the shim offers exactly what the
// wrapped file offers (SQLite checks iVersion before using shm and mmap).
constexpr sqlite3_io_methods kMethods[] = {MethodsOfVersion(1), MethodsOfVersion(2),
                                           MethodsOfVersion(3)};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  sqlite3_file* real = Real(file);
  real->pMethods = nullptr;
  file->pMethods = nullptr;
  const int rc = g_real->xOpen(g_real, name, real, flags, out_flags);
  // SQLite calls xClose whenever pMethods is set, even after a failed open,
  // so the shim's methods are installed exactly when the real ones were.
  if (real->pMethods != nullptr) {
    const int version = std::clamp(real->pMethods->iVersion, 1, 3);
    file->pMethods = &kMethods[version - 1];
  }
  return rc;
}

// VFS methods other than xOpen go straight to the wrapped VFS.
int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) { return g_real->xDlOpen(g_real, name); }
void DlError(sqlite3_vfs*, int n, char* out) { g_real->xDlError(g_real, n, out); }
void (*DlSym(sqlite3_vfs*, void* handle, const char* symbol))(void) {
  return g_real->xDlSym(g_real, handle, symbol);
}
void DlClose(sqlite3_vfs*, void* handle) { g_real->xDlClose(g_real, handle); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int Sleep(sqlite3_vfs*, int micros) { return g_real->xSleep(g_real, micros); }
int CurrentTime(sqlite3_vfs*, double* out) { return g_real->xCurrentTime(g_real, out); }
int GetLastError(sqlite3_vfs*, int n, char* out) {
  return g_real->xGetLastError ? g_real->xGetLastError(g_real, n, out) : 0;
}
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}
int SetSystemCall(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr call) {
  return g_real->xSetSystemCall(g_real, name, call);
}
sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs*, const char* name) {
  return g_real->xGetSystemCall(g_real, name);
}
const char* NextSystemCall(sqlite3_vfs*, const char* name) {
  return g_real->xNextSystemCall(g_real, name);
}

void Register(FaultVfs* faults) {
  g_real = sqlite3_vfs_find(nullptr);
  if (g_real == nullptr) throw std::runtime_error("storage: no default sqlite vfs");
  g_faults = faults;

  g_vfs = sqlite3_vfs{};
  g_vfs.iVersion = std::min(g_real->iVersion, 3);
  g_vfs.szOsFile = kRealOffset + g_real->szOsFile;
  g_vfs.mxPathname = g_real->mxPathname;
  g_vfs.zName = FaultVfs::kName;
  g_vfs.xOpen = Open;
  g_vfs.xDelete = Delete;
  g_vfs.xAccess = Access;
  g_vfs.xFullPathname = FullPathname;
  g_vfs.xDlOpen = DlOpen;
  g_vfs.xDlError = DlError;
  g_vfs.xDlSym = DlSym;
  g_vfs.xDlClose = DlClose;
  g_vfs.xRandomness = Randomness;
  g_vfs.xSleep = Sleep;
  g_vfs.xCurrentTime = CurrentTime;
  g_vfs.xGetLastError = GetLastError;
  if (g_vfs.iVersion >= 2) g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
  if (g_vfs.iVersion >= 3) {
    g_vfs.xSetSystemCall = SetSystemCall;
    g_vfs.xGetSystemCall = GetSystemCall;
    g_vfs.xNextSystemCall = NextSystemCall;
  }
  // Not the default: only connections that name it get faults.
  if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) {
    throw std::runtime_error("storage: cannot register the fault vfs");
  }
}

// The fault fires on the `at`th call counted when it was armed; `count` is
// the number of calls so far including this one.
bool Fires(std::int64_t count, std::int64_t at) { return at != 0 && count >= at; }

}  // namespace

FaultVfs& FaultVfs::Install() {
  static FaultVfs instance;
  static std::once_flag once;
  std::call_once(once, [] { Register(&instance); });
  return instance;
}

void FaultVfs::FailWriteAt(std::int64_t n) {
  fail_write_at_.store(n == 0 ? 0 : writes_.load() + n);
}

void FaultVfs::FailSyncAt(std::int64_t n) { fail_sync_at_.store(n == 0 ? 0 : syncs_.load() + n); }

void FaultVfs::Reset() {
  fail_write_at_.store(0);
  fail_sync_at_.store(0);
  writes_.store(0);
  syncs_.store(0);
}

bool FaultVfs::ShouldFailWrite() { return Fires(writes_.fetch_add(1) + 1, fail_write_at_.load()); }

bool FaultVfs::ShouldFailSync() { return Fires(syncs_.fetch_add(1) + 1, fail_sync_at_.load()); }

}  // namespace cw::storage
