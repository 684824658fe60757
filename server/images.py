"""Image URLs and image objects, under the original CDN's key layout so first-generation
clients (which read the MBTI code from the position of letters in `hobbyType.imageUrl`) keep
working: ``images/hobby_type/{MBTI}.png`` (and ``.gif`` for the animated one),
``images/hobby/{key}.png``, ``images/question/question{n}.JPG``.

With `HOLLANG_IMAGE_BASE_URL` set (a CDN), URLs are absolute under it; unset, they are
paths on this service, which streams the object (local folder) or redirects to a presigned
URL (S3). URLs never depend on whether the object exists, so a missing image is a 404 for
that image and never breaks a JSON response.

The bundled catalogue ships a placeholder for each image its URLs name
(`db/catalog/images/`, drawn by tools/catalog_images.py), and `GET /images/...` answers
with it when the store has no object under that key (unless `HOLLANG_BUNDLED_IMAGES` is
off), so a fresh install shows a picture for every URL it hands out. An upload under the
same key takes precedence. Readiness lists the images that neither has (`missing_images`).

Uploads are checked against the layout (a name the URLs can point at) and by their first
bytes: the extension's format must be what the file really is. The three formats the
layout uses are told apart by their fixed signatures (PNG, GIF87a/89a, JPEG SOI), so no
decoder is needed to refuse a renamed or non-image file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from db.catalog import DEFAULT_CATALOG, Catalog
from storage.objectstore import ObjectStore

PREFIX = "images"
BUNDLED_DIR = DEFAULT_CATALOG.parent / "images"
# Keys are stable but an image may be replaced by a new upload: a day, not "immutable".
CACHE_CONTROL = "public, max-age=86400"
_NAMES = {
    # No leading dot: the stores never list dot files (`.hidden.png`, `..png`).
    "hobby": re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\.png"),
    "hobby_type": re.compile(r"[EI][NS][FT][JP]\.(png|gif)"),
    "question": re.compile(r"question[0-9]{1,3}\.JPG"),
}
_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg"}
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
KINDS = tuple(_NAMES)


class ImageError(ValueError):
    """An image that cannot be stored: unknown name, too large, or not what it claims."""


@dataclass(frozen=True)
class ImageUrls:
    base: str = ""

    @classmethod
    def from_setting(cls, base_url: str | None) -> ImageUrls:
        return cls((base_url or "").rstrip("/"))

    def hobby(self, image_key: str) -> str:
        return f"{self.base}/images/hobby/{image_key}.png" if image_key else ""

    def hobby_type(self, mbti_type: str) -> str:
        return f"{self.base}/images/hobby_type/{mbti_type}.png"

    def hobby_type_animated(self, mbti_type: str) -> str:
        return f"{self.base}/images/hobby_type/{mbti_type}.gif"

    def question(self, number: int) -> str:
        return f"{self.base}/images/question/question{number}.JPG"


def image_key(kind: str, name: str) -> str:
    """The object key of `kind`/`name`; `ImageError` unless the URL layout can name it."""
    pattern = _NAMES.get(kind)
    if pattern is None or not pattern.fullmatch(name):
        dot = " and must not start with a dot" if name.startswith(".") else ""
        raise ImageError(f"{kind}/{name} is not an image name of the layout ({layout()}){dot}")
    return f"{PREFIX}/{kind}/{name}"


def layout() -> str:
    return "hobby/<imageKey>.png, hobby_type/<MBTI>.png|.gif, question/question<n>.JPG"


def content_type_of(key: str) -> str:
    return _TYPES[Path(key).suffix.lower()]


def sniff(data: bytes) -> str | None:
    """The image type the bytes really are, or None."""
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    return None


def check_image(key: str, data: bytes, limit: int) -> str:
    """The Content-Type to store `data` with; `ImageError` if it must not be stored."""
    if len(data) > limit:
        raise ImageError(f"{key} is larger than {limit} bytes")
    expected = content_type_of(key)
    actual = sniff(data)
    if actual != expected:
        found = actual or "not an image"
        raise ImageError(f"{key} must be {expected}, but the file is {found}")
    return expected


def store_image(store: ObjectStore, key: str, data: bytes, limit: int) -> str:
    """Check and store one image with its Content-Type and Cache-Control."""
    content_type = check_image(key, data, limit)
    store.put(key, data, content_type=content_type, cache_control=CACHE_CONTROL)
    return content_type


def images_in(folder: Path) -> Iterator[tuple[Path, str | ImageError]]:
    """Every file under `folder` (laid out as `<kind>/<name>`) with its key or why not."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if len(relative) != 2:
            yield path, ImageError(f"{path} is not at <kind>/<name> ({layout()})")
            continue
        try:
            yield path, image_key(relative[0], relative[1])
        except ImageError as exc:
            yield path, exc


def bundled_image(key: str) -> Path | None:
    """The bundled catalogue's own picture for `key` (``images/<kind>/<name>``, already
    checked by `image_key`, so it cannot leave the folder), if it ships one."""
    path = BUNDLED_DIR / key.removeprefix(f"{PREFIX}/")
    return path if path.is_file() else None


@functools.cache
def bundled_keys() -> frozenset[str]:
    """Read once: the package's files do not change while it runs."""
    return frozenset(
        f"{PREFIX}/{path.relative_to(BUNDLED_DIR).as_posix()}"
        for path in BUNDLED_DIR.rglob("*")
        if path.is_file()
    )


def catalogue_image_keys(catalog: Catalog) -> set[str]:
    """The key of every image URL the catalogue's responses hand out now: active hobbies
    and hobby types, and the questions of every test version `/tests` serves."""
    keys = {
        image_key("hobby", f"{h.image_key}.png")
        for h in catalog.hobby_by_key.values()
        if h.image_key
    }
    for mbti in catalog.type_by_mbti:
        keys |= {image_key("hobby_type", f"{mbti}.png"), image_key("hobby_type", f"{mbti}.gif")}
    for test in catalog.tests.values():
        keys |= {image_key("question", f"question{q.number}.JPG") for q in test.questions}
    return keys


def missing_images(catalog: Catalog, store: ObjectStore, *, bundled: bool) -> list[str]:
    """The catalogue's image keys that neither the store nor (when `bundled`) the package
    holds: one listing of the store's ``images/`` prefix, not a request per image."""
    present = set(store.list(f"{PREFIX}/"))
    if bundled:
        present |= bundled_keys()
    return sorted(catalogue_image_keys(catalog) - present)
