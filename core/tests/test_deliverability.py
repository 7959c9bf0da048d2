"""Deliverability: SpamAssassin (Debian's, its own rules) scores a signed
sample mailing as a receiving server sees it.

The mail is built by the send path, DKIM-signed for the shop's verified
domain and handed over SMTP; the receiving server's Return-Path and
Received lines are put in front, as an MX writes them. SpamAssassin asks
only the test's own DNS server, which publishes the shop's DKIM, SPF and
DMARC records and the service's SPF, and answers nothing else (so every
blocklist lookup finds nothing); Bayes, Razor, Pyzor and DCC are off.
What our headers and structure earn stays at or under SPAM_POINTS_MAX.
"""

import email
import re
import shutil
import subprocess

import pytest
from django.utils import timezone, translation

from .test_senders import records

pytestmark = pytest.mark.django_db

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
SPAM_POINTS_MAX = 0.5
# The service's own host, the one its relay sends from, and its bounce host
# (RETURN_PATH_HOST), which clients alias for their return path. The
# address is only written in a Received line: nothing is ever sent to it.
SERVICE = "post.example.net"
SERVICE_IP = "46.4.10.10"
BOUNCE_HOST = f"bounces.{SERVICE}"
TOTAL = re.compile(r"\((-?\d+(?:\.\d+)?) points, ")
RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.MULTILINE)

PARAGRAPHS = [
    "В декабре у нас новые букеты: еловые ветви с хлопком, сухоцветы и "
    "зимние композиции в деревянных ящиках. Каждый собираем в день заказа "
    "и привозим в течение трёх часов.",
    "Доставка по городу бесплатна при заказе от двух тысяч рублей, за "
    "город — по тарифу курьерской службы. Открытку с вашим текстом "
    "подпишем от руки.",
    "Двадцатого декабря проводим мастер-класс по новогодним венкам: два "
    "часа, все материалы наши, чай и пирог тоже. Мест двенадцать, запись по "
    "телефону или ответом на это письмо.",
    "Постоянным покупателям — скидка десять процентов на всё до конца года. "
    "Назовите свой номер телефона при заказе, и мы её применим.",
    "Мы работаем без выходных с девяти до девяти, тридцать первого декабря — "
    "до шести вечера. Первого и второго января магазин закрыт.",
    "Для тех, кто заказывает к корпоративу: соберём двадцать и больше "
    "одинаковых композиций, привезём к назначенному часу и расставим сами. "
    "Счёт и закрывающие документы пришлём на почту.",
    "Как сохранить букет дольше: подрежьте стебли наискось, меняйте воду "
    "каждый день и держите вазу подальше от батареи. Хвойные ветви любят "
    "прохладу и опрыскивание.",
    "В январе привезём первые тюльпаны из теплиц Подмосковья. Если хотите "
    "получить их раньше всех, ответьте на это письмо, и мы отложим для вас "
    "охапку.",
    "Подарочные сертификаты на любую сумму можно купить в магазине и на "
    "сайте: их удобно дарить тем, чей вкус вы не знаете наверняка.",
    "Новогодние ели в горшках снова в продаже: пихта, голубая ель и сосна "
    "высотой от полуметра до двух метров. После праздников их можно "
    "высадить на даче, а мы подскажем, как сделать это весной.",
    "Детям на мастер-классе выдадим фартуки и маленькие секаторы с круглыми "
    "концами; родители могут остаться с ними или подождать в кафе напротив.",
    "Если букет не понравился, позвоните нам в течение суток: заменим или "
    "вернём деньги без лишних вопросов.",
    "Наш новый адрес на Садовой — в двух минутах от метро, во дворе с "
    "фонарями. Парковка для покупателей бесплатна первые полчаса; ищите "
    "зелёную вывеску над входом.",
    "В витрине этой недели — композиции в технике икебана от нашего "
    "флориста Марины: ветки айвы, мох и керамика ручной работы. Каждую "
    "можно заказать в другом размере.",
    "Мы перестали использовать флористическую губку и пластиковую плёнку: "
    "букеты теперь собираем в крафтовую бумагу и льняную ленту, а "
    "композиции — в мох и песок.",
    "Отзывы о доставке и о букетах можно оставить на сайте; каждый месяц "
    "мы разыгрываем среди авторов отзывов корзину сезонных цветов.",
    "Спасибо, что остаётесь с нами. Хороших вам праздников!",
]
SHORT = PARAGRAPHS[:2]
CATALOG = "https://shop.example/catalog"


