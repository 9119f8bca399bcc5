#!/usr/bin/env bash
# Speed and memory as a user meets them: whole commands, timed end to end (docs/BENCHMARKS.md).
#
#   scripts/speed_as_used.sh [WORK_DIR]        (default runs/speed; needs ../shared/data and `make install`)
#   MODEL=runs/x/model.safetensors scripts/speed_as_used.sh   (another model than the embedded default)
#
# Against a plain OpenCV non-local-means script that reads, denoises and writes the same files
# (scripts/nlm_folder.py), in the same run, on real-noise JPEGs made from the DND crops
# (scripts/speed_photos.py): a folder of four 2 MP photos, one 2 MP photo, and one 50 MP photo for the
# process's peak resident memory (/usr/bin/time -v's "Maximum resident set size"). Then the slow modes
# on the one photo and `bsgd --help`. Prints a Markdown table; nothing else may run on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/speed}
PY=.venv/bin/python
BSGD=.venv/bin/bsgd
MODEL_ARGS=()
[ -z "${MODEL:-}" ] || MODEL_ARGS=(--model "$MODEL")
mkdir -p "$WORK"

[ -d "$WORK/four" ] || $PY scripts/speed_photos.py --out "$WORK/four" --count 4 --megapixels 2
[ -d "$WORK/one" ] || { mkdir -p "$WORK/one"; cp "$WORK/four/photo_00.jpg" "$WORK/one/"; }
[ -d "$WORK/big" ] || $PY scripts/speed_photos.py --out "$WORK/big" --count 1 --megapixels 50

megapixels() {  # total megapixels of the JPEGs in folder $1
    $PY -c "import sys,pathlib; from PIL import Image; print(sum(Image.open(p).size[0]*Image.open(p).size[1] for p in pathlib.Path(sys.argv[1]).glob('*.jpg'))/1e6)" "$1"
}

# run NAME FOLDER_MP COMMAND...: wall seconds and peak RSS of the whole command, one table row
run() {
    local name=$1 mp=$2; shift 2
    rm -rf "$WORK/out"
    /usr/bin/time -v -o "$WORK/time.txt" "$@" > "$WORK/log.txt" 2>&1 || { cat "$WORK/log.txt"; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$WORK/time.txt")
    printf '| %s | %.1f | %.3f | %s |\n' "$name" "$wall" "$(echo "$mp / $wall" | bc -l)" "$rss"
    echo "$name $wall" >> "$WORK/walls.txt"
}

rm -f "$WORK/walls.txt"
FOUR=$(megapixels "$WORK/four"); ONE=$(megapixels "$WORK/one"); BIG=$(megapixels "$WORK/big")
echo "| command | wall s | MP/s | peak RSS MB |"
echo "|---|---|---|---|"
run "nlm script, four 2 MP photos" "$FOUR" $PY scripts/nlm_folder.py "$WORK/four" "$WORK/out"
run "bsgd denoise (fast), four 2 MP photos" "$FOUR" $BSGD denoise "$WORK/four" -o "$WORK/out" -q "${MODEL_ARGS[@]}"
run "nlm script, one 2 MP photo" "$ONE" $PY scripts/nlm_folder.py "$WORK/one" "$WORK/out"
run "bsgd denoise (fast), one 2 MP photo" "$ONE" $BSGD denoise "$WORK/one" -o "$WORK/out" -q "${MODEL_ARGS[@]}"
for mode in bsn bsgd bsn-r3; do
    run "bsgd denoise --mode $mode, one 2 MP photo" "$ONE" $BSGD denoise "$WORK/one" -o "$WORK/out" -q --mode "$mode" "${MODEL_ARGS[@]}"
done
run "bsgd denoise (fast), one 50 MP photo" "$BIG" $BSGD denoise "$WORK/big" -o "$WORK/out" -q "${MODEL_ARGS[@]}"
run "bsgd denoise --mode bsn, one 50 MP photo" "$BIG" $BSGD denoise "$WORK/big" -o "$WORK/out" -q --mode bsn "${MODEL_ARGS[@]}"
run "bsgd --help" 0 $BSGD --help
run "bsgd denoise --help" 0 $BSGD denoise --help
awk '/^nlm script, four/ {n4=$NF} /^bsgd denoise \(fast\), four/ {b4=$NF} /^nlm script, one/ {n1=$NF}
     /^bsgd denoise \(fast\), one 2/ {b1=$NF}
     END {printf "\nthroughput against the nlm script: four photos %.2fx, one photo %.2fx\n", n4/b4, n1/b1}' \
    "$WORK/walls.txt"
