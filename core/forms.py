"""Forms of the public site."""

from django import forms
from django.contrib.auth import authenticate, get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from core.models import Consent, Field, Tag
from core.models.audience import TEXT_MAX_LENGTH

User = get_user_model()


class SignupForm(forms.Form):
    email = forms.EmailField(
        label=_("E-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    full_name = forms.CharField(
        label=_("Name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"])

    def clean(self):
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", _("The two passwords do not match."))
        elif password1:
            candidate = User(
                email=cleaned.get("email", ""), full_name=cleaned.get("full_name", "")
            )
            try:
                password_validation.validate_password(password1, candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class EmailAuthenticationForm(AuthenticationForm):
    """Log in by e-mail; unconfirmed and blocked accounts are told why not."""

    username = forms.EmailField(
        label=_("E-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "Wrong e-mail or password. Note that the password is case-sensitive."
        ),
        "inactive": _(
            "This account is blocked. Contact the service's managers if you "
            "think this is a mistake."
        ),
        "unverified": _(
            "Please confirm your e-mail address first: open the link we sent you."
        ),
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.unverified = False

    def clean(self):
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if email and password:
            self.user_cache = authenticate(
                self.request, username=email, password=password
            )
            if self.user_cache is None:
                # The backend refuses blocked users like wrong passwords; only
                # someone who knows the password learns that the account is
                # blocked (core/backends.py), at the cost of a wrong one.
                if getattr(self.request, "login_refused_blocked", False):
                    raise forms.ValidationError(
                        self.error_messages["inactive"], code="inactive"
                    )
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_verified:
            self.unverified = True
            raise forms.ValidationError(
                self.error_messages["unverified"], code="unverified"
            )


class EmailForm(forms.Form):
    email = forms.EmailField(
        label=_("E-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"])


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = [
            "full_name",
            "track_opens_default",
            "track_clicks_default",
            "track_recipients_default",
        ]


# --- subscribing ----------------------------------------------------------

ATTRIBUTE_PREFIX = "attribute_"


def attribute_form_field(
    field, *, required: bool = False, date_widget=None
) -> forms.Field:
    """The input for one custom field (the admin's recipient form and the
    subscription forms); its value is checked by the field's own rule,
    Field.value_of, when the form is cleaned."""
    common = {"label": field.label, "required": required}
    if field.kind == Field.Kind.DATE:
        widget = date_widget or forms.DateInput(attrs={"type": "date"})
        return forms.DateField(widget=widget, **common)
    if field.kind == Field.Kind.CHOICE:
        choices = [("", "—"), *((choice, choice) for choice in field.choices)]
        return forms.ChoiceField(choices=choices, **common)
    if field.kind == Field.Kind.BOOLEAN:
        if required:
            return forms.BooleanField(**common)
        return forms.NullBooleanField(**common)
    if field.kind == Field.Kind.NUMBER:
        return forms.CharField(max_length=40, **common)
    return forms.CharField(max_length=TEXT_MAX_LENGTH, **common)


def attribute_values(form, fields) -> dict:
    """The custom field values a bound, cleaned form holds, by each field's
    own rule; errors are added to the form's inputs."""
    values = {}
    for field in fields:
        name = ATTRIBUTE_PREFIX + field.key
        if name not in form.fields:
            continue
        try:
            value = field.value_of(form.cleaned_data.get(name))
        except ValidationError as error:
            form.add_error(name, error)
            continue
        if value is not None:
            values[field.key] = value
    return values


class SubscribeForm(forms.Form):
    """A subscription form's questions, as its owner set them."""

    token = forms.CharField(widget=forms.HiddenInput, max_length=500)
    # A trap: hidden from people, filled by bots that fill every input.
    website = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )
    email = forms.EmailField(
        label=_("E-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def __init__(self, *args, subscription, **kwargs):
        super().__init__(*args, **kwargs)
        self.subscription = subscription
        if subscription.ask_name:
            self.fields["full_name"] = forms.CharField(
                label=_("Name"),
                max_length=255,
                required=False,
                widget=forms.TextInput(attrs={"autocomplete": "name"}),
            )
        required = {field.pk for field in subscription.required_fields.all()}
        self.asked = list(subscription.fields.all())
        for field in self.asked:
            if field.kind == Field.Kind.BOOLEAN:
                # A box to tick: unticked is "no", so it is never required.
                question = forms.BooleanField(label=field.label, required=False)
            else:
                question = attribute_form_field(field, required=field.pk in required)
            self.fields[ATTRIBUTE_PREFIX + field.key] = question
        self.fields["personal_data"] = forms.BooleanField(
            label=subscription.personal_data_text, required=True
        )
        if subscription.ask_marketing:
            self.fields["marketing"] = forms.BooleanField(
                label=subscription.marketing_text, required=True
            )

    @property
    def is_bot(self) -> bool:
        return bool(self.data.get("website"))

    def clean(self):
        cleaned = super().clean()
        cleaned["attributes"] = attribute_values(self, self.asked)
        return cleaned

    def consents(self) -> list[str]:
        given = [Consent.Kind.PERSONAL_DATA.value]
        if self.cleaned_data.get("marketing"):
            given.append(Consent.Kind.MARKETING.value)
        return given


class PreferencesForm(forms.Form):
    """What a recipient may change of their own subscription."""

    full_name = forms.CharField(
        label=_("Name"),
        max_length=255,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    topics = forms.ModelMultipleChoiceField(
        label=_("Topics"),
        queryset=Tag.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, editable, topics, **kwargs):
        super().__init__(*args, **kwargs)
        self.editable = editable
        for field in editable:
            self.fields[ATTRIBUTE_PREFIX + field.key] = attribute_form_field(field)
        if topics:
            self.fields["topics"].queryset = Tag.objects.filter(
                pk__in=[tag.pk for tag in topics]
            )
        else:
            del self.fields["topics"]

    def clean(self):
        cleaned = super().clean()
        cleaned["attributes"] = attribute_values(self, self.editable)
        return cleaned
