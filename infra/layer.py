"""Build the Lambda dependency layer from the lock file, for the Lambda platform, without Docker."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from infra import bytecode

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = ROOT / "uv.lock"
BUILD_DIR = ROOT / ".build"

# Must match the Lambda factory: arm64 (Graviton); the runtime's Python is bytecode.LAMBDA_PYTHON.
LAMBDA_PLATFORM = "aarch64-manylinux2014"


def layer_key(interpreter: bytecode.Interpreter | None) -> str:
    """The build's cache key: the lock file, the runtime's Python and platform, and the bytecode (if compiled).

    Without bytecode the key is what it was before layers were compiled, so existing builds stay valid.
    """
    identity = f"{bytecode.LAMBDA_PYTHON}/{LAMBDA_PLATFORM}"
    if interpreter is not None:
        identity += f"/bytecode:{interpreter.key}"
    return hashlib.sha256(LOCK_FILE.read_bytes() + identity.encode()).hexdigest()[:16]


def dependency_layer_dir() -> Path:
    """Return a folder holding `python/` with the runtime group's exact locked versions, building it once.

    With an interpreter of the runtime's version (bytecode.lambda_interpreter), `python/` also holds its bytecode.
    """
    interpreter = bytecode.lambda_interpreter()
    digest = layer_key(interpreter)
    target = BUILD_DIR / f"layer-{digest}"
    if (target / "python").is_dir():
        return target
    # `uv run` tells its children where uv is; otherwise look on PATH.
    uv = bytecode.uv_executable()
    if uv is None:
        raise RuntimeError("building the dependency layer needs uv on PATH (pip install uv)")
    staging = BUILD_DIR / f"staging-{digest}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    install_runtime_group(uv, staging / "python")
    for cache in (staging / "python").rglob("__pycache__"):
        shutil.rmtree(cache)
    if interpreter is not None:
        errors = interpreter.compile(staging / "python", runtime_root=bytecode.LAYER_PYTHON_ROOT)
        if errors:
            # Those few modules compile at import, as every module did before; the rest keep their bytecode.
            bytecode.report_to_stderr(
                f"the dependency layer's bytecode is incomplete (Python {interpreter.version}):\n" + "\n".join(errors)
            )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def install_runtime_group(uv: str, python_dir: Path) -> None:
    """Install the lock file's runtime group into `python_dir`: wheels only, for the Lambda platform and Python."""
    requirements = python_dir.parent / "requirements.txt"
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
        bytecode.LAMBDA_PYTHON,
        "--target",
        str(python_dir),
        "-r",
        str(requirements),
    )
    requirements.unlink()


def _run(*command: str) -> None:
    subprocess.run(command, check=True, cwd=ROOT)  # noqa: S603 - fixed argv, no shell
