"""The yardstick of scripts/speed_as_used.sh: a plain OpenCV script that denoises a folder of photos.

Reads every JPEG/PNG of IN_DIR, runs OpenCV's coloured non-local means (7x7 patches, 21x21 search,
filter strength 5 on 0-255; its time does not depend on the strength) and writes the result under
OUT_DIR with the same name: what a user would write in ten lines, OpenCV's threads left at its default.

    python scripts/nlm_folder.py IN_DIR OUT_DIR
"""

import sys
from pathlib import Path

import cv2


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        denoised = cv2.fastNlMeansDenoisingColored(image, None, 5, 5, 7, 21)
        cv2.imwrite(str(target / path.name), denoised, [cv2.IMWRITE_JPEG_QUALITY, 95])


if __name__ == "__main__":
    main()
