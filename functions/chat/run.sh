#!/bin/bash
# The chat function's handler under the AWS Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap runs it):
# serve the ASGI app chat.app:app with uvicorn on loopback at the adapter's port; the adapter forwards each
# invocation to it once GET /healthz answers. The dependency layer (uvicorn, starlette, ...) is in /opt/python.
set -euo pipefail

# Lambda sets LAMBDA_TASK_ROOT (the asset root, functions/); elsewhere it is this script's parent folder.
task_root="${LAMBDA_TASK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

PYTHONPATH="${task_root}:/opt/python${PYTHONPATH:+:${PYTHONPATH}}" exec python -m uvicorn chat.app:app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" --no-access-log --log-level warning
