#include "core/storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace peft {
namespace {

class AlignedStorage final : public Storage {
 public:
  explicit AlignedStorage(size_t bytes) : size_(bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    data_ = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    if (rounded && !data_) throw Error(fmt::format("out of memory allocating {} bytes", bytes));
    if (data_) std::memset(data_, 0, rounded);
  }
  ~AlignedStorage() override { std::free(data_); }
  void* data() override { return data_; }
  size_t size() const override { return size_; }
  bool writable() const override { return true; }

 private:
  void* data_ = nullptr;
  size_t size_;
};

class MappedStorage final : public Storage {
 public:
  MappedStorage(void* data, size_t size) : data_(data), size_(size) {}
  ~MappedStorage() override {
    if (data_) munmap(data_, size_);
  }
  void* data() override { return data_; }
  size_t size() const override { return size_; }
  bool writable() const override { return false; }
  void release_pages(size_t offset, size_t bytes) override {
    // Only the pages wholly inside the range: a neighbouring tensor may share the edge pages.
    const size_t page = size_t(::sysconf(_SC_PAGESIZE));
    const size_t end = std::min(offset + bytes, size_);
    const size_t first = (offset + page - 1) / page * page, last = end / page * page;
    if (data_ && last > first)
      ::madvise(static_cast<char*>(data_) + first, last - first, MADV_DONTNEED);
  }

 private:
  void* data_;
  size_t size_;
};

}  // namespace

std::shared_ptr<Storage> make_aligned_storage(size_t bytes) {
  return std::make_shared<AlignedStorage>(bytes);
}

std::shared_ptr<Storage> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const size_t size = size_t(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      fail("{}: cannot map: {}", path, std::strerror(e));
    }
  }
  ::close(fd);
  return std::make_shared<MappedStorage>(data, size);
}

}  // namespace peft
