// What a process holds, read from /proc: for tests that bound a server's memory, files and CPU.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace bouquet::net::testing {

// Resident memory (VmRSS) in bytes; 0 if the process is gone.
uint64_t rss_bytes(pid_t pid);
// Open file descriptors (entries of /proc/PID/fd); 0 if the process is gone.
size_t open_fds(pid_t pid);
// CPU seconds (user + system) the process has used so far.
double cpu_seconds(pid_t pid);

}  // namespace bouquet::net::testing
