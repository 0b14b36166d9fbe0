"""The API description page works offline: Swagger UI from the package's own files, rendered in a browser."""

from __future__ import annotations

import re

from devstack.stack import ServiceStack
from tests.browser import rendered_dom


def test_docs_page_renders_every_operation_with_no_internet(stack: ServiceStack) -> None:
    dom = rendered_dom(stack.url("/docs"))
    # Swagger UI's script built these from /openapi.json; nothing on the page comes from another host.
    paths = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {"/predict", "/predictions/{observation_id}", "/batches", "/monitoring"} <= paths
    assert not re.search(r'(?:src|href)="(?:https?:)?//', dom)
