"""API Gateway (REST, Lambda proxy) in process: HTTP request -> proxy event, proxy result -> HTTP response.

The tests and the local chat server share this one implementation. `ApiGateway` adds what the deployed
REST API does before and after the function, read from the synthesized template: its routes, the request
body model, the 10 MB body limit, the stage's method throttling (a token bucket per method, from the
stage's MethodSettings) and its gateway responses (the OpenAI error envelope).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

ACCOUNT_ID = "123456789012"
API_ID = "abc123defg"
STAGE = "prod"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/orders-service"
# API Gateway's payload limit; larger bodies never reach the integration.
MAX_BODY_BYTES = 10 * 1024 * 1024

# Status of each gateway response type this emulation produces, when the template sets none (API Gateway's
# defaults; a Lambda function error is a 502 under DEFAULT_5XX).
_DEFAULT_STATUS = {
    "BAD_REQUEST_BODY": HTTPStatus.BAD_REQUEST,
    "MISSING_AUTHENTICATION_TOKEN": HTTPStatus.FORBIDDEN,
    "REQUEST_TOO_LARGE": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "THROTTLED": HTTPStatus.TOO_MANY_REQUESTS,
    "INTEGRATION_TIMEOUT": HTTPStatus.GATEWAY_TIMEOUT,
    "DEFAULT_5XX": HTTPStatus.BAD_GATEWAY,
}


class HttpResponse(NamedTuple):
    """An HTTP response: unpacks as (status, headers, body)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive where it comes from an HTTP client
    body: str


def build_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    query: Mapping[str, str] | None = None,
    request_id: str | None = None,
    caller_arn: str | None = CALLER_ARN,
    resource: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    stage: str = STAGE,
) -> dict[str, Any]:
    """An API Gateway REST proxy event (IAM-authorized) for one HTTP request.

    `resource` is the matched route template (e.g. `/v1/models/{model}`); without one, the path itself.
    """
    header_map = dict(headers or {})
    request_id = request_id or str(uuid.uuid4())
    resource = resource or path
    epoch_ms = int(time.time() * 1000)
    identity = {
        "cognitoIdentityPoolId": None,
        "accountId": ACCOUNT_ID if caller_arn else None,
        "cognitoIdentityId": None,
        "caller": "AROAEXAMPLEROLEID1234:orders-service" if caller_arn else None,
        "sourceIp": "10.0.12.34",
        "principalOrgId": None,
        "accessKey": "ASIAEXAMPLEKEY123456" if caller_arn else None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": caller_arn,
        "userAgent": header_map.get("user-agent", header_map.get("User-Agent", "")),
        "user": "AROAEXAMPLEROLEID1234:orders-service" if caller_arn else None,
    }
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": {name: [value] for name, value in header_map.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "k1x2y3",
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "extendedRequestId": base64.b64encode(request_id.encode()[:12]).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch_ms,
            "requestId": request_id,
            "identity": identity,
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "deploymentId": "d3p10y",
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": False,
    }


class Route(NamedTuple):
    """A matched method: its resource template, its path parameters' values and its integration timeout."""

    resource: str
    path_parameters: dict[str, str]
    timeout_seconds: float


@dataclass(frozen=True)
class _Method:
    http_method: str
    resource: str
    pattern: re.Pattern[str]
    timeout_seconds: float
    required: tuple[str, ...]
    property_types: Mapping[str, str]


@dataclass(frozen=True)
class _GatewayResponse:
    status: int
    template: str
    headers: Mapping[str, str | None]  # None: the request id (`context.requestId`)


@dataclass(frozen=True)
class Throttle:
    """A method's throttle: `burst` requests at once, refilled at `rate` per second (API Gateway's token bucket)."""

    rate: float
    burst: int


