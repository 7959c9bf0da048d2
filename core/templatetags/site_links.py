"""`{{ path|absolute }}`: a path on SITE_URL, as mail and feeds link to it."""

from django import template

from core.links import absolute_url

register = template.Library()


@register.filter
def absolute(path) -> str:
    return absolute_url(str(path))
