#!/bin/sh
# `pip install` inside an image build (components/ and serving/ Dockerfiles).
# Uses the TLS proxy's CA when the build got the `pipca` secret, and the wheels of
# the `wheels` stage when one is mounted at /wheels; neither stays in the image.
set -eu
if [ -f /run/secrets/pipca ]; then
    export PIP_CERT=/run/secrets/pipca
fi
if [ -n "$(ls -A /wheels 2>/dev/null)" ]; then
    export PIP_FIND_LINKS=/wheels
fi
exec pip install "$@"
