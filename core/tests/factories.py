import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from core.models import User

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
