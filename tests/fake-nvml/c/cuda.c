/* Fake libcuda.so.1: just enough of the driver API to tell whether a container
 * was given what CUDA needs. On a GPU-less host no driver sits behind the
 * 195/511 majors, so open() of a node the devices cgroup allows fails with
 * ENXIO; EPERM means the cgroup denied it and ENOENT that the node is missing.
 * cuInit therefore succeeds when /dev/nvidiactl and /dev/nvidia-uvm both open
 * or give ENXIO, as the real one needs both.
 *
 * FAKE_NVML_DEV_ROOT replaces /dev (unit tests only), like in the fake NVML. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_NO_DEVICE 100

#ifndef FAKE_CUDA_VERSION
#define FAKE_CUDA_VERSION 12040
#endif

static int initialized;

static const char *dev_root(void) {
  const char *d = getenv("FAKE_NVML_DEV_ROOT");
  return d && *d ? d : "/dev";
}

/* 1 if dev_root()/name opens or has no driver behind it (ENXIO). */
static int reachable(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dev_root(), name);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return 1;
  }
  return errno == ENXIO;
}

int cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!reachable("nvidiactl") || !reachable("nvidia-uvm")) return CUDA_ERROR_NO_DEVICE;
  initialized = 1;
  return CUDA_SUCCESS;
}

int cuDriverGetVersion(int *version) {
  if (!version) return CUDA_ERROR_INVALID_VALUE;
  *version = FAKE_CUDA_VERSION;
  return CUDA_SUCCESS;
}

/* Counts /dev/nvidia<N> nodes the process can reach. */
int cuDeviceGetCount(int *count) {
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
  int n = 0;
  DIR *d = opendir(dev_root());
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      const char *rest = e->d_name + 6;
      if (strncmp(e->d_name, "nvidia", 6) != 0 || *rest == '\0' || strspn(rest, "0123456789") != strlen(rest))
        continue;
      n += reachable(e->d_name);
    }
    closedir(d);
  }
  *count = n;
  return CUDA_SUCCESS;
}
