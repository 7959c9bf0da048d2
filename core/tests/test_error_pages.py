"""Error pages are our own, in the visitor's language."""

import pytest
from django.test import RequestFactory
from django.utils import translation
from django.views.defaults import server_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("language", "text"), [("ru", "Страница не найдена"), ("en", "Page not found")]
)
def test_missing_page_answers_with_our_404(client, language, text):
    client.cookies["django_language"] = language
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert text in page and 'id="language-switcher"' in page


@pytest.mark.parametrize(
    ("language", "text"),
    [("ru", "Что-то пошло не так"), ("en", "Something went wrong on our side")],
)
def test_server_error_page_is_ours_and_self_contained(language, text):
    request = RequestFactory().get("/")
    with translation.override(language):
        response = server_error(request)
    assert response.status_code == 500
    assert text in response.content.decode()


def test_expired_form_gets_a_clear_page(settings):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/login/", {"username": "a@example.com", "password": "x"})
    assert response.status_code == 403
    assert "Форма устарела" in response.content.decode()
