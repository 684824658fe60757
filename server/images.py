"""Image URLs, built under the original CDN's key layout so first-generation clients (which
read the MBTI code from the position of letters in `hobbyType.imageUrl`) keep working:
``images/hobby_type/{MBTI}.png`` (and ``.gif`` for the animated one),
``images/hobby/{key}.png``, ``images/question/question{n}.JPG``.

With `HOLLANG_IMAGE_BASE_URL` set (a CDN), URLs are absolute under it; unset, they are
paths on this service.
"""

from __future__ import annotations

from dataclasses import dataclass


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
