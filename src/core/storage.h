// Byte buffers behind tensors: 64-byte aligned heap memory, or a read-only memory-mapped file
// (so a frozen base model is used in place, never copied).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace peft {

class Storage {
 public:
  virtual ~Storage() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
  virtual bool writable() const = 0;
  // Tells the OS that bytes [offset, offset + bytes) will not be read for a while: a mapped file
  // drops those pages from the process's resident set (they are read back from the file if used
  // again), so a weight converted at load stops counting twice. Heap memory: nothing happens.
  virtual void release_pages(size_t offset, size_t bytes) {
    (void)offset;
    (void)bytes;
  }
};

// Zero-filled, 64-byte aligned.
std::shared_ptr<Storage> make_aligned_storage(size_t bytes);
// Maps a whole file read-only. Throws Error naming the path when it cannot be opened or mapped.
std::shared_ptr<Storage> map_file(const std::string& path);

}  // namespace peft
