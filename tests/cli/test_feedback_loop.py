"""The ML engineer's loop, end to end, on the original catalogue and the converted original
model: serve it, collect surveys in which one hobby is always rated 1 and another always 5,
export, `train --base active`, `evaluate`, publish and activate the result, and see the
service answer with it. On SQLite with a local object folder, and on MariaDB with S3 (moto).

What must hold: the disliked hobby is in fewer top 3s than before, the liked one in more,
the answers for inputs where neither was involved stay (mostly) the same, and the held-out
pairwise accuracy goes up, as measured by both `train` and `evaluate`.
"""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from model.evaluation import model_logits, top3
from model.modelfile import ModelFile
from model.scoring import all_score_inputs
from tests.helpers import (
    SHARED,
    RunningService,
    answers_for,
    owner,
    start_service,
)
from tests.s3support import StoreUnderTest, wait_for
from tests.server.scrape import delta, key, reached, scrape
from tests.server.scrape import wait_for as scrape_until

pytest.importorskip("torch", reason="converting the original model needs the torch extra")

DISLIKED = 17  # the original's most frequent top-3 hobby (111 of 256 inputs)
LIKED = 11  # one of its rarest (7 inputs)
RESPONSES_PER_INPUT = 3


def serves(service: RunningService, version: str) -> bool:
    with service.client() as client:
        answer = client.post("/predict", json={"testResponseDetails": answers_for([0, 0, 0, 0])})
        return bool(answer.json()["data"]["modelVersion"] == version)


