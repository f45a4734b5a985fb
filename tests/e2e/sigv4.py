"""SigV4 signing for the OpenAI SDK's HTTP client (httpx2 from openai 3 on, httpx before).

The official SDK can then call the IAM-authorized chat API, as the README shows.
"""

from __future__ import annotations

from collections.abc import Generator

import boto3
import httpx2 as httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest


class SigV4(httpx.Auth):
    """Signs each request for API Gateway (`execute-api`) with the default credential chain."""

    requires_request_body = True

    def __init__(self, region: str, session: boto3.Session | None = None) -> None:
        credentials = (session or boto3.Session()).get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials found to sign requests with")
        self.credentials = credentials
        self.region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the SigV4 headers (Authorization, X-Amz-Date, X-Amz-Security-Token) to the request."""
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(signed)
        request.headers.update(dict(signed.headers))
        yield request
