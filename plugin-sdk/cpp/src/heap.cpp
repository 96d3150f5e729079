#include <bulkhead/heap.hpp>

#include <malloc.h>

namespace bulkhead {

void keep_large_buffers_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);   // kHeapTunables's mmap_threshold
  mallopt(M_TRIM_THRESHOLD, 256 << 20);  // and trim_threshold
}

}  // namespace bulkhead
