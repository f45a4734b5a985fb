"""The dependency layer: it ships the SDK the tests run against, and its build folder is never linted."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import botocore.session
from botocore.model import StructureShape
from packaging.requirements import Requirement

from infra import layer

PYPROJECT = tomllib.loads((layer.ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _locked_version(name: str) -> str:
    lock = tomllib.loads(layer.LOCK_FILE.read_text(encoding="utf-8"))
    (version,) = [package["version"] for package in lock["package"] if package["name"] == name]
    return str(version)


def test_the_layer_ships_the_sdk_the_tests_run_against() -> None:
    """boto3 is pinned in the runtime group, and the botocore here is the locked one the layer ships."""
    runtime = {Requirement(line).name: Requirement(line) for line in PYPROJECT["dependency-groups"]["runtime"]}
    assert str(runtime["boto3"].specifier) == f"=={importlib.metadata.version('boto3')}"
    assert importlib.metadata.version("botocore") == _locked_version("botocore")
    # What the chat function sends and reads, which the runtime's own (older) botocore may not know.
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    for shape_name in ("ConverseRequest", "ConverseStreamRequest", "ConverseResponse"):
        shape = model.shape_for(shape_name)
        assert isinstance(shape, StructureShape)
        assert "serviceTier" in shape.members, shape_name


def test_build_outputs_are_excluded_from_lint(tmp_path: Path) -> None:
    """Outside a git checkout ruff reads no .gitignore: pyproject itself excludes the layer build and cdk.out."""
    excluded = PYPROJECT["tool"]["ruff"]["extend-exclude"]
    assert {layer.BUILD_DIR.name, "cdk.out"} <= set(excluded)
    shutil.copy(layer.ROOT / "pyproject.toml", tmp_path)
    unused_import = "import os\n"
    for folder in excluded:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "vendored.py").write_text(unused_import)
    ruff = [str(Path(sysconfig.get_path("scripts")) / "ruff"), "check", "--no-cache", "."]
    assert subprocess.run(ruff, cwd=tmp_path, capture_output=True, check=False).returncode == 0  # noqa: S603
    # The same file elsewhere is reported: the check above does lint.
    (tmp_path / "module.py").write_text(unused_import)
    assert subprocess.run(ruff, cwd=tmp_path, capture_output=True, check=False).returncode == 1  # noqa: S603
