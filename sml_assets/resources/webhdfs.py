"""The WebHDFS client `HdfsResource` uses, apart so that loading the code location does not import
requests and hdfs."""

from __future__ import annotations

import re
from typing import Any

import requests
from hdfs import InsecureClient


class ServerError(Exception):
    """A 5xx answer from the NameNode or a DataNode: an overloaded or restarting server."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code} from {response.url.split('?')[0]}: {_server_reason(response)}")
        self.status = response.status_code


def _server_reason(response: requests.Response) -> str:
    """The RemoteException message, or the title of Jetty's HTML error page, or the reason phrase."""
    try:
        return str(response.json()["RemoteException"]["message"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        pass
    title = re.search(r"<title>(.*?)</title>", response.text, re.IGNORECASE | re.DOTALL)
    return title.group(1).strip() if title else (response.reason or "no reason given")


class WebHdfsClient(InsecureClient):
    """`InsecureClient` that raises on 5xx, so the retry loop sees it instead of a generic HdfsError,
    and verifies HTTPS with `verify` on every request: requests lets REQUESTS_CA_BUNDLE override a
    session's own `verify`, so the CA is passed per request."""

    def __init__(self, url: str, verify: str | bool = True, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.verify = verify

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        response = super()._request(method, url, **kwargs)
        if response.status_code >= 500:
            raise ServerError(response)
        return response
