"""URLs of the throw-away project: django-newsletter builds links from them."""

import os

from django.urls import include, path

urlpatterns = []
if os.environ["BENCH_APP"] == "newsletter":
    urlpatterns.append(path("newsletter/", include("newsletter.urls")))
