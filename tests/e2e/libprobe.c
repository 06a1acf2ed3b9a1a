/* libprobe: the dynamic-linking half of mighook's end-to-end tests.
 *
 * Unlike openprobe it is linked dynamically against glibc, so it exercises the
 * container's loader and ld.so.cache the way a CUDA program does. The harness
 * (tests/support/glibc_image.rs) compiles it with gcc at test time. Commands,
 * one output line per item:
 *
 *   libprobe dlopen NAME...   "NAME ok" or "NAME error <dlerror()>"
 *   libprobe cuinit           dlopen("libcuda.so.1") and cuInit(0):
 *                             "cuInit 0" (CUDA_SUCCESS), "cuInit <code>",
 *                             or "cuInit error <dlerror()>"
 *   libprobe cudevices        cuInit(0), then cuDeviceGetCount:
 *                             "cuDeviceGetCount <n>", or "cuInit <code>" if init fails
 *   libprobe cuversion        dlopen("libcuda.so.1") and cuDriverGetVersion: which libcuda
 *                             the loader picked ("cuDriverGetVersion 12040"), or
 *                             "cuDriverGetVersion error <dlerror()>"
 *   libprobe write PATH...    open(PATH, O_WRONLY): "PATH ok" or "PATH <ERRNO name>"
 *                             (EROFS expected for injected read-only files)
 *   libprobe own              dlopen the image's own "libimage.so.1" and call it:
 *                             "own ok" or "own error <dlerror()>"
 *
 * The exit status is 0 whatever the results (the test judges the lines), 2 on
 * a usage error. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ETXTBSY: return "ETXTBSY";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return NULL;
  }
}

static int cmd_dlopen(int n, char **names) {
  for (int i = 0; i < n; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) {
      printf("%s ok\n", names[i]);
      dlclose(h);
    } else {
      printf("%s error %s\n", names[i], dlerror());
    }
  }
  return 0;
}

static int cmd_cuinit(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("cuInit error %s\n", dlerror());
    return 0;
  }
  int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
  if (!cu_init) {
    printf("cuInit error %s\n", dlerror());
    return 0;
  }
  printf("cuInit %d\n", cu_init(0));
  return 0;
}

static int cmd_cudevices(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("cuInit error %s\n", dlerror());
    return 0;
  }
  int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
  int (*cu_count)(int *) = (int (*)(int *))dlsym(h, "cuDeviceGetCount");
  if (!cu_init || !cu_count) {
    printf("cuInit error cuInit or cuDeviceGetCount missing\n");
    return 0;
  }
  int rc = cu_init(0), n = -1;
  if (rc != 0) {
    printf("cuInit %d\n", rc);
    return 0;
  }
  rc = cu_count(&n);
  if (rc != 0)
    printf("cuDeviceGetCount error %d\n", rc);
  else
    printf("cuDeviceGetCount %d\n", n);
  return 0;
}

static int cmd_cuversion(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  int (*get)(int *) = h ? (int (*)(int *))dlsym(h, "cuDriverGetVersion") : NULL;
  int v = -1;
  if (!get) {
    printf("cuDriverGetVersion error %s\n", dlerror());
    return 0;
  }
  int rc = get(&v);
  if (rc != 0)
    printf("cuDriverGetVersion error %d\n", rc);
  else
    printf("cuDriverGetVersion %d\n", v);
  return 0;
}

static int cmd_write(int n, char **paths) {
  for (int i = 0; i < n; i++) {
    int fd = open(paths[i], O_WRONLY | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
      printf("%s ok\n", paths[i]);
      close(fd);
      continue;
    }
    int e = errno;
    const char *name = errno_name(e);
    if (name)
      printf("%s %s\n", paths[i], name);
    else
      printf("%s errno%d\n", paths[i], e);
  }
  return 0;
}

static int cmd_own(void) {
  void *h = dlopen("libimage.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("own error %s\n", dlerror());
    return 0;
  }
  int (*hello)(void) = (int (*)(void))dlsym(h, "image_hello");
  if (!hello || hello() != 42) {
    printf("own error image_hello missing or wrong\n");
    return 0;
  }
  printf("own ok\n");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "dlopen") == 0) return cmd_dlopen(argc - 2, argv + 2);
  if (argc == 2 && strcmp(argv[1], "cuinit") == 0) return cmd_cuinit();
  if (argc == 2 && strcmp(argv[1], "cudevices") == 0) return cmd_cudevices();
  if (argc == 2 && strcmp(argv[1], "cuversion") == 0) return cmd_cuversion();
  if (argc >= 2 && strcmp(argv[1], "write") == 0) return cmd_write(argc - 2, argv + 2);
  if (argc == 2 && strcmp(argv[1], "own") == 0) return cmd_own();
  fprintf(stderr, "usage: libprobe dlopen NAME... | cuinit | cudevices | cuversion | write PATH... | own\n");
  return 2;
}
