"""The only Powertools Logger and Metrics of the functions (the batch functions' Tracer: shared/tracing.py).

Stock Powertools: the service name comes from POWERTOOLS_SERVICE_NAME, the namespace from
POWERTOOLS_METRICS_NAMESPACE (every function sets both; the namespace falls back to NAMESPACE).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "GptOssBedrock"

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))

__all__ = ["NAMESPACE", "MetricUnit", "logger", "metrics"]
