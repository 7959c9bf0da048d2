"""Middleware of the project's own.

`TrackingShortcut` answers the open pixel and the click links before the
rest of the stack: they need no session, language, CSRF token, user,
messages or Content-Security-Policy, and at a thousand requests a second
that work was most of their cost. It stands right after SecurityMiddleware
(HTTPS redirect, security headers) and dispatches to the same views the URL
patterns name, which serve these paths wherever this middleware is absent.
"""

import re

from . import views

TRACKING_PATH = re.compile(
    r"^/t/(?:o/(?P<open>[^/]{1,80})|c/(?P<click>[^/]{1,80})/(?P<index>[0-9]{1,9}))/\Z"
)


class TrackingShortcut:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        match = TRACKING_PATH.match(request.path_info)
        if match is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        if match["open"]:
            return views.track_open(request, match["open"])
        return views.track_click(request, match["click"], int(match["index"]))
