"""The catalogue as the API serves it: built once per catalogue snapshot, kept in memory.

GET /tests is answered from bytes rendered when the snapshot was read, and the catalogue
parts of other responses (hobbies, hobby types, fit types) come from here, so no request
queries the catalogue tables. `CatalogCache` swaps in a new view when the database's active
catalogue changes (checked by a cheap poll of one id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from functools import cached_property
from typing import Any

from starlette.concurrency import run_in_threadpool

from db.catalog import Catalog, HobbyEntry, HobbyTypeEntry
from server.images import ImageUrls
from server.schemas import (
    AnswerOut,
    Envelope,
    FitHobbyTypeOut,
    HobbyOut,
    HobbyTypeOut,
    QuestionOut,
    SharedHobbyOut,
    TestData,
    TestOut,
)

log = logging.getLogger("hollang.catalog")


class CatalogView:
    def __init__(self, catalog: Catalog, images: ImageUrls) -> None:
        self.catalog = catalog
        self.images = images
        self._tests: dict[int, bytes] = {}

    def tests_body(self, version: int) -> bytes | None:
        """The whole GET /tests response body, rendered once per version."""
        if version not in self._tests:
            test = self.catalog.tests.get(version)
            if test is None:
                return None
            out = TestOut(
                id=test.id,
                version=test.version,
                questions=[
                    QuestionOut(
                        id=q.id,
                        number=q.number,
                        content=q.content,
                        image_url=self.images.question(q.number),
                        answers=[
                            AnswerOut(id=a.id, number=a.number, content=a.content)
                            for a in q.answers
                        ],
                    )
                    for q in test.questions
                ],
            )
            envelope = Envelope[TestData](message="Fetched the test.", data=TestData(test=out))
            self._tests[version] = envelope.model_dump_json(by_alias=True).encode()
        return self._tests[version]

    def hobby_type(self, type_id: int) -> HobbyTypeOut:
        return self._hobby_types[type_id]

    def fit_hobby_types(self, type_id: int) -> list[FitHobbyTypeOut]:
        return self._fits[type_id]

    def hobby(self, hobby_id: int, ranking: int) -> HobbyOut:
        return HobbyOut(**self._hobby_fields(self.catalog.hobbies[hobby_id]), ranking=ranking)

    def shared_hobby(self, hobby_id: int, ranking: int) -> SharedHobbyOut:
        fields = self._hobby_fields(self.catalog.hobbies[hobby_id])
        fields.pop("content_url")
        return SharedHobbyOut(**fields, ranking=ranking)

    def _hobby_fields(self, hobby: HobbyEntry) -> dict[str, Any]:
        return {
            "id": hobby.id,
            "original_name": hobby.key,
            "short_name": hobby.short_name,
            "name": hobby.short_name,
            "summary": hobby.summary,
            "description": hobby.description,
            "image_url": self.images.hobby(hobby.image_key),
            "content_url": hobby.content_url,
        }

    def _type_out(self, entry: HobbyTypeEntry) -> HobbyTypeOut:
        return HobbyTypeOut(
            id=entry.id,
            name=entry.name,
            description=entry.description,
            mbti_type=entry.mbti_type,
            image_url=self.images.hobby_type(entry.mbti_type),
            three_dimension_image_url=self.images.hobby_type_animated(entry.mbti_type),
        )

    @cached_property
    def _hobby_types(self) -> dict[int, HobbyTypeOut]:
        return {
            type_id: self._type_out(entry) for type_id, entry in self.catalog.hobby_types.items()
        }

    @cached_property
    def _fits(self) -> dict[int, list[FitHobbyTypeOut]]:
        fits = {}
        for type_id, entry in self.catalog.hobby_types.items():
            ranked = []
            for ranking, mbti in enumerate(entry.fit_mbti_types, start=1):
                fit = self.catalog.type_by_mbti.get(mbti)
                if fit is not None:
                    ranked.append(
                        FitHobbyTypeOut(**self._type_out(fit).model_dump(), ranking=ranking)
                    )
            fits[type_id] = ranked
        return fits


class CatalogCache:
    """Holds the current view; `refresh` re-reads only when the active catalogue changed."""

    def __init__(
        self,
        read_catalog: Callable[[], Catalog],
        active_id: Callable[[], int | None],
        images: ImageUrls,
    ) -> None:
        self._read = read_catalog
        self._active_id = active_id
        self._images = images
        self.view = CatalogView(read_catalog(), images)

    @property
    def catalog(self) -> Catalog:
        return self.view.catalog

    def covering(self, hobby_ids: Collection[int], hobby_type_id: int) -> CatalogView:
        """A view that knows these ids: rows written by a worker (or a `catalog load`) with a
        newer catalogue than this worker's snapshot trigger a refresh instead of a failure."""
        view = self.view
        if _covers(view, hobby_ids, hobby_type_id):
            return view
        self.refresh()
        return self.view

    async def view_covering(self, hobby_ids: Collection[int], hobby_type_id: int) -> CatalogView:
        """`covering` for an async route: the view in memory when it knows these ids, else
        the refresh on a thread, so the event loop never waits for the database."""
        view = self.view
        if _covers(view, hobby_ids, hobby_type_id):
            return view
        return await run_in_threadpool(self.covering, hobby_ids, hobby_type_id)

    def refresh(self) -> bool:
        """Blocking (database); returns True when a new catalogue was installed."""
        if self._active_id() == self.view.catalog.catalog_id:
            return False
        self.view = CatalogView(self._read(), self._images)
        log.info("catalogue %s installed", self.view.catalog.version)
        return True


def _covers(view: CatalogView, hobby_ids: Collection[int], hobby_type_id: int) -> bool:
    catalog = view.catalog
    return hobby_type_id in catalog.hobby_types and all(i in catalog.hobbies for i in hobby_ids)
