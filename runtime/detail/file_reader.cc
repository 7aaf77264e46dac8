#include "runtime/detail/file_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

namespace hct::detail {

Status ReadFully(int fd, std::byte* dst, uint64_t want, uint64_t min_bytes, uint64_t off,
                 const std::string& path) {
  uint64_t got = 0;
  while (got < min_bytes) {
    ssize_t r = ::pread(fd, dst + got, want - got, off_t(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path, errno);
    }
    if (r == 0) return Status::OutOfRange(path + ": file shrank while reading");
    got += uint64_t(r);
  }
  return Status::OK();
}

Result<std::byte*> ReadRange(const OpenFile& f, bool direct, std::byte* buf, uint64_t off,
                             uint64_t n) {
  const uint64_t a0 = AlignDown(off);
  std::byte* data = buf + (off - a0);
  Status st;
  if (direct && f.direct_fd >= 0) {
    // The aligned cover may pass the end of the file: only the range itself is required.
    st = ReadFully(f.direct_fd, buf, CoverBytes(off, n), off + n - a0, a0, f.path);
    if (st.ok()) return data;
    if (st.code() != Code::kIOError) return st;  // else the file system refused O_DIRECT here
  }
  HCT_RETURN_IF_ERROR(ReadFully(f.fd, data, n, n, off, f.path));
  return data;
}

Result<std::byte*> ReadHashed(const OpenFile& f, bool direct, std::byte* buf, uint64_t off,
                              uint64_t n, uint64_t* xxh3, uint64_t step) {
  if (!xxh3) return ReadRange(f, direct, buf, off, n);
  if (step == 0 || step >= n) {
    HCT_ASSIGN_OR_RETURN(std::byte* p, ReadRange(f, direct, buf, off, n));
    *xxh3 = XXH3_64bits(p, n);
    return p;
  }
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(),
                                                                      XXH3_freeState);
  if (!st || XXH3_64bits_reset(st.get()) != XXH_OK)
    return Status::ResourceExhausted(f.path + ": no memory for an XXH3 state");
  std::byte* data = nullptr;
  uint64_t s = 0;
  do {  // steps are multiples of 4096: step k's cover starts at buf + s like the whole read's
    const uint64_t len = std::min(step, n - s);
    HCT_ASSIGN_OR_RETURN(std::byte* p, ReadRange(f, direct, buf + s, off + s, len));
    if (s == 0) data = p;
    (void)XXH3_64bits_update(st.get(), p, len);
    s += len;
  } while (s < n);
  *xxh3 = XXH3_64bits_digest(st.get());
  return data;
}

bool MostlyCold(const OpenFile& f, std::span<const std::pair<uint64_t, uint64_t>> ranges) {
  const long page = ::sysconf(_SC_PAGESIZE);
  uint64_t cached = 0, total = 0;
  std::vector<unsigned char> vec;
  for (auto [off, n] : ranges) {
    if (n == 0) continue;
    const uint64_t a0 = off & ~uint64_t(page - 1);
    const uint64_t len = off + n - a0;
    void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, f.fd, off_t(a0));
    if (m == MAP_FAILED) return false;
    vec.assign((len + page - 1) / page, 0);
    if (::mincore(m, len, vec.data()) == 0) {
      for (unsigned char c : vec) cached += (c & 1);
      total += vec.size();
    }
    ::munmap(m, len);
  }
  return total > 0 && cached * 2 < total;
}

bool UseDirect(const OpenFile& f, ODirectMode mode,
               std::span<const std::pair<uint64_t, uint64_t>> ranges) {
  if (f.direct_fd < 0 || mode == ODirectMode::kOff) return false;
  return mode == ODirectMode::kOn || MostlyCold(f, ranges);
}

FileTable::~FileTable() {
  for (auto& [p, f] : files_) {
    if (f->fd >= 0) ::close(f->fd);
    if (f->direct_fd >= 0) ::close(f->direct_fd);
  }
}

Result<const OpenFile*> FileTable::Open(const std::string& path) {
  auto it = files_.find(path);
  if (it != files_.end()) return it->second.get();
  auto f = std::make_unique<OpenFile>();
  f->path = path;
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    int e = errno;
    Status s = Status::FromErrno("open", path, e);
    return e == ENOENT ? Status::NotFound(s.message()) : s;
  }
  struct stat st {};
  if (::fstat(f->fd, &st) != 0) {
    int e = errno;
    ::close(f->fd);
    return Status::FromErrno("stat", path, e);
  }
  f->size = uint64_t(st.st_size);
  if (mode_ != ODirectMode::kOff)
    f->direct_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);  // EINVAL on tmpfs
  const OpenFile* raw = f.get();
  files_[path] = std::move(f);
  return raw;
}

}  // namespace hct::detail
