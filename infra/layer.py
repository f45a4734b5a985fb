"""Build the Lambda dependency layer from the lock file, for the Lambda platform, without Docker.

What the layer holds: the lock file's `runtime` group (pyproject.toml) with everything it pulls in, at the
locked versions: Powertools and the AWS X-Ray SDK its tracer uses, pydantic, starlette and uvicorn (the chat
app under the web adapter), and boto3 with botocore, s3transfer, jmespath, urllib3 and python-dateutil.

Why boto3 and botocore, when the Lambda Python runtime ships its own: the runtime's copy is whichever version
Lambda last installed, usually older than the lock's, and Lambda replaces it on its own schedule, without a
deploy. The functions and their tests are written against the locked botocore's service models: the chat
function sends Converse's and ConverseStream's `serviceTier` and reads the tier that served the request, members
a botocore from before Bedrock's service tiers (late 2025) rejects as an unknown parameter before any call.
botocore validates every request the tests make against the locked models (and tests/infra/test_layer.py checks
those members are there). The layer's `/opt/python` comes before the runtime's own packages on `sys.path`, so
the locked SDK is the one imported: what is tested is what runs. Leaving boto3 out of the group would not leave
the runtime's SDK alone either: the X-Ray SDK requires botocore, which would then pair the locked botocore with
the runtime's boto3. The price: botocore is ≈ 30 MB of the layer's ≈ 50 MB unzipped (Lambda allows 250 MB for a
function and its layers).
"""

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
