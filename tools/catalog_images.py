"""Draw the bundled catalogue's placeholder images: `make catalog-images`.

Every image URL the service hands out for `db/catalog/default.json` names one of these
(`images/hobby/<imageKey>.png`, `images/hobby_type/<MBTI>.png` and `.gif`,
`images/question/question<n>.JPG`), so a fresh install answers each with a picture instead
of a 404. They are ours: a colour from the name's hash and the name in Pillow's own font.
The names drawn are the catalogue's ASCII ones (image key, MBTI code, question number):
Pillow's bundled font has no Hangul, and a system CJK font would make the output depend
on the machine.

Drawn here and committed, not at install or start-up: Pillow is a dev dependency only, so
the service and its image never need it. The output is the same bytes for the same Pillow
release (no timestamps or random state); `--check` says whether the committed files are
what this draws, and tests/server/routes/test_images.py checks that a fresh install serves
one for every URL.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "db" / "catalog" / "default.json"
OUT = ROOT / "db" / "catalog" / "images"
SIZE = (320, 200)


def colour(name: str) -> tuple[int, int, int]:
    """A soft colour that is a pure function of the name."""
    digest = hashlib.sha256(name.encode()).digest()
    return (128 + digest[0] // 2, 128 + digest[1] // 2, 128 + digest[2] // 2)


def card(name: str, caption: str, background: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", SIZE, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((6, 6, SIZE[0] - 7, SIZE[1] - 7), outline=(255, 255, 255), width=3)
    title = ImageFont.load_default(size=34 if len(name) <= 12 else 24)
    small = ImageFont.load_default(size=16)
    middle = (SIZE[0] // 2, SIZE[1] // 2 - 8)
    draw.text(middle, name, fill=(30, 30, 30), font=title, anchor="mm")
    draw.text((SIZE[0] // 2, SIZE[1] - 28), caption, fill=(60, 60, 60), font=small, anchor="mm")
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.quantize(colors=32).save(out, format="PNG", optimize=True)
    return out.getvalue()


def gif(frames: list[Image.Image]) -> bytes:
    out = io.BytesIO()
    first, *rest = [frame.quantize(colors=32) for frame in frames]
    first.save(out, format="GIF", save_all=True, append_images=rest, duration=600, loop=0)
    return out.getvalue()


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def draw_all(catalog: dict[str, Any]) -> dict[str, bytes]:
    """`<kind>/<name>` -> bytes, for every image the catalogue's URLs name."""
    files: dict[str, bytes] = {}
    for hobby in catalog["hobbies"]:
        key = hobby["imageKey"]
        if key:
            files[f"hobby/{key}.png"] = png(card(key, "Hollang hobby", colour(key)))
    for entry in catalog["hobbyTypes"]:
        mbti = entry["mbtiType"]
        base = colour(mbti)
        files[f"hobby_type/{mbti}.png"] = png(card(mbti, "Hollang hobby type", base))
        darker = (max(0, base[0] - 40), max(0, base[1] - 40), max(0, base[2] - 40))
        frames = [card(mbti, "Hollang hobby type", shade) for shade in (base, darker)]
        files[f"hobby_type/{mbti}.gif"] = gif(frames)
    for question in catalog["test"]["questions"]:
        name = f"question{question['number']}"
        files[f"question/{name}.JPG"] = jpeg(card(name, "Hollang test", colour(name)))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    files = draw_all(json.loads(CATALOG.read_text()))
    present = {str(p.relative_to(OUT)) for p in OUT.rglob("*") if p.is_file()}
    if args.check:
        stale = sorted(
            k
            for k, data in files.items()
            if not (OUT / k).is_file() or (OUT / k).read_bytes() != data
        )
        extra = sorted(present - set(files))
        for name in stale:
            print(f"differs or missing: {name}", file=sys.stderr)
        for name in extra:
            print(f"not drawn for the catalogue: {name}", file=sys.stderr)
        return 1 if stale or extra else 0
    for name in present - set(files):
        (OUT / name).unlink()
    for name, data in files.items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    total = sum(len(data) for data in files.values())
    print(f"{len(files)} images, {total} bytes, in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
