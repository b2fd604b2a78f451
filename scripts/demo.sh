#!/usr/bin/env bash
# The main job on embedded defaults: set up, build Hearth, fetch the default
# model, import a folder of photos and notes into your library (the
# platform data directory, e.g. ~/.local/share/hearth, or $HEARTH_LIBRARY),
# show what is in it, personalize the default model on the notes for a few
# steps, and show the base model and the personalized one side by side.
#
#   scripts/demo.sh [FOLDER...]     (default: ../shared/data when present)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scripts/fetch-models.sh

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
echo
echo "== Personalizing the default model on your notes (a short run; Ctrl-C pauses)"
"$hearth" train text --steps "${HEARTH_DEMO_STEPS:-20}" --seq-len 128 --batch-size 2 --eval-every 10 --lr 5e-4
adapter=$("$hearth" adapters list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
echo
echo "== Before and after (sampled as people use it; the seed keeps both passes comparable)"
"$hearth" generate --adapter "$adapter" --compare --raw --max-tokens 60 \
    --temperature 0.7 --top-p 0.9 --repeat-penalty 1.1 --seed 42 "${HEARTH_DEMO_PROMPT:-ROMEO:
}"
