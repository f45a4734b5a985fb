"""Build the Lambda dependency layer from the lock file, for the Lambda platform, without Docker."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = ROOT / "uv.lock"
BUILD_DIR = ROOT / ".build"

# Must match the Lambda factory: the runtime's Python and arm64 (Graviton).
LAMBDA_PYTHON = "3.14"
LAMBDA_PLATFORM = "aarch64-manylinux2014"


def dependency_layer_dir() -> Path:
    """Return a folder holding `python/` with the runtime group's exact locked versions, building it once."""
    digest = hashlib.sha256(LOCK_FILE.read_bytes() + f"{LAMBDA_PYTHON}/{LAMBDA_PLATFORM}".encode()).hexdigest()[:16]
    target = BUILD_DIR / f"layer-{digest}"
    if (target / "python").is_dir():
        return target
    # `uv run` tells its children where uv is; otherwise look on PATH.
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise RuntimeError("building the dependency layer needs uv on PATH (pip install uv)")
    staging = BUILD_DIR / f"staging-{digest}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    requirements = staging / "requirements.txt"
    _run(
        uv,
        "export",
        "--frozen",
        "--only-group",
        "runtime",
        "--no-hashes",
        "--no-emit-project",
        "--quiet",
        "-o",
        str(requirements),
    )
    # Wheels only, for the Lambda platform and Python: what is tested locally is what is deployed.
    _run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--python-platform",
        LAMBDA_PLATFORM,
        "--python-version",
        LAMBDA_PYTHON,
        "--target",
        str(staging / "python"),
        "-r",
        str(requirements),
    )
    requirements.unlink()
    for cache in (staging / "python").rglob("__pycache__"):
        shutil.rmtree(cache)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _run(*command: str) -> None:
    subprocess.run(command, check=True, cwd=ROOT)  # noqa: S603 - fixed argv, no shell
