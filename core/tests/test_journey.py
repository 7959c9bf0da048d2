"""The whole journey in a real browser, from a reader to a delivered mailing.

Headless Chromium (Debian's package, never a downloaded browser) drives the
live server; a `manage.py qcluster` worker shares the test database and
delivers the mailing to an aiosmtpd server on loopback. The worker is a
separate process, so the journey needs PostgreSQL.

Screenshots of the key pages, and the worker's log, go to
test-artifacts/journey/. With JOURNEY_UPDATE_DOCS=1 the README's screenshots
in docs/screenshots/ are refreshed from them.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.utils import timezone, translation

from core.models import (
    Article,
    Attempt,
    Client,
    Field,
    Mailing,
    MailingRun,
    Message,
    Segment,
    SenderDomain,
    SubscriptionForm,
    User,
)
from core.services.privacy import preferences_url
from core.services.roles import CLIENTS, MANAGERS, roles_ensure

from .dns import dns_txt
from .factories import PASSWORD, ArticleFactory, UserFactory, people
from .smtp import SmtpServer

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"the browser journey needs Debian's Chromium at {CHROMIUM}: "
        "apt-get install chromium (bash .ci/run does)",
    ),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
BASE_DIR = Path(settings.BASE_DIR)
ARTIFACTS = BASE_DIR / "test-artifacts" / "journey"
DOCS_SCREENSHOTS = BASE_DIR / "docs" / "screenshots"
# Screenshot -> its name in docs/screenshots/ (see the module docstring).
FOR_DOCS = {
    "01-home": "home",
    "06-import-check": "import",
    "08-mailing-form": "mailing",
    "10-report": "report",
    "11-dashboard": "dashboard",
    "14-segment": "segment",
    "15-subscribe": "subscribe",
    "16-preferences": "preferences",
}
# The same for the sender-domain journey.
FOR_DOCS_SENDER = {
    "20-sender-domain": "sender-domain",
    "22-sender-report": "sender-report",
}
DELIVERY_TIMEOUT = 60

RECIPIENTS = [
    ("anna.petrova@example.org", "Анна Петрова", "постоянная покупательница"),
    ("ivan.sidorov@example.org", "Иван Сидоров", ""),
    ("olga.kuznetsova@example.org", "Ольга Кузнецова", "из Excel"),
]
SUBJECT = "Осенние новинки"
BODY = (
    "Здравствуйте, {{ client.full_name }}!\n\n"
    "У нас новые книги.\n\nОтписаться: {{ unsubscribe_url }}"
)
OWNER_EMAIL = "owner@example.com"
FAN = "vera.zaitseva@example.org"
LURKER = "never.confirms@example.org"
OWNER_PASSWORD = "Lantern-Meadow-2718"
READER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)


# --- the parts: browser, SMTP server, worker ------------------------------


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread. The
    # ORM calls the test makes between browser steps are still plain
    # synchronous ones, but Django would refuse them, and gives them a
    # database connection apart from the thread's usual one: it is closed
    # here, or it would outlive the test and block dropping the test database.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    expect.set_options(timeout=15_000)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def sink():
    server = SmtpServer().start()
    yield server
    server.stop()


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


class Worker:
    """A `manage.py qcluster` process on the test database, logging to a file."""

    def __init__(self, *, env: dict, log: Path):
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- qcluster log, {self.log} ---\n{text[-chars:]}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"qcluster exited with code {self.process.returncode}\n{self.tail()}"
            )

    def stop(self) -> None:
        # SIGTERM to the cluster's main process only: it stops its sentinel,
        # which stops the workers, in about a second. The same signal sent to
        # the whole process group at once can leave the cluster hanging.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever is left
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def worker(transactional_db, sink, tmp_path, live_server):
    """The django-q2 cluster that sends the mailing; always stopped after.
    Its mail links to the live server, as a deployed site's does."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ENV_FILE": str(tmp_path / "none.env"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "True",  # development mode, as `make run`
        "DATABASE_URL": database_url(),
        "SITE_URL": live_server.url,
        "EMAIL_URL": f"smtp://127.0.0.1:{sink.port}",
        "CACHE_URL": "locmemcache://",
        "DISPATCH_JOURNAL_DIR": str(tmp_path / "journal"),
        "SMTP_RETRY_BACKOFF": "0",
        "Q_WORKERS": "1",
        "LOG_LEVEL": "INFO",
        # The sender domains' keys, encrypted by the site, are read by it.
        "ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
    }
    worker = Worker(env=env, log=ARTIFACTS / "qcluster.log")
    yield worker
    worker.stop()


