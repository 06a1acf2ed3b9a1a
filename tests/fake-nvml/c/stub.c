/* A stand-in for one driver library that mighook only has to find and mount,
 * never to call: build.rs compiles it once per library with its own SONAME
 * (-Wl,-soname) and STUB_SYMBOL, so readelf, ldconfig and the loader see a real
 * shared object that a container can dlopen. */
#ifndef STUB_SYMBOL
#error "build.rs defines STUB_SYMBOL"
#endif

int STUB_SYMBOL(void) { return 0; }
