"""CDK entry point: `cdk synth` / `cdk deploy`, or `uv run python app.py` (writes cdk.out/ without the CLI)."""

from __future__ import annotations

import os
from pathlib import Path

# jsii prints a Node.js end-of-life banner on Node 20 unless told not to; it reads this when aws_cdk loads.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.app_builder import build_app, cli_context

if __name__ == "__main__":
    if "CDK_OUTDIR" in os.environ:
        # Run by the CDK CLI: it passes cdk.json's context, `-c` values and the output folder itself.
        build_app({}).synth()
    else:
        build_app(cli_context(), outdir=str(Path(__file__).resolve().parent / "cdk.out")).synth()
