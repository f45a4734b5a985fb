"""The only Powertools Logger, Tracer and Metrics of the functions; service name from POWERTOOLS_SERVICE_NAME."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "GptOssBedrock"

logger = Logger()
tracer = Tracer()
# Every function publishes to one namespace; the variable wins so a stage can be told apart if needed.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))

__all__ = ["NAMESPACE", "MetricUnit", "logger", "metrics", "tracer"]
