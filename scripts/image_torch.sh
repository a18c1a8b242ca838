#!/bin/sh
# Installs torch (the version in constraints.txt) into an image's venv before
# anything else, so no later package pulls a build of the wrong kind.
#   image_torch.sh cpu|cuda [EXTRA_INDEX_URL [PIP_OPTION...]]
# cpu: the +cpu wheel from /wheels when the build has one, else the PyTorch CPU
# index. cuda: PyPI's Linux torch, which is the CUDA build (nvidia-* wheels).
# Either way PyPI serves torch's own dependencies, pinned by constraints.txt.
set -eu
variant=$1
extra=${2:-}
shift $(($# < 2 ? $# : 2))
case $variant in
    cpu)
        if [ -z "$extra" ] && ! ls /wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then
            extra=https://download.pytorch.org/whl/cpu
        fi ;;
    cuda) ;;
    *) echo "TORCH_VARIANT must be cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
"$(dirname "$0")/image_pip.sh" "$@" -c constraints.txt \
    ${extra:+--extra-index-url "$extra"} torch
# A +cpu wheel sorts above the plain version, so a CPU wheel in /wheels would win
# a cuda build: check what landed rather than trust the resolver.
version=$(python -c 'from importlib.metadata import version; print(version("torch"))')
case $variant:$version in
    cpu:*+cpu | cuda:*+cu* | cuda:[0-9]*[0-9]) echo "torch $version ($variant)" ;;
    *) echo "torch $version is not a $variant build" >&2; exit 1 ;;
esac
