# On erase ($1 = 0), not upgrade: put each engine's config back as it was before `mighook setup`.
if [ "$1" = 0 ]; then
  for engine in docker containerd crio podman; do
    if [ -e "/var/lib/mighook/setup/$engine.json" ]; then
      /usr/bin/mighook setup --undo "$engine" \
        || echo "mighook: $engine keeps the nvidia runtime (see the line above); restart $engine after fixing it" >&2
    fi
  done
fi
exit 0
