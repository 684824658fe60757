"""A stand-in for the CodeDeploy agent: run appspec.yml's hooks the way the agent does.

It reads the hooks from the revision's appspec.yml (so the test exercises the real file),
runs each script with bash as the hook's `runas` user (here: `nobody`, when the tests run as
root; the current user otherwise), with the agent's environment variables and the hook's
timeout, in lifecycle order.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The in-place lifecycle events that run scripts, in the order the agent runs them.
LIFECYCLE = (
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)
AS_ROOT = os.geteuid() == 0
RUNAS = "nobody"


@dataclass
class HookResult:
    event: str
    returncode: int
    output: str


def systemd_file_limit() -> None:
    """The agent's hooks start with systemd's default soft open-file limit, 1024."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@dataclass
class Instance:
    """One "instance": an unpacked revision, a deploy home and its config file."""

    root: Path
    archive: Path
    home: Path
    config: Path
    settings: dict[str, str] = field(default_factory=dict)
    deployment_id: str = "d-TEST00001"

    def configure(self, **settings: str) -> None:
        """Write the instance config (/etc/hollang/hollang.env on a real instance)."""
        self.settings = settings
        lines = [f"{key}={value}" for key, value in settings.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o644)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings['HOLLANG_PORT']}"

    @property
    def log(self) -> Path:
        return self.home / "log" / "hollang.log"

    def hook(
        self, event: str, *, timeout: float | None = None, as_root: bool = False
    ) -> HookResult:
        """Run the script(s) appspec.yml names for `event`; the first failure stops."""
        appspec = yaml.safe_load((self.archive / "appspec.yml").read_text())
        output = []
        for entry in appspec["hooks"].get(event, []):
            script = self.archive / entry["location"]
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(self.home),
                "LANG": "C.UTF-8",
                "HOLLANG_DEPLOY_CONFIG": str(self.config),
                "LIFECYCLE_EVENT": event,
                "DEPLOYMENT_ID": self.deployment_id,
                "APPLICATION_NAME": "hollang",
                "DEPLOYMENT_GROUP_NAME": "hollang-test",
            }
            command = ["bash", str(script)]
            if AS_ROOT and not as_root:
                assert entry["runas"] == "hollang", entry
                command = ["runuser", "-u", RUNAS, "--", *command]
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout or entry["timeout"],
                check=False,
                preexec_fn=systemd_file_limit,
            )
            output.append(done.stdout + done.stderr)
            if done.returncode != 0:
                return HookResult(event, done.returncode, "".join(output))
        return HookResult(event, 0, "".join(output))

    def deploy(self) -> list[HookResult]:
        """A whole in-place deployment; stops at the first failing hook, like the agent."""
        results = []
        for event in LIFECYCLE:
            result = self.hook(event)
            results.append(result)
            if result.returncode != 0:
                break
        return results


def build_revision(target: Path) -> None:
    """The revision exactly as CI ships it: deploy/ci/make-bundle.sh, then unpacked."""
    bundle = target.parent / "revision.tar.gz"
    subprocess.run(
        ["bash", str(ROOT / "deploy/ci/make-bundle.sh"), str(bundle)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    target.mkdir(parents=True)
    with tarfile.open(bundle) as archive:
        archive.extractall(target, filter="tar")
    bundle.unlink()


@contextmanager
def instance() -> Iterator[Instance]:
    """A temporary instance the runas user can use (pytest's tmp dirs are private)."""
    root = Path(tempfile.mkdtemp(prefix=f"hollang-deploy-{secrets.token_hex(3)}-"))
    root.chmod(0o755)
    archive, home = root / "archive", root / "home"
    build_revision(archive)
    home.mkdir()
    if AS_ROOT:
        shutil.chown(home, RUNAS)
    try:
        yield Instance(root, archive, home, root / "hollang.env")
    finally:
        _kill_leftover(home / "run" / "hollang.pid")
        shutil.rmtree(root, ignore_errors=True)


def _kill_leftover(pid_file: Path) -> None:
    """A test that failed midway may leave the service up: end its whole process group."""
    with suppress(OSError, ValueError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
