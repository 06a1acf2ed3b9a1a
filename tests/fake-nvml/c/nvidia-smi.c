/* Fake nvidia-smi: dynamically linked against libnvidia-ml.so.1 like the real
 * one, so running it in a container shows what the injected NVML (the fake,
 * found by SONAME) lets the container see.
 *
 *   nvidia-smi -L   one line per GPU, and under a MIG-enabled GPU one line per
 *                   MIG device, in the real tool's format:
 *                     GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-...)
 *                       MIG 1g.5gb      Device  0: (UUID: MIG-...)
 *   nvidia-smi      a short summary (driver and CUDA versions, one line per GPU).
 *
 * An NVML init failure prints "Failed to initialize NVML: <error string>" and
 * exits 255; no GPU prints "No devices found." and exits 6, as the real one. */
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_FOUND 6
#define NVML_DEVICE_MIG_ENABLE 1

nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
const char *nvmlErrorString(nvmlReturn_t);
nvmlReturn_t nvmlSystemGetDriverVersion(char *, unsigned);
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned, nvmlDevice_t *);
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t, char *, unsigned);
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t, char *, unsigned);
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t, unsigned *, unsigned *);
nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t, unsigned *);
nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t, unsigned, nvmlDevice_t *);

static int fail(const char *what, nvmlReturn_t r) {
  fprintf(stderr, "%s: %s\n", what, nvmlErrorString(r));
  nvmlShutdown();
  return 255;
}

/* A MIG device's NVML name is "<GPU name> MIG <profile>"; -L prints the profile. */
static const char *profile_of(const char *name) {
  const char *p = strstr(name, " MIG ");
  const char *last = NULL;
  while (p) {
    last = p;
    p = strstr(p + 1, " MIG ");
  }
  return last ? last + 5 : name;
}

static int list_migs(unsigned gpu, nvmlDevice_t dev) {
  unsigned cur = 0, pending = 0, max = 0;
  if (nvmlDeviceGetMigMode(dev, &cur, &pending) != NVML_SUCCESS || cur != NVML_DEVICE_MIG_ENABLE) return 0;
  nvmlReturn_t r = nvmlDeviceGetMaxMigDeviceCount(dev, &max);
  if (r != NVML_SUCCESS) return fail("Failed to get the MIG device count", r);
  for (unsigned i = 0; i < max; i++) {
    nvmlDevice_t mig;
    r = nvmlDeviceGetMigDeviceHandleByIndex(dev, i, &mig);
    if (r == NVML_ERROR_NOT_FOUND) continue;
    if (r != NVML_SUCCESS) return fail("Failed to get a MIG device handle", r);
    char name[96] = "", uuid[96] = "";
    if ((r = nvmlDeviceGetName(mig, name, sizeof name)) != NVML_SUCCESS) return fail("Failed to get a MIG name", r);
    if ((r = nvmlDeviceGetUUID(mig, uuid, sizeof uuid)) != NVML_SUCCESS) return fail("Failed to get a MIG UUID", r);
    printf("  MIG %-11s Device %2u: (UUID: %s)\n", profile_of(name), i, uuid);
  }
  (void)gpu;
  return 0;
}

int main(int argc, char **argv) {
  int list = argc > 1 && (strcmp(argv[1], "-L") == 0 || strcmp(argv[1], "--list-gpus") == 0);
  nvmlReturn_t r = nvmlInit_v2();
  if (r != NVML_SUCCESS) {
    printf("Failed to initialize NVML: %s\n", nvmlErrorString(r));
    return 255;
  }
  unsigned count = 0;
  if ((r = nvmlDeviceGetCount_v2(&count)) != NVML_SUCCESS) return fail("Failed to get the device count", r);
  if (count == 0) {
    printf("No devices found.\n");
    nvmlShutdown();
    return 6;
  }
  if (!list) {
    char version[96] = "?";
    int cuda = 0;
    nvmlSystemGetDriverVersion(version, sizeof version);
    nvmlSystemGetCudaDriverVersion(&cuda);
    printf("NVIDIA-SMI (fake)    Driver Version: %s    CUDA Version: %d.%d\n", version, cuda / 1000,
           cuda % 1000 / 10);
  }
  for (unsigned i = 0; i < count; i++) {
    nvmlDevice_t dev;
    char name[96] = "", uuid[96] = "";
    if ((r = nvmlDeviceGetHandleByIndex_v2(i, &dev)) != NVML_SUCCESS) return fail("Failed to get a device handle", r);
    if ((r = nvmlDeviceGetName(dev, name, sizeof name)) != NVML_SUCCESS) return fail("Failed to get a name", r);
    if ((r = nvmlDeviceGetUUID(dev, uuid, sizeof uuid)) != NVML_SUCCESS) return fail("Failed to get a UUID", r);
    printf("GPU %u: %s (UUID: %s)\n", i, name, uuid);
    if (list) {
      int rc = list_migs(i, dev);
      if (rc) return rc;
    }
  }
  nvmlShutdown();
  return 0;
}
