/* Link-time stand-in for libnvidia-ml.so.1: gives the fake nvidia-smi a
 * DT_NEEDED on libnvidia-ml.so.1 without linking it against a particular
 * file. At run time the loader finds the real fake NVML by SONAME. Never
 * loaded. */
typedef int nvmlReturn_t;
#define STUB(name) \
  nvmlReturn_t name(void) { return 999; }
STUB(nvmlInit_v2)
STUB(nvmlShutdown)
STUB(nvmlErrorString)
STUB(nvmlSystemGetDriverVersion)
STUB(nvmlSystemGetCudaDriverVersion)
STUB(nvmlDeviceGetCount_v2)
STUB(nvmlDeviceGetHandleByIndex_v2)
STUB(nvmlDeviceGetName)
STUB(nvmlDeviceGetUUID)
STUB(nvmlDeviceGetMigMode)
STUB(nvmlDeviceGetMaxMigDeviceCount)
STUB(nvmlDeviceGetMigDeviceHandleByIndex)