class TokenBucket:
    """One method's token bucket: starts full, refills continuously, one token per admitted request."""

    def __init__(self, throttle: Throttle, clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle = throttle
        self._clock = clock
        self._tokens = float(throttle.burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend a token if one is left (the request goes on); False means API Gateway answers 429."""
        with self._lock:
            now = self._clock()
            refill = (now - self._updated) * self.throttle.rate
            self._tokens = min(float(self.throttle.burst), self._tokens + refill)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class ApiGateway:
    """The REST API of one synthesized template: routes, request body models, throttles and gateway responses."""

    def __init__(
        self,
        methods: list[_Method],
        responses: Mapping[str, _GatewayResponse],
        stage: str,
        throttles: Mapping[tuple[str, str], Throttle] | None = None,
    ) -> None:
        self._methods = methods
        self._responses = responses
        self.stage = stage
        # (HTTP method, resource path) -> throttle; ("*", "/*") is the stage's default for every method.
        self.throttles: Mapping[tuple[str, str], Throttle] = dict(throttles or {})
        # Per method, as API Gateway applies stage throttling: one method's traffic never throttles another's.
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._buckets_lock = threading.Lock()

    @classmethod
    def from_template(cls, template: Mapping[str, Any]) -> ApiGateway:
        """Read the API's methods, body models, stage and gateway responses from a CloudFormation template."""
        resources: Mapping[str, Any] = template["Resources"]
        paths = _resource_paths(resources)
        schemas = {
            logical_id: resource["Properties"]["Schema"]
            for logical_id, resource in resources.items()
            if resource["Type"] == "AWS::ApiGateway::Model"
        }
        methods = []
        for resource in _of_type(resources, "AWS::ApiGateway::Method"):
            path = paths[resource["ResourceId"]["Ref"]]
            model = (resource.get("RequestModels") or {}).get("application/json")
            schema = schemas.get(model["Ref"], {}) if isinstance(model, dict) else {}
            methods.append(
                _Method(
                    http_method=resource["HttpMethod"],
                    resource=path,
                    pattern=re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"),
                    # API Gateway's default (and maximum without a quota increase) integration timeout.
                    timeout_seconds=int(resource.get("Integration", {}).get("TimeoutInMillis", 29_000)) / 1000,
                    required=tuple(schema.get("required", ())),
                    property_types={name: spec.get("type", "") for name, spec in schema.get("properties", {}).items()},
                )
            )
        responses = {
            resource["ResponseType"]: _GatewayResponse(
                status=int(resource.get("StatusCode") or 0),
                template=resource["ResponseTemplates"]["application/json"],
                headers={
                    name.removeprefix("gatewayresponse.header."): _header_mapping(name, value)
                    for name, value in (resource.get("ResponseParameters") or {}).items()
                },
            )
            for resource in _of_type(resources, "AWS::ApiGateway::GatewayResponse")
        }
        stages = _of_type(resources, "AWS::ApiGateway::Stage")
        return cls(
            methods,
            responses,
            stage=stages[0]["StageName"] if stages else STAGE,
            throttles=_stage_throttles(stages[0]) if stages else None,
        )

    def admit(self, method: str, path: str, body: bytes, *, request_id: str) -> Route | HttpResponse:
        """The route a request invokes the function through, or the gateway response sent instead.

        Undefined routes and methods get 403 Missing Authentication Token, as on an IAM-authorized API.
        """
        if len(body) > MAX_BODY_BYTES:
            return self.error("REQUEST_TOO_LARGE", "Request Too Long", request_id=request_id)
        for candidate in self._methods:
            match = candidate.pattern.match(path)
            if match and candidate.http_method in (method.upper(), "ANY"):
                if not self._admitted_by_throttle(candidate):
                    return self.error("THROTTLED", "Too Many Requests", request_id=request_id)
                if (candidate.required or candidate.property_types) and not _body_matches(candidate, body):
                    return self.error("BAD_REQUEST_BODY", "Invalid request body", request_id=request_id)
                return Route(candidate.resource, match.groupdict(), candidate.timeout_seconds)
        return self.error("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token", request_id=request_id)

    def throttle_of(self, http_method: str, resource: str) -> Throttle | None:
        """The throttle of one method: its own MethodSettings entry, else the stage's default, else none."""
        return self.throttles.get((http_method, resource)) or self.throttles.get(("*", "/*"))

    def _admitted_by_throttle(self, method: _Method) -> bool:
        throttle = self.throttle_of(method.http_method, method.resource)
        if throttle is None:
            return True
        with self._buckets_lock:
            bucket = self._buckets.setdefault((method.http_method, method.resource), TokenBucket(throttle))
        return bucket.take()

    def error(self, response_type: str, message: str, *, request_id: str) -> HttpResponse:
        """A gateway response of the template (DEFAULT_4XX / DEFAULT_5XX when it defines no such type)."""
        status = int(_DEFAULT_STATUS[response_type])
        fallback = "DEFAULT_5XX" if status >= HTTPStatus.INTERNAL_SERVER_ERROR else "DEFAULT_4XX"
        response = self._responses.get(response_type) or self._responses.get(fallback)
        if response is None:
            return HttpResponse(status, _json_headers(request_id), json.dumps({"message": message}))
        body = response.template.replace("$context.error.messageString", json.dumps(message)).replace(
            "$context.requestId", request_id
        )
        headers = {name: request_id if value is None else value for name, value in response.headers.items()}
        return HttpResponse(response.status or status, {**_json_headers(request_id), **headers}, body)


def _header_mapping(name: str, value: str) -> str | None:
    """A gateway response header's mapping: its 'static' value, or None for `context.requestId` (the request's id).

    Raises:
        ValueError: a mapping the local gateway cannot render (request parameters, stage variables, other
            context variables), rather than a header that would differ from the deployed one.
    """
    if len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        return value[1:-1]
    if value == "context.requestId":
        return None
    raise ValueError(f"the local gateway cannot render the gateway response header {name} = {value}")


def _json_headers(request_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "x-amzn-RequestId": request_id, "x-amzn-ErrorType": "GatewayError"}


def _of_type(resources: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    return [resource["Properties"] for resource in resources.values() if resource["Type"] == kind]


def _stage_throttles(stage: Mapping[str, Any]) -> dict[tuple[str, str], Throttle]:
    """The stage's throttles by (HTTP method, resource path), from MethodSettings entries that set both limits.

    MethodSettings write a resource path with `/` escaped as `~1` (`/~1v1~1models`); `/*` with `*` is every method.
    """
    throttles = {}
    for setting in stage.get("MethodSettings") or []:
        if "ThrottlingRateLimit" not in setting or "ThrottlingBurstLimit" not in setting:
            continue
        path = str(setting.get("ResourcePath", "/*"))
        resource = path if path == "/*" else "/" + path.lstrip("/").replace("~1", "/")
        throttles[(str(setting.get("HttpMethod", "*")), resource)] = Throttle(
            rate=float(setting["ThrottlingRateLimit"]), burst=int(setting["ThrottlingBurstLimit"])
        )
    return throttles


def _resource_paths(resources: Mapping[str, Any]) -> dict[str, str]:
    """Each AWS::ApiGateway::Resource's full path, following ParentId up to the API's root resource."""
    parts = {
        logical_id: (resource["Properties"]["ParentId"], resource["Properties"]["PathPart"])
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::ApiGateway::Resource"
    }

    def path_of(logical_id: str) -> str:
        parent, part = parts[logical_id]
        # The root resource is `Fn::GetAtt [api, RootResourceId]`; every other parent is a Ref.
        prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{part}"

    return {logical_id: path_of(logical_id) for logical_id in parts}


_JSON_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "string": str,
    "array": list,
    "object": dict,
    "boolean": bool,
    "number": (int, float),
    "integer": int,
}


def _body_matches(spec: _Method, body: bytes) -> bool:
    """API Gateway's request validator: the body is a JSON object with the model's required, typed properties."""
    try:
        value = json.loads(body)
    except ValueError:
        return False
    if not isinstance(value, dict) or any(name not in value for name in spec.required):
        return False
    return all(
        isinstance(value[name], _JSON_TYPES.get(kind, object))
        for name, kind in spec.property_types.items()
        if name in value
    )
