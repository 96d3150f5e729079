// bulkhead/heap.hpp — large message buffers stay in the heap.
//
// Every image a hook carries is allocated and freed a few times per call (its frame, its Json, the
// plugin's copy). glibc hands each buffer over 128 KiB to mmap and back to the kernel when freed,
// so every call paid page faults on fresh, zeroed pages: most of an image transform's cost, seen
// with perf in bench/runner_bench. Raising glibc's mmap and trim thresholds keeps those buffers in
// the heap for reuse. Used by the trainer, the plugin host and the runtimes the host starts.
#pragma once

namespace bulkhead {

// Call once, early in main.
void keep_large_buffers_in_heap();

// The same for a process this one execs (Python, Node): GLIBC_TUNABLES's value.
inline constexpr const char* kHeapTunables = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456";

}  // namespace bulkhead
