# On erase ($1 = 0): the links %post made, if they still point at mighook.
if [ "$1" = 0 ]; then
  for name in nvidia-container-runtime nvidia-container-runtime-hook nvidia-cdi-hook; do
    [ "$(readlink "/usr/bin/$name" 2>/dev/null)" = mighook ] && rm -f "/usr/bin/$name"
  done
  rmdir /var/lib/mighook/setup /var/lib/mighook 2>/dev/null || true
fi
exit 0
