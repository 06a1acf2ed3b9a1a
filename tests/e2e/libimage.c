/* libimage.so.1: the glibc test image's own library (tests/support/glibc_image.rs).
 * `libprobe own` loads it by SONAME through the image's ld.so.cache, proving the
 * image's own entries still resolve after mighook has touched the cache. */
int image_hello(void) { return 42; }