def cli(env: dict[str, str], *args: str, expect: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


@pytest.mark.torch
def test_feedback_loop_on_the_original(
    store_and_database: tuple[StoreUnderTest, str], tmp_path: Path
) -> None:
    objects, database_url = store_and_database
    env = {**objects.env, "HOLLANG_DATABASE_URL": database_url}
    original = tmp_path / "original.onnx"
    cli(env, "model", "import-torch", "--state-dict", str(SHARED / "model.pt"),
        "--labels", str(SHARED / "num2content.json"), "-o", str(original))  # fmt: skip
    cli(env, "catalog", "load", str(SHARED / "catalog.json"))
    cli(env, "model", "publish", str(original), "--activate")
    base = ModelFile.read(original)
    labels = base.metadata.labels
    disliked, liked = labels[DISLIKED], labels[LIKED]
    base_top3 = top3(model_logits(base))

    # 1. Submissions and surveys: the disliked hobby always gets 1, the liked one 5, the
    #    rest 2..4 at random (seeded); a third of the other hobbies go unrated.
    rng = random.Random(16)
    inputs = all_score_inputs().astype(int).tolist()
    for service in start_service(objects.settings(database_url)):
        with service.client() as client:
            for scores in inputs * RESPONSES_PER_INPUT:
                created = client.post(
                    "/test-responses",
                    json={"user": {"name": "피드백"}, "testResponseDetails": answers_for(scores)},
                )
                assert created.status_code == 200, created.text
                data = created.json()["data"]
                shown = client.get(f"/recommendations/{data['recommendation']['id']}").json()
                recommendation = shown["data"]["recommendation"]
                assert recommendation["modelVersion"] == base.metadata.model_version
                ratings = []
                for hobby in recommendation["hobbies"]:
                    name = hobby["originalName"]
                    if name == disliked:
                        ratings.append({"id": hobby["id"], "satisfaction": 1})
                    elif name == liked:
                        ratings.append({"id": hobby["id"], "satisfaction": 5})
                    elif rng.random() < 2 / 3:
                        ratings.append({"id": hobby["id"], "satisfaction": rng.randint(2, 4)})
                if not ratings:
                    continue
                answered = client.post(
                    f"/recommendations/{recommendation['id']}/surveys",
                    json={"survey": {"hobbies": ratings}},
                    headers=owner(data),
                )
                assert answered.status_code == 200, answered.text

        # 2. Export, fetch, train on the active model.
        cli(env, "export", "--since", "2000-01-01", "--key", "exports/feedback.jsonl.gz")
        export = tmp_path / "feedback.jsonl.gz"
        cli(env, "objects", "get", "exports/feedback.jsonl.gz", "-o", str(export))
        refined = tmp_path / "refined.onnx"
        trained = json.loads(
            cli(
                env,
                "model",
                "train",
                "--base",
                "active",
                "--export",
                str(export),
                "-o",
                str(refined),
            ).stdout
        )
        assert trained["rowsRead"] == 256 * RESPONSES_PER_INPUT
        assert trained["base"]["modelVersion"] == base.metadata.model_version
        assert trained["ratingsUsed"] > 0 and trained["heldOutRatings"] > 0
        held_out = trained["heldOut"]
        assert held_out["result"]["pairwiseAccuracy"] > held_out["base"]["pairwiseAccuracy"]

        # 3. Evaluate against the active model; the gate passes.
        evaluated = json.loads(
            cli(
                env,
                "model",
                "evaluate",
                str(refined),
                "--against",
                "active",
                "--export",
                str(export),
                "--require-better",
            ).stdout
        )
        ours, theirs = evaluated["candidate"], evaluated["against"]
        assert ours["pairwiseAccuracy"] == held_out["result"]["pairwiseAccuracy"]
        assert ours["pairwiseAccuracy"] > theirs["pairwiseAccuracy"]
        assert ours["top3Counts"][disliked] < theirs["top3Counts"][disliked]
        assert ours["top3Counts"][liked] > theirs["top3Counts"][liked]

        # 4. Shadow scoring: the published candidate scores live traffic beside the active
        #    model without being served; over every input once, its live agreement is
        #    what `evaluate` computed offline.
        version = trained["modelVersion"]
        cli(env, "model", "publish", str(refined))
        cli(env, "model", "shadow", version)
        live = {"shadow": version, "active": base.metadata.model_version}
        rows = key("hollang_shadow_rows_total", **live)
        with service.client() as client:
            marked = key("hollang_model_shadow", version=version)
            assert scrape_until(client, reached({}, {marked: 1}))[marked] == 1
            before = scrape(client)
            for scores in inputs:
                answer = client.post("/predict", json={"testResponseDetails": answers_for(scores)})
                assert answer.json()["data"]["modelVersion"] == base.metadata.model_version
            after = scrape_until(client, reached(before, {rows: 256}))
        assert delta(after, before, rows) == 256
        top1 = delta(after, before, key("hollang_shadow_top1_agreements_total", **live))
        top3_same = delta(after, before, key("hollang_shadow_top3_agreements_total", **live))
        assert top1 / 256 == pytest.approx(evaluated["top1Agreement"], abs=5e-5)  # 4 places
        assert top3_same / 256 == pytest.approx(evaluated["top3Agreement"], abs=5e-5)

        # 5. Publish and activate, gated on the same held-out feedback.
        published = json.loads(
            cli(
                env,
                "model",
                "publish",
                str(refined),
                "--activate",
                "--require-better",
                "--export",
                str(export),
            ).stdout
        )
        assert published["active"]["version"] == version
        assert published["evaluation"]["better"] is True

        # The gate works the other way too: the original is no longer better than the active.
        again = ["model", "publish", str(original), "--require-better", "--export", str(export)]
        refused = cli(env, *again, expect=1)
        assert f"not better than the active model {version}" in refused.output

        # The service picks the new active model up on its next poll and serves it.
        wait_for(partial(serves, service, version), 30, "the service to serve the refined model")

    # 6. What changed, over all 256 inputs.
    result_top3 = top3(model_logits(ModelFile.read(refined)))
    count = {name: int((result_top3 == i).sum()) for i, name in enumerate(labels)}
    before = {name: int((base_top3 == i).sum()) for i, name in enumerate(labels)}
    assert count[disliked] < before[disliked]
    assert count[liked] > before[liked]
    untouched = [
        cell for cell in range(256) if not {DISLIKED, LIKED} & set(base_top3[cell].tolist())
    ]
    same = np.mean([set(result_top3[c]) == set(base_top3[c]) for c in untouched])
    assert len(untouched) > 100 and same >= 0.8
    print(json.dumps({  # the numbers docs/ml-workflow.md quotes
        "disliked": [before[disliked], count[disliked]], "liked": [before[liked], count[liked]],
        "untouchedInputs": len(untouched), "untouchedSameTop3": round(float(same), 4),
        "pairwise": [theirs["pairwiseAccuracy"], ours["pairwiseAccuracy"]],
        "expected": [theirs["expectedTop3Satisfaction"], ours["expectedTop3Satisfaction"]],
        "coverage": [theirs["top3Coverage"], ours["top3Coverage"]],
        "ratingsUsed": trained["ratingsUsed"], "heldOutRatings": trained["heldOutRatings"],
        "top1": evaluated["top1Agreement"], "top3": evaluated["top3Agreement"],
        "positionWeights": trained["positionWeights"], "version": version,
    }, ensure_ascii=False))  # fmt: skip
