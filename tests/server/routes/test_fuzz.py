"""Schemathesis fuzzes every operation of our own OpenAPI document against a real server
and a real database (both backends): no 5xx, and every response conforms to the schema
(status documented, body valid against its model, content type and headers as declared).

The budget is fixed and generation derandomized, so a CI run is repeatable: `MAX_EXAMPLES`
per operation, positive and negative data. The last test checks that every operation of
the document was fuzzed with both, and prints the number of cases.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from server.app import create_app
from server.settings import Settings
from tests.helpers import RunningService

MAX_EXAMPLES = 60
ADMIN_TOKEN = "test-admin-token"  # the conftest service's
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CASES: Counter[tuple[str, str, str]] = Counter()  # (backend, operation, mode) -> cases
# "Schema-valid data is accepted" assumes the schema states every rule. Ours can't: each
# question answered exactly once, a name that is not blank after trimming. Those rules are
# in the descriptions, and their 400s are documented; every other check runs.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


def our_schema() -> dict[str, Any]:
    """The document the test servers serve: the same app, with the admin API enabled.
    (Built here because the cases are generated at collection, before servers start.)"""
    settings = Settings(admin_token=ADMIN_TOKEN, cors_origins=["https://hollang.example"])
    return create_app(settings).openapi()


schema = schemathesis.openapi.from_dict(our_schema())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, service: RunningService) -> None:
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    CASES[(service.db.backend, case.operation.label, mode)] += 1
    case.call_and_validate(base_url=service.url, headers=ADMIN, excluded_checks=EXCLUDED)


def test_every_operation_was_fuzzed_with_good_and_bad_data() -> None:
    """Runs after the fuzz (file order); prints the case counts the README records."""
    if not CASES:
        pytest.skip("the fuzz itself did not run in this session")
    operations = {
        f"{method.upper()} {path}"
        for path, item in our_schema()["paths"].items()
        for method in item
    }
    for backend in sorted({backend for backend, _, _ in CASES}):
        fuzzed = {label for b, label, _ in CASES if b == backend}
        assert fuzzed == operations, operations ^ fuzzed
        modes = {mode for b, _, mode in CASES if b == backend}
        assert {"positive", "negative"} <= modes
        total = sum(n for (b, _, _), n in CASES.items() if b == backend)
        print(f"\nschemathesis on {backend}: {total} cases over {len(operations)} operations")
