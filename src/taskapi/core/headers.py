"""The response headers routers set, written one way everywhere: `ETag` carries a version,
`Location` the path of what a POST created."""

from __future__ import annotations

from fastapi import Request, Response


def set_etag(response: Response, version: int) -> None:
    """The version quoted, as a strong ETag (`"3"`); If-Match sends it back."""
    response.headers["ETag"] = f'"{version}"'


def set_location(response: Response, request: Request, route_name: str, **path_params: str) -> None:
    """The path of the named route (a relative reference, RFC 9110 §10.2.2), so it holds
    whatever host name or scheme the client reached the API by."""
    response.headers["Location"] = request.url_for(route_name, **path_params).path