def message_bodies(paragraphs) -> tuple[str, str]:
    text = "\n\n".join(
        [
            "Здравствуйте, {{ client.full_name }}!",
            *paragraphs,
            f"Каталог: {CATALOG}",
            "Цветочная лавка, Москва, ул. Садовая, 5",
            "Отписаться от рассылки: {{ unsubscribe_url }}",
        ]
    )
    html = (
        '<!doctype html>\n<html lang="ru"><head><meta charset="utf-8">'
        "<title>Новые букеты к декабрю</title></head>\n<body>\n"
        "<h1>Здравствуйте, {{ client.full_name }}!</h1>\n"
        + "".join(f"<p>{paragraph}</p>\n" for paragraph in paragraphs)
        + f'<p><a href="{CATALOG}">Смотреть каталог</a></p>\n'
        "<p>Цветочная лавка, Москва, ул. Садовая, 5<br>\n"
        '<a href="{{ unsubscribe_url }}">Отписаться от рассылки</a></p>\n'
        "</body></html>\n"
    )
    return text, html


def as_received(raw: bytes, *, envelope_sender: str, recipient: str) -> bytes:
    """The message as the recipient's MX stores it: with the envelope sender
    and a line saying who handed it over."""
    stamp = timezone.now().strftime("%a, %d %b %Y %H:%M:%S +0000")
    trace = (
        f"Return-Path: <{envelope_sender}>\r\n"
        f"Received: from {SERVICE} ({SERVICE} [{SERVICE_IP}])\r\n"
        f"\tby mx.example.org (Postfix) with ESMTPS id 4Tq1Zc3xYz\r\n"
        f"\tfor <{recipient}>; {stamp}\r\n"
    )
    return trace.encode() + raw


def spamassassin(raw: bytes, *, dns_address: str, home) -> tuple[float, dict]:
    """SpamAssassin's verdict on one message: its points, and the rules hit
    with theirs."""
    config = [
        f"dns_server {dns_address}",
        "dns_available yes",
        "use_bayes 0",
        "use_razor2 0",
        "use_pyzor 0",
        "use_dcc 0",
    ]
    done = subprocess.run(
        [SPAMASSASSIN, "-t", "-x", *(f"--cf={line}" for line in config)],
        input=raw,
        capture_output=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C"},
    )
    assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
    report = done.stdout.decode(errors="replace").partition("Content analysis")[2]
    total = TOTAL.search(report)
    assert total, report
    return float(total.group(1)), {
        name: float(points) for points, name in RULE.findall(report)
    }


