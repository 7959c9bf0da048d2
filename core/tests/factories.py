from datetime import timedelta

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from core.models import Article, Attempt, Client, Mailing, MailingRun, Message, User

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    class Params:
        verified = factory.Trait(
            email_verified_at=factory.LazyFunction(timezone.now), is_staff=True
        )

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def groups(self, create, names, **kwargs):
        if create and names:
            self.groups.add(*(Group.objects.get_or_create(name=n)[0] for n in names))

    @factory.post_generation
    def is_superuser_staff(self, create, extracted, **kwargs):
        if create and self.is_superuser and not self.is_staff:
            self.is_staff = True
            self.save(update_fields=["is_staff"])


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    owner = factory.SubFactory(UserFactory, verified=True, groups=["clients"])
    email = factory.Sequence(lambda n: f"recipient{n}@example.org")
    full_name = factory.Faker("name", locale="ru_RU")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    owner = factory.SubFactory(UserFactory, verified=True, groups=["clients"])
    subject = factory.Sequence(lambda n: f"Новости №{n}")
    body = "Здравствуйте, {{ client.full_name }}!\n\nОтписаться: {{ unsubscribe_url }}"


class MailingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mailing
        skip_postgeneration_save = True

    class Params:
        # A one-off mailing that went out yesterday: nothing is left to send.
        completed = factory.Trait(
            start_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=1)),
            last_run_at=factory.SelfAttribute("start_at"),
        )

    owner = factory.SubFactory(UserFactory, verified=True, groups=["clients"])
    title = factory.Sequence(lambda n: f"Рассылка {n}")
    message = factory.SubFactory(MessageFactory, owner=factory.SelfAttribute("..owner"))
    start_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    periodicity = Mailing.Periodicity.ONCE
    # next_run_at follows the schedule (Mailing.schedule_derive).

    @factory.post_generation
    def clients(self, create, extracted, **kwargs):
        if create and extracted:
            self.clients.add(*extracted)


class MailingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MailingRun

    mailing = factory.SubFactory(MailingFactory)
    owner = factory.SelfAttribute("mailing.owner")
    scheduled_for = factory.LazyFunction(timezone.now)
    status = MailingRun.Status.FINISHED


class AttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Attempt

    run = factory.SubFactory(MailingRunFactory)
    owner = factory.SelfAttribute("run.owner")
    client = factory.SubFactory(ClientFactory, owner=factory.SelfAttribute("..owner"))
    email = factory.SelfAttribute("client.email")
    status = Attempt.Status.SENT
    tries = 1
    server_response = "250 2.0.0 Ok: queued"
    attempted_at = factory.LazyFunction(timezone.now)


class ArticleFactory(factory.django.DjangoModelFactory):
    """A published article unless told otherwise (status=Article.Status.…)."""

    class Meta:
        model = Article

    author = factory.SubFactory(UserFactory, verified=True, groups=["clients"])
    title = factory.Sequence(lambda n: f"Статья о рассылках №{n}")
    source = "Как **правильно** писать письма подписчикам.\n\n- коротко\n- по делу"
    status = Article.Status.PUBLISHED
    published_at = factory.LazyAttribute(
        lambda article: (
            timezone.now() if article.status == Article.Status.PUBLISHED else None
        )
    )


def due_mailing(owner, recipients, **fields):
    """A mailing to `recipients` whose start has just passed: the next tick
    sends it."""
    fields.setdefault("start_at", timezone.now() - timedelta(minutes=1))
    mailing = MailingFactory(owner=owner, clients=recipients, **fields)
    mailing.next_run_at = mailing.start_at
    mailing.save()
    return mailing


def people(owner, count, **fields):
    return [
        ClientFactory(owner=owner, email=f"person{i}@example.org", **fields)
        for i in range(count)
    ]