# --- helpers ------------------------------------------------------------------


@contextmanager
def step(name):
    """Name the journey's step in whatever fails inside it."""
    try:
        yield
    except BaseException as error:
        error.add_note(f"journey step: {name}")
        raise


def shot(page, name):
    page.screenshot(path=ARTIFACTS / f"{name}.png", animations="disabled")


def failure_kept(page, worker, name):
    """The page as it failed (a screenshot and its HTML) and the worker's log."""
    try:
        shot(page, name)
        (ARTIFACTS / f"{name}.html").write_text(page.content())
    except Exception as error:  # the page itself may be what broke
        print(f"no failure screenshot: {error}")
    print(worker.tail())


def docs_screenshots_update(names: dict):
    """With JOURNEY_UPDATE_DOCS=1, the README's screenshots from this run's."""
    if not os.environ.get("JOURNEY_UPDATE_DOCS"):
        return
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for artifact, name in names.items():
        shutil.copyfile(ARTIFACTS / f"{artifact}.png", DOCS_SCREENSHOTS / f"{name}.png")


def wait_until(predicate, *, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def at(path):
    """The page's URL is `path`, whatever its query or fragment (an open tab)."""
    return re.compile(r"^https?://[^/]+" + re.escape(path) + r"(\?[^#]*)?(#.*)?$")


def new_page(browser, base_url):
    """A fresh visitor: own cookies, a Russian browser, the server's time zone."""
    context = browser.new_context(
        base_url=base_url,
        locale="ru-RU",
        timezone_id=settings.TIME_ZONE,
        viewport=VIEWPORT,
    )
    context.set_default_timeout(20_000)
    return context.new_page()


def log_in(page, email, password):
    page.goto("/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(at("/admin/"))


def run_action(page, action, *pks):
    """Tick the rows and run an admin action from the changelist."""
    # The URL changes before the page's scripts run; select2 then restyles the
    # action bar and shifts the table, so a click made earlier can miss the box.
    page.wait_for_load_state("load")
    for pk in pks:
        page.locator(f"input.action-select[value='{pk}']").check()
    page.select_option("select[name=action]", action)
    page.locator("button[name=index]").click()


def show_field(page, element_id):
    """The admin shows fieldsets as tabs: open the one holding the field."""
    pane = page.locator(f".tab-pane:has(#{element_id})")
    if pane.count():
        pane_id = pane.get_attribute("id")
        page.locator(f"a[role=tab][aria-controls='{pane_id}']").click()
        expect(pane).to_have_class(re.compile(r"\bshow\b"))  # faded in


def pick_autocomplete(page, field, term, choice):
    """Open a select2 autocomplete, type, and pick the matching option."""
    show_field(page, f"id_{field}")
    page.locator(f"#id_{field} + .select2 .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(term)
    page.locator(
        ".select2-container--open .select2-results__option", has_text=choice
    ).click()
    expect(page.locator(".select2-container--open")).to_have_count(0)


def html_body(site: str) -> str:
    """The message's HTML part, with a link to the site's own blog."""
    return (
        "<p>Здравствуйте, {{ client.full_name }}!</p>"
        f'<p><a href="{site}/blog/">Новые книги</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Отписаться</a></p>'
    )


def html_part(message) -> str:
    return message.get_body(("html",)).get_content()


def text_part(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def has_cyrillic(text: str) -> bool:
    return re.search("[А-Яа-яЁё]", text) is not None


# --- the journey --------------------------------------------------------------


def test_reader_signs_up_sends_a_mailing_and_a_manager_oversees_it(
    live_server, browser, worker, sink, settings, mailoutbox
):
    started = time.monotonic()
    settings.SITE_URL = live_server.url  # where the verification link points
    for old in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.html")]:
        old.unlink()
    # An earlier transactional test's flush empties the tables, the roles'
    # groups with them; the newcomer needs them as migrations left them.
    roles_ensure()
    article = ArticleFactory(title="Как писать письма, которые дочитывают")
    pending = ArticleFactory(status=Article.Status.PENDING, title="Статья на проверке")
    second = UserFactory(verified=True, groups=[CLIENTS])
    manager = UserFactory(verified=True, groups=[MANAGERS])
    with translation.override("ru"):
        sent_label = str(Attempt.Status.SENT.label)

    page = new_page(browser, live_server.url)
    try:
        with step("1. a reader opens the home page and an article"):
            page.goto("/")
            expect(page.locator("html")).to_have_attribute("lang", "ru")
            shot(page, "01-home")
            page.locator(f"main a[href='{article.get_absolute_url()}']").first.click()
            expect(page.locator("h1")).to_contain_text(article.title)
            shot(page, "02-article")

        with step("2. signs up, confirms the address, logs in"):
            page.locator("nav a[href='/signup/']").click()
            page.fill("#id_email", OWNER_EMAIL)
            page.fill("#id_full_name", "Екатерина Владимирова")
            page.fill("#id_password1", OWNER_PASSWORD)
            page.fill("#id_password2", OWNER_PASSWORD)
            shot(page, "03-signup")
            page.locator("main form button[type=submit]").click()
            expect(page).to_have_url(at("/signup/done/"))
            assert [mail.to for mail in mailoutbox] == [[OWNER_EMAIL]]
            link = re.search(r"https?://\S+/verify/\S+/", mailoutbox[0].body)
            assert link, mailoutbox[0].body
            page.goto(link.group(0))
            page.locator("#verify-form button[type=submit]").click()
            expect(page.locator("main a[href='/login/']").first).to_be_visible()
            owner = User.objects.get(email=OWNER_EMAIL)
            assert owner.is_verified
            log_in(page, OWNER_EMAIL, OWNER_PASSWORD)
            expect(page.locator("#dashboard-title")).to_be_visible()
            shot(page, "04-dashboard-new")

        with step("3. imports recipients from a Windows-1251 CSV"):
            page.goto("/admin/core/client/")
            page.locator("a[href$='/admin/core/client/import/']").first.click()
            csv = "E-mail;ФИО;Комментарий\r\n" + "".join(
                f"{email};{name};{comment}\r\n" for email, name, comment in RECIPIENTS
            )
            page.set_input_files(
                "input[name=import_file]",
                files=[
                    {
                        "name": "подписчики.csv",
                        "mimeType": "text/csv",
                        "buffer": csv.encode("cp1251"),
                    }
                ],
            )
            shot(page, "05-import-upload")
            page.locator("form[enctype='multipart/form-data'] [type=submit]").click()
            summary = page.locator("#import-summary")
            for email, name, _ in RECIPIENTS:
                expect(summary).to_contain_text(email)
                expect(summary).to_contain_text(name)
            shot(page, "06-import-check")
            # The owner vouches for these people's consent, or nothing goes in.
            page.locator("#id_consent").check()
            page.locator("button[name=confirm]").click()
            expect(page).to_have_url(at("/admin/core/client/"))
            for email, name, _ in RECIPIENTS:
                expect(page.locator("#result_list")).to_contain_text(email)
                expect(page.locator("#result_list")).to_contain_text(name)
            assert sorted(
                Client.objects.filter(owner=owner).values_list("email", "full_name")
            ) == sorted((email, name) for email, name, _ in RECIPIENTS)

        with step("4. writes a personalized message"):
            page.goto("/admin/core/message/add/")
            show_field(page, "id_subject")
            page.fill("#id_subject", SUBJECT)
            page.fill("#id_body", BODY)
            show_field(page, "id_html_body")
            page.fill("#id_html_body", html_body(live_server.url))
            shot(page, "07-message")
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/message/"))
            assert Message.objects.filter(owner=owner, subject=SUBJECT).exists()

        with step("5. creates a mailing with the autocompletes, sends it now"):
            page.goto("/admin/core/mailing/add/")
            show_field(page, "id_title")
            page.fill("#id_title", "Осенняя рассылка")
            pick_autocomplete(page, "message", "Осенние", SUBJECT)
            # Due tomorrow, so only "send now" sends it today.
            tomorrow = timezone.localtime() + timedelta(days=1)
            show_field(page, "id_start_at_0")
            page.fill("#id_start_at_0", tomorrow.strftime("%Y-%m-%d"))
            page.fill("#id_start_at_1", "10:00:00")
            for email, name, _ in RECIPIENTS:
                surname = name.split()[-1]
                pick_autocomplete(page, "clients", surname, email)
            shot(page, "08-mailing-form")
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/mailing/"))
            mailing = Mailing.objects.get(owner=owner)
            assert mailing.message.subject == SUBJECT
            assert sorted(mailing.clients.values_list("email", flat=True)) == sorted(
                email for email, _, _ in RECIPIENTS
            )
            run_action(page, "send_now", mailing.pk)
            expect(page.locator(".alert-success")).to_be_visible()

        with step("6. the worker delivers one personalized mail to each"):

            def all_delivered():
                worker.check_alive()
                return len(sink.messages) >= len(RECIPIENTS)

            assert wait_until(all_delivered, timeout=DELIVERY_TIMEOUT), (
                f"{len(sink.messages)} of {len(RECIPIENTS)} mails arrived in "
                f"{DELIVERY_TIMEOUT} s\n{worker.tail()}"
            )
            assert sorted(tos for tos, _ in sink.messages) == sorted(
                [email] for email, _, _ in RECIPIENTS
            )
            by_address = {tos[0]: message for tos, message in sink.messages}
            for email, name, _ in RECIPIENTS:
                assert by_address[email]["Subject"] == SUBJECT
                assert f"Здравствуйте, {name}!" in text_part(by_address[email])

        with step("7. the report shows the sends"):
            # The mails are out; the worker records them right after.
            assert wait_until(
                lambda: MailingRun.objects.filter(
                    mailing=mailing, sent_count=len(RECIPIENTS)
                ).exists(),
                timeout=30,
            ), f"the run is not recorded as sent\n{worker.tail()}"
            page.goto("/admin/core/mailing/")
            page.locator(f"a[href$='?mailing__id__exact={mailing.pk}']").click()
            run_row = page.locator("#result_list tbody tr")
            expect(run_row).to_have_count(1)
            expect(run_row.locator("td.field-sent_count")).to_have_text(
                str(len(RECIPIENTS))
            )
            shot(page, "10-report")
            run_row.locator("td.field-attempts_link a").click()
            expect(page.locator("#result_list tbody td.field-status")).to_have_text(
                [sent_label] * len(RECIPIENTS)
            )
            shot(page, "10-attempts")
            # The dashboard keeps its figures for a minute; show the sends now.
            cache.clear()
            page.goto("/admin/")
            shot(page, "11-dashboard")

        with step("7. then a reader opens the mail and clicks; the report counts it"):
            # Opens within seconds of delivery are a scanner's; this reader
            # opens at once, so the window is closed for the journey.
            settings.TRACKING_MACHINE_SECONDS = 0
            reader = browser.new_context(user_agent=READER_AGENT).new_page()
            with reader.expect_response(re.compile(r"/t/o/")) as pixel:
                reader.set_content(html_part(by_address[RECIPIENTS[0][0]]))
            assert pixel.value.status == 200
            reader.get_by_role("link", name="Новые книги").click()
            expect(reader).to_have_url(at("/blog/"))
            reader.context.close()
            run = MailingRun.objects.get(mailing=mailing)
            page.goto(f"/admin/core/mailingrun/{run.pk}/change/")
            report = page.locator("body")
            expect(report).to_contain_text("открыли 1 (33.3%); перешли 1 (33.3%)")
            expect(report).to_contain_text(f"{live_server.url}/blog/")
            shot(page, "10-run-report")

        with step("7a. a custom field, recipients' values, a segment"):
            page.goto("/admin/core/field/add/")
            show_field(page, "id_label")
            page.fill("#id_label", "Город")
            page.fill("#id_key", "city")
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/field/"))
            for email, city in (
                (RECIPIENTS[0][0], "Москва"),
                (RECIPIENTS[1][0], "Казань"),
                (RECIPIENTS[2][0], "москва"),
            ):
                person = Client.objects.get(owner=owner, email=email)
                page.goto(f"/admin/core/client/{person.pk}/change/")
                show_field(page, "id_attribute_city")
                page.fill("#id_attribute_city", city)
                page.locator("[name=_save]").click()
                expect(page).to_have_url(at("/admin/core/client/"))
            page.goto("/admin/core/segment/add/")
            show_field(page, "id_name")
            page.fill("#id_name", "Москвичи")
            show_field(page, "id_rules-match")
            page.select_option("select[name='rules-0-field']", "attributes.city")
            page.select_option("select[name='rules-0-op']", "eq")
            page.fill("input[name='rules-0-value']", "Москва")
            # The count follows the rows as they are typed, before saving.
            expect(page.locator("#segment-members")).to_contain_text("2")
            expect(page.locator("#segment-members")).to_contain_text(RECIPIENTS[0][0])
            shot(page, "14-segment")
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/segment/"))
            segment = Segment.objects.get(owner=owner)

        with step("7b. a subscription form; a visitor subscribes and confirms"):
            page.goto("/admin/core/subscriptionform/add/")
            show_field(page, "id_title")
            page.fill("#id_title", "Книжные новости")
            city = Field.objects.get(owner=owner, key="city")
            show_field(page, "id_fields_0")
            page.locator(f"input[name=fields][value='{city.pk}']").check()
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/subscriptionform/"))
            form = SubscriptionForm.objects.get(owner=owner)
            already = len(sink.messages)

            def subscribe(visitor, email, name):
                visitor.goto(f"/subscribe/{form.slug}/")
                visitor.fill("#id_email", email)
                visitor.fill("#id_full_name", name)
                visitor.fill("#id_attribute_city", "Москва")
                visitor.locator("#id_personal_data").check()
                visitor.locator("#id_marketing").check()
                visitor.wait_for_timeout(2100)  # a person's pace; bots post at once
                return visitor

            fan = subscribe(new_page(browser, live_server.url), FAN, "Вера Зайцева")
            shot(fan, "15-subscribe")
            fan.locator("#subscribe-form button[type=submit]").click()
            expect(fan).to_have_url(at(f"/subscribe/{form.slug}/sent/"))
            lurker = subscribe(
                new_page(browser, live_server.url), LURKER, "Не подтвердил"
            )
            lurker.locator("#subscribe-form button[type=submit]").click()
            expect(lurker).to_have_url(at(f"/subscribe/{form.slug}/sent/"))
            lurker.context.close()

            def confirmation_arrived():
                worker.check_alive()
                return any(tos == [FAN] for tos, _ in sink.messages[already:])

            assert wait_until(confirmation_arrived, timeout=DELIVERY_TIMEOUT), (
                worker.tail()
            )
            confirmation = next(m for tos, m in sink.messages[already:] if tos == [FAN])
            link = re.search(
                r"https?://\S+/subscribe/confirm/\S+/", text_part(confirmation)
            )
            fan.goto(link.group(0))
            assert Client.objects.get(email=FAN).confirmed_at is None  # a GET
            fan.locator("#subscribe-confirm").click()
            expect(fan.locator("#subscribe-done")).to_be_visible()
            subscriber = Client.objects.get(owner=owner, email=FAN)
            assert subscriber.confirmed_at is not None
            assert subscriber.consents.count() == 2
            fan.goto(preferences_url(client_id=subscriber.pk))
            expect(fan.locator("#preferences-form")).to_be_visible()
            shot(fan, "16-preferences")
            fan.context.close()

        with step("7c. a mailing to the segment reaches exactly its members"):
            page.goto("/admin/core/mailing/add/")
            show_field(page, "id_title")
            page.fill("#id_title", "Москвичам")
            pick_autocomplete(page, "message", "Осенние", SUBJECT)
            tomorrow = timezone.localtime() + timedelta(days=1)
            show_field(page, "id_start_at_0")
            page.fill("#id_start_at_0", tomorrow.strftime("%Y-%m-%d"))
            page.fill("#id_start_at_1", "10:00:00")
            show_field(page, "id_segments_0")
            page.locator(f"input[name=segments][value='{segment.pk}']").check()
            # Both Muscovites from the file and the new subscriber; the visitor
            # who never confirmed is counted, and will not be mailed.
            expect(page.locator("#mailing-audience")).to_contain_text("4")
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/mailing/"))
            to_segment = Mailing.objects.get(owner=owner, title="Москвичам")
            before = len(sink.messages)
            run_action(page, "send_now", to_segment.pk)
            expect(page.locator(".alert-success")).to_be_visible()
            members = {RECIPIENTS[0][0], RECIPIENTS[2][0], FAN}

            def segment_delivered():
                worker.check_alive()
                return len(sink.messages) - before >= len(members)

            assert wait_until(segment_delivered, timeout=DELIVERY_TIMEOUT), (
                worker.tail()
            )
            assert wait_until(
                lambda: MailingRun.objects.filter(
                    mailing=to_segment, finished_at__isnull=False
                ).exists(),
                timeout=30,
            ), worker.tail()
            assert sorted(tos[0] for tos, _ in sink.messages[before:]) == sorted(
                members
            )
            skipped = Attempt.objects.get(run__mailing=to_segment, email=LURKER)
            assert skipped.status == Attempt.Status.SKIPPED

        with step("8. another client sees none of it"):
            other = new_page(browser, live_server.url)
            log_in(other, second.email, PASSWORD)
            for path in ("/admin/core/client/", "/admin/core/mailing/"):
                other.goto(path)
                expect(other.locator("#result_list tbody tr")).to_have_count(0)
            # The first user's mailing answers exactly like a missing one.
            other.goto(f"/admin/core/mailing/{mailing.pk}/change/")
            expect(other).to_have_url(at("/admin/"))
            foreign = other.locator(".alert-warning").inner_text()
            missing = mailing.pk + 1000
            other.goto(f"/admin/core/mailing/{missing}/change/")
            expect(other).to_have_url(at("/admin/"))
            absent = other.locator(".alert-warning").inner_text()
            assert re.sub(rf"\b{mailing.pk}\b", "ID", foreign) == re.sub(
                rf"\b{missing}\b", "ID", absent
            )
            other.context.close()

        with step("9. a manager disables the mailing, blocks, approves"):
            desk = new_page(browser, live_server.url)
            log_in(desk, manager.email, PASSWORD)
            desk.goto("/admin/core/mailing/")
            run_action(desk, "disable_mailings", mailing.pk)
            expect(desk.locator(".alert-success")).to_be_visible()
            shot(desk, "12-manager-mailings")
            desk.goto("/admin/core/user/")
            run_action(desk, "block_users", owner.pk)
            expect(desk.locator(".alert-success")).to_be_visible()
            desk.goto("/admin/core/article/")
            run_action(desk, "approve_articles", pending.pk)
            expect(desk.locator(".alert-success")).to_be_visible()
            desk.context.close()
            mailing.refresh_from_db()
            owner.refresh_from_db()
            pending.refresh_from_db()
            assert not mailing.is_enabled
            assert not owner.is_active
            assert pending.status == Article.Status.PUBLISHED
            # The blocked owner's open session stops working at once.
            page.goto("/admin/")
            expect(page).to_have_url(at("/login/"))

        with step("10. the language switch turns the site to English"):
            reader = new_page(browser, live_server.url)
            reader.goto("/")
            signup = reader.locator("nav a[href='/signup/']")
            expect(reader.locator("html")).to_have_attribute("lang", "ru")
            assert has_cyrillic(signup.inner_text())
            reader.locator("#language-switcher button[value=en]").click()
            expect(reader.locator("html")).to_have_attribute("lang", "en")
            expect(signup).to_have_text("Sign up")
            shot(reader, "13-home-en")
            reader.context.close()
    except BaseException:
        failure_kept(page, worker, "failure")
        raise

    docs_screenshots_update(FOR_DOCS)
    print(f"journey took {time.monotonic() - started:.1f} s")


SENDER_DOMAIN = "knizhnaya-lavka.example"


def test_a_client_sends_as_their_own_domain_and_both_verifiers_pass(
    live_server, browser, worker, sink, dns_server, opendkim, settings
):
    """Add a domain, publish the records the page shows, see it verified,
    send from news@ that domain: every message at the sink verifies with
    dkimpy and with OpenDKIM, asking the DNS server the records are on."""
    import dkim

    for old in ARTIFACTS.glob("2?-*.png"):
        old.unlink()
    roles_ensure()
    owner = UserFactory(verified=True, groups=[CLIENTS])
    recipients = people(owner, 3, full_name="Читатель Книжный")
    page = new_page(browser, live_server.url)
    try:
        with step("1. the client adds a sender domain and sees what to publish"):
            log_in(page, owner.email, PASSWORD)
            page.goto("/admin/core/senderdomain/add/")
            page.fill("#id_domain", SENDER_DOMAIN)
            page.locator("[name=_continue]").click()
            domain = SenderDomain.objects.get(owner=owner)
            expect(page).to_have_url(
                at(f"/admin/core/senderdomain/{domain.pk}/change/")
            )
            rows = page.locator("tbody.dns-record")
            expect(rows).to_have_count(3)  # DKIM, SPF, DMARC
            zone = {}
            for index in range(rows.count()):
                row = rows.nth(index)
                name = row.locator("code").inner_text()
                zone.setdefault(name, []).append(row.locator("textarea").input_value())
            assert f"{domain.dkim_selector}._domainkey.{SENDER_DOMAIN}" in zone
            shot(page, "20-sender-domain")

        with step("2. publishes them; the check finds them and verifies it"):
            dns_server.publish(zone)
            opendkim.publish(zone)
            page.goto("/admin/core/senderdomain/")
            run_action(page, "check_dns", domain.pk)
            expect(page.locator(".alert-info")).to_contain_text("1")
            domain.refresh_from_db()
            assert domain.verified_at is not None, domain.dns_check
            expect(
                page.locator("#result_list td.field-verified img")
            ).to_have_attribute("alt", "True")
            shot(page, "21-sender-verified")

        with step("3. writes a message from news@ the domain"):
            page.goto("/admin/core/message/add/")
            show_field(page, "id_from_email")
            page.fill("#id_from_name", "Книжная лавка")
            page.fill("#id_from_email", f"news@{SENDER_DOMAIN}")
            show_field(page, "id_subject")
            page.fill("#id_subject", "Новинки недели")
            page.fill(
                "#id_body",
                "Здравствуйте, {{ client.full_name }}!\n\n"
                "Отписаться: {{ unsubscribe_url }}",
            )
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/message/"))
            message = Message.objects.get(owner=owner)
            assert message.from_email == f"news@{SENDER_DOMAIN}"

        with step("4. a mailing of it, sent now"):
            page.goto("/admin/core/mailing/add/")
            show_field(page, "id_title")
            page.fill("#id_title", "Новинки")
            pick_autocomplete(page, "message", "Новинки", "Новинки недели")
            tomorrow = timezone.localtime() + timedelta(days=1)
            show_field(page, "id_start_at_0")
            page.fill("#id_start_at_0", tomorrow.strftime("%Y-%m-%d"))
            page.fill("#id_start_at_1", "10:00:00")
            for person in recipients:
                pick_autocomplete(page, "clients", person.email, person.email)
            page.locator("[name=_save]").click()
            expect(page).to_have_url(at("/admin/core/mailing/"))
            mailing = Mailing.objects.get(owner=owner)
            run_action(page, "send_now", mailing.pk)
            expect(page.locator(".alert-success")).to_be_visible()

        with step("5. every message at the sink verifies with both verifiers"):

            def all_delivered():
                worker.check_alive()
                return len(sink.recorder.raw) >= len(recipients)

            assert wait_until(all_delivered, timeout=DELIVERY_TIMEOUT), worker.tail()
            lookup = dns_txt(dns_server)
            for (tos, parsed), raw in zip(
                sink.messages, sink.recorder.raw, strict=True
            ):
                assert parsed["From"].addresses[0].addr_spec == (
                    f"news@{SENDER_DOMAIN}"
                ), tos
                assert f"d={SENDER_DOMAIN};" in parsed["DKIM-Signature"]
                assert dkim.verify(raw, dnsfunc=lookup), tos
                good, said = opendkim.verify(raw)
                assert good, said
            # One changed byte of a body fails both.
            forged = sink.recorder.raw[0].replace(
                "Здравствуйте".encode(), "Здравствуйтe".encode(), 1
            )
            if forged == sink.recorder.raw[0]:  # the body is encoded
                forged = sink.recorder.raw[0][:-8] + b"X" + sink.recorder.raw[0][-7:]
            assert not dkim.verify(forged, dnsfunc=lookup)
            assert not opendkim.verify(forged)[0]

        with step("6. the report names the sender and its signature"):
            assert wait_until(
                lambda: MailingRun.objects.filter(
                    mailing=mailing, sent_count=len(recipients)
                ).exists(),
                timeout=30,
            ), worker.tail()
            run = MailingRun.objects.get(mailing=mailing)
            page.goto(f"/admin/core/mailingrun/{run.pk}/change/")
            expect(page.locator("body")).to_contain_text(f"news@{SENDER_DOMAIN}")
            expect(page.locator("body")).to_contain_text("DKIM")
            shot(page, "22-sender-report")
    except BaseException:
        failure_kept(page, worker, "failure-sender")
        raise

    docs_screenshots_update(FOR_DOCS_SENDER)
