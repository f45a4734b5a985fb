"""The local runner's command line."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CDK_OUT = ROOT / "cdk.out"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    synth_command = commands.add_parser("synth", help="synthesize the app into cdk.out/ and print what it deploys")
    synth_command.add_argument("--outdir", type=Path, default=CDK_OUT)
    arguments = parser.parse_args(argv)
    if arguments.command == "synth":
        return synth(arguments.outdir)
    return 2  # argparse already refused anything else


def synth(outdir: Path) -> int:
    """Synthesize every stack (cdk-nag runs and fails the synth on any finding) and describe the result."""
    # jsii prints a Node.js end-of-life banner on Node 20 unless told not to; it reads this when aws_cdk loads.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.app_builder import build_app, cli_context

    assembly = build_app(cli_context(), outdir=str(outdir)).synth()
    print(f"Synthesized into {outdir} (cdk-nag AwsSolutions: no unacknowledged findings)\n")
    for stack in assembly.stacks:
        print(describe_stack(stack.stack_name, stack.template))
    print("Deploy with: npx --yes aws-cdk@2 deploy --all   (needs AWS credentials; see README 'Deploy')")
    return 0


def describe_stack(name: str, template: dict[str, Any]) -> str:
    """A short, readable account of one template: its resources by type and its outputs."""
    resources: dict[str, Any] = template.get("Resources", {})
    counts = Counter(resource["Type"] for resource in resources.values())
    lines = [f"{name}: {len(resources)} resources"]
    lines += [f"  {count:3d} x {kind}" for kind, count in sorted(counts.items())]
    outputs: dict[str, Any] = template.get("Outputs", {})
    if outputs:
        lines.append("  outputs: " + ", ".join(sorted(outputs)))
    return "\n".join(lines) + "\n"
