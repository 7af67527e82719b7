#!/bin/sh
# The image's entrypoint, at the path NVIDIA's tritonserver images use. Theirs prints a banner and then execs its
# arguments; the operator's Deployment sets only `args` (["tritonserver", "--model-repository=...", ...]) and no
# `command`, relying on exactly that, so this image must behave the same way. exec keeps Triton as PID 1's
# replacement: SIGTERM from the kubelet reaches it directly and it shuts down cleanly.
if [ "$#" -eq 0 ]; then
  exec /bin/bash
fi
exec "$@"
