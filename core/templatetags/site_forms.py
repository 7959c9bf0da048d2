from django import template

register = template.Library()


@register.filter
def bootstrap(field):
    """Render a bound field's widget with Bootstrap's classes."""
    checkbox = getattr(field.field.widget, "input_type", "") == "checkbox"
    css = "form-check-input" if checkbox else "form-control"
    if field.errors:
        css += " is-invalid"
    return field.as_widget(attrs={"class": css})


@register.filter
def is_checkbox(field):
    return getattr(field.field.widget, "input_type", "") == "checkbox"
