#!/usr/bin/env bash
# The main job on embedded defaults: set up, build Hearth, import a folder of
# photos and notes into your library (the platform data directory, e.g.
# ~/.local/share/hearth, or $HEARTH_LIBRARY), and show what is in it.
#
#   scripts/demo.sh [FOLDER...]     (default: ../shared/data when present)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

folders=("$@")
if [ "${#folders[@]}" -eq 0 ]; then
    if [ -d ../shared/data ]; then
        folders=(../shared/data)
    else
        echo "usage: scripts/demo.sh FOLDER...   (a folder of your photos and notes)" >&2
        exit 2
    fi
fi

cargo build --release --locked -p hearth-cli
hearth=target/release/hearth

echo "== Importing ${folders[*]}"
"$hearth" import "${folders[@]}"
echo
echo "== Your library"
"$hearth" library list
echo
"$hearth" library stats
