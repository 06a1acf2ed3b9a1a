/* A driver utility binary (nvidia-debugdump, nvidia-cuda-mps-control) that
 * mighook only has to mount: build.rs compiles it once per name (TOOL_NAME).
 * It prints its name so a test can tell the injected file ran. */
#include <stdio.h>

#ifndef TOOL_NAME
#error "build.rs defines TOOL_NAME"
#endif

int main(void) {
  printf("%s (fake driver tool)\n", TOOL_NAME);
  return 0;
}