@pytest.fixture
def send_sample(owner, smtp_server, dns_server, tmp_path, settings):
    """Send one sample newsletter from the shop's verified domain; return
    SpamAssassin's verdict and what the preview warned of."""
    if not shutil.which(SPAMASSASSIN):
        pytest.skip("needs Debian's spamassassin (bash .ci/run installs it)")
    from core.models import SenderDomain
    from core.services.dispatch import dispatch_tick
    from core.services.messages import html_as_sent, message_preview
    from core.services.senders import sender_domain_check

    from .factories import ClientFactory, MessageFactory, due_mailing

    settings.SITE_URL = f"https://{SERVICE}"
    settings.MAILING_FROM_EMAIL = f"news@{SERVICE}"
    settings.BOUNCE_ADDRESS = f"bounces@{SERVICE}"
    settings.SENDER_SPF = f"ip4:{SERVICE_IP}"  # the relay, as SPF names it
    settings.RETURN_PATH_HOST = BOUNCE_HOST
    domain = SenderDomain.objects.create(owner=owner, domain="shop.example")
    published = records(domain, "dkim", "spf", "dmarc")
    # The service's own records, published once by whoever runs it.
    published[BOUNCE_HOST] = [f"v=spf1 ip4:{SERVICE_IP} -all"]
    published[SERVICE] = [f"v=spf1 ip4:{SERVICE_IP} -all"]
    dns_server.publish(
        published,
        cnames={domain.return_path_name: BOUNCE_HOST},
        hosts={SERVICE: SERVICE_IP, BOUNCE_HOST: SERVICE_IP},
    )
    assert sender_domain_check(domain) == dict.fromkeys(
        ["dkim", "spf", "dmarc", "return-path"], "found"
    )

    def send(paragraphs, *, track_opens=True):
        owner.track_opens_default = track_opens
        owner.save(update_fields=["track_opens_default"])
        text, html = message_bodies(paragraphs)
        message = MessageFactory(
            owner=owner,
            subject="Новые букеты к декабрю",
            body=text,
            html_body=html,
            from_name="Цветочная лавка",
            from_email="news@shop.example",
            reply_to="hello@shop.example",
        )
        recipient = ClientFactory(
            owner=owner, email="anna@example.org", full_name="Анна Петрова"
        )
        due_mailing(owner, [recipient], message=message, track_opens=track_opens)
        assert dispatch_tick().sent == 1
        (raw,) = smtp_server.recorder.raw
        (envelope,) = smtp_server.recorder.senders
        # The return path is on the shop's domain, so SPF aligns with From.
        assert envelope.endswith("@bounces.shop.example")
        verdict = spamassassin(
            as_received(raw, envelope_sender=envelope, recipient=recipient.email),
            dns_address=dns_server.address,
            home=tmp_path,
        )
        with translation.override("en"):
            preview = message_preview(message=message, email=recipient.email)
        (html,) = [
            part.get_payload(decode=True).decode()
            for part in email.message_from_bytes(raw).walk()
            if part.get_content_type() == "text/html"
        ]
        estimate = html_as_sent(message=message, client=recipient)
        # What the preview judges by is what goes out, to a few characters.
        assert abs(len(estimate) - len(html)) <= 20, (len(estimate), len(html))
        return verdict, preview["spam_warning"]

    return send


def image_only(hits: dict) -> set:
    return {name for name in hits if name.startswith("HTML_IMAGE_ONLY")}


@pytest.mark.slow
def test_a_signed_newsletter_earns_no_spam_points(send_sample):
    (points, hits), warning = send_sample(PARAGRAPHS)
    # Signed by the From domain, and sent from where its SPF says; the
    # return path is on the same domain as From.
    assert {"DKIM_VALID_AU", "SPF_PASS"} <= set(hits), hits
    assert "HEADER_FROM_DIFFERENT_DOMAINS" not in hits, hits
    assert points <= SPAM_POINTS_MAX, sorted(hits.items())
    assert warning == ""


@pytest.mark.slow
def test_a_short_message_with_the_open_pixel_is_warned_of(send_sample):
    """SpamAssassin counts the pixel as an image in a short HTML part; the
    preview says so before it is sent."""
    (points, hits), warning = send_sample(SHORT)
    assert image_only(hits), hits
    assert "open-tracking pixel" in warning


@pytest.mark.slow
def test_a_short_message_without_the_pixel_earns_no_spam_points(send_sample):
    (points, hits), warning = send_sample(SHORT, track_opens=False)
    assert {"DKIM_VALID_AU", "SPF_PASS"} <= set(hits), hits
    assert not image_only(hits), hits
    assert points <= SPAM_POINTS_MAX, sorted(hits.items())
    assert warning == ""


@pytest.mark.parametrize(
    "paragraphs, opens, image, warned",
    [
        (SHORT, True, False, "pixel"),
        (SHORT, False, False, ""),
        (SHORT, False, True, "image"),
        (PARAGRAPHS, True, True, ""),
    ],
)
def test_the_preview_warns_of_a_short_html_part_with_an_image(
    client, owner, paragraphs, opens, image, warned
):
    """The rule the SpamAssassin tests above hold to, on the preview page."""
    from django.urls import reverse

    from .factories import MessageFactory

    owner.track_opens_default = opens
    owner.save(update_fields=["track_opens_default"])
    text, html = message_bodies(paragraphs)
    if image:
        html = html.replace("</h1>", '</h1><img src="https://shop.example/l.png">')
    message = MessageFactory(owner=owner, body=text, html_body=html)
    client.force_login(owner)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        page = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    warning = page.context["preview"]["spam_warning"]
    shown = 'id="preview-spam-warning"' in page.content.decode()
    assert shown == bool(warned)
    if warned == "pixel":
        assert "the open-tracking pixel is one" in warning
        assert "open tracking off" in warning
    if warned == "image":
        assert "pixel" not in warning and "leave the image out" in warning
