"""The batch functions' Tracer: stock Powertools, one X-Ray subsegment per handler invocation.

The chat function does not import it: under the Lambda Web Adapter its app runs in a child process that
never sees the invocation's trace id, and the X-Ray SDK that Powertools' Tracer loads (even when tracing is
off) costs ≈ 0.4 s of a cold start; a batch task can afford that, a chat caller waiting for a first token not.
"""

from __future__ import annotations

from aws_lambda_powertools import Tracer

tracer = Tracer()

__all__ = ["tracer"]
