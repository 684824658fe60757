"""Two real `hollang serve` replicas on one store and one database: `hollang model shadow`
reaches both at their next poll, each scores its own live requests with the candidate and
says so in GET /admin/model and /metrics; activating the candidate ends the shadow, and
the replaced version's series leave every scrape (multiprocess metrics files included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from cli.main import main
from model.modelfile import ModelFile
from tests.helpers import serve_process, submission
from tests.s3support import BUNDLED, StoreUnderTest, model_bytes, wait_for
from tests.server.scrape import key, parse

POLL = 1.0
SLACK = 3.0  # fetch + full validation in the sandbox, on a busy 2-core machine
TOKEN = "replica-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS = 5


def status(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/model", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def samples(url: str) -> dict[Any, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def cli(env: dict[str, str], *args: str) -> None:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output


def test_a_shadow_reaches_every_replica_and_ends_when_promoted(
    store_and_database: tuple[StoreUnderTest, str], tmp_path: Path
) -> None:
    objects, database_url = store_and_database
    env = {
        **objects.env,
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_MODEL_POLL_INTERVAL": str(POLL),
        "HOLLANG_ADMIN_TOKEN": TOKEN,
        "TMPDIR": str(tmp_path),  # each `hollang serve` makes its metrics directory here
    }
    initial = ModelFile.read(BUNDLED).metadata.model_version
    candidate = tmp_path / "replica-candidate.onnx"
    candidate.write_bytes(model_bytes("replica-candidate", seed=41))
    with (
        serve_process(env, log_path=tmp_path / "a.log") as first,
        serve_process(env, log_path=tmp_path / "b.log") as second,
    ):
        replicas = (first, second)
        cli(env, "model", "publish", str(candidate))
        cli(env, "model", "shadow", "replica-candidate")

        def shadowing() -> bool:
            return all(
                (status(url)["shadow"] or {}).get("model", {}).get("modelVersion")
                == "replica-candidate"
                for url in replicas
            )

        wait_for(shadowing, 2 * POLL + SLACK, "both replicas to score the candidate")
        for index, url in enumerate(replicas):
            for request in range(REQUESTS):
                response = httpx.post(
                    f"{url}/test-responses", json=submission(f"r{index}{request}"), timeout=10
                )
                assert response.status_code == 200, response.text
            assert status(url)["active"]["modelVersion"] == initial  # never served
        for url in replicas:
            live = wait_for(
                lambda url=url: (
                    (live := status(url)["shadow"]["live"])["rows"] >= REQUESTS and live
                ),
                10,
                "the shadow to score each request",
            )
            assert live["rows"] == REQUESTS and live["comparedWith"] == initial
            assert live["failedRows"] == 0
            scraped = samples(url)
            rows = key("hollang_shadow_rows_total", shadow="replica-candidate", active=initial)
            assert scraped[rows] == REQUESTS
            assert scraped[key("hollang_model_shadow", version="replica-candidate")] == 1
            assert scraped[key("hollang_model_predictions_total", version=initial)] == REQUESTS
            assert status(url)["lastError"] is None

        cli(env, "model", "activate", "replica-candidate")

        def promoted() -> bool:
            return all(
                status(url)["active"]["modelVersion"] == "replica-candidate"
                and status(url)["shadow"] is None
                for url in replicas
            )

        wait_for(promoted, 2 * POLL + SLACK, "both replicas to serve the candidate, no shadow")
        for url in replicas:
            scraped = wait_for(
                lambda url=url: (
                    (s := samples(url)).get(
                        key("hollang_model_active", version="replica-candidate")
                    )
                    and s
                ),
                5,
                "the sampler to mark the new version",
            )
            shown = {value for _, labels in scraped for value in dict(labels).values()}
            assert initial not in shown, "the replaced version's series are still shown"
            assert not any(name.startswith("hollang_shadow_") for name, _ in scraped)
            assert scraped[key("hollang_model_swaps_total")] == 2  # start-up, then the swap
