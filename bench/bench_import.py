"""Recipient CSV import and export at 100,000 rows.

A generated 100,000-row CSV (a third of the names in Cyrillic, one row in a
hundred repeating an earlier address in another case) is imported into one
owner's list while ten other owners hold recipients of their own; then
imported again with changed comments (the update path); then uploaded,
checked and confirmed through the admin for a second owner; and finally the
first owner's 100,000 recipients are exported through the admin's streaming
export. Each phase runs in a fresh process, so each peak memory is its own.

Targets: import ≥ 5,000 rows/s with peak memory < 500 MB; the admin's upload
and confirm together well under 30 s; the export streams in < 500 MB.

    .venv/bin/python -m bench import
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench import
"""

import csv
import io
import json
import os
import random
import re
import subprocess
import sys

from bench.support import (
    BASE_DIR,
    peak_rss_mb,
    setup_django,
    teardown_django,
    timed,
    verdict,
)

ROWS = 100_000
DUPLICATE_EVERY = 100
OTHER_OWNERS = 10
ROWS_PER_OTHER_OWNER = 5_000
TARGET_ROWS_PER_SECOND = 5_000
TARGET_PEAK_MB = 500
TARGET_ADMIN_SECONDS = 30

DATA_DIR = BASE_DIR / "var" / "bench"
FIRST_FILE = DATA_DIR / "clients.csv"
SECOND_FILE = DATA_DIR / "clients-changed.csv"
OWNER = "owner@bench.example"
ADMIN_OWNER = "admin-owner@bench.example"

FIRST_NAMES = ["Анна", "Борис", "Елена", "Фёдор", "John", "Mary", "Peter", "Olga"]
LAST_NAMES = ["Иванова", "Петров", "Смирнова", "Кузнецов", "Smith", "Brown", "Lee"]


def write_csv(path, *, seed, comment_prefix):
    """The 100,000-row file, as Excel saves "CSV UTF-8"."""
    rng = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["E-mail", "Full name", "Comment"])
    for n in range(ROWS):
        if n and n % DUPLICATE_EVERY == 0:
            email = f"person{n // 3}@example.com".upper()
        else:
            email = f"person{n}@example.com"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        comment = f'{comment_prefix} {n}, met at "Expo"' if n % 7 == 0 else ""
        writer.writerow([email, name, comment])
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode())


def seed():
    from django.contrib.auth.models import Group

    from core.models import Client, User
    from core.services.roles import CLIENTS

    clients = Group.objects.get(name=CLIENTS)
    for email in (OWNER, ADMIN_OWNER):
        user = User.objects.create_user(email, "bench-password", is_staff=True)
        user.groups.add(clients)
    for n in range(OTHER_OWNERS):
        other = User.objects.create_user(f"other{n}@bench.example", "x")
        # Some of their addresses are the owner's too: they must stay theirs.
        Client.objects.bulk_create(
            Client(owner=other, email=f"person{m}@example.com", full_name="Other")
            for m in range(n * 1000, n * 1000 + ROWS_PER_OTHER_OWNER)
        )
    write_csv(FIRST_FILE, seed=1, comment_prefix="first")
    # Other names and comments: nearly every row becomes an update.
    write_csv(SECOND_FILE, seed=2, comment_prefix="changed")


def top_up_to(count):
    """Give the owner exactly `count` recipients, for a round export figure."""
    from core.models import Client, User

    owner = User.objects.get(email=OWNER)
    missing = count - Client.objects.filter(owner=owner).count()
    Client.objects.bulk_create(
        Client(owner=owner, email=f"extra{n}@example.com") for n in range(missing)
    )


def others_untouched():
    from core.models import Client

    theirs = Client.objects.filter(owner__email__startswith="other")
    return theirs.filter(full_name="Other").count() == (
        OTHER_OWNERS * ROWS_PER_OTHER_OWNER
    )


# --- phases, each in its own process ---------------------------------------


def connect():
    """Django on the database the parent prepared."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # The development settings (no SECRET_KEY needed); DEBUG goes off below.
    os.environ.setdefault("DEBUG", "True")
    os.environ.setdefault("ENV_FILE", str(BASE_DIR / ".env"))
    os.environ["AXES_ENABLED"] = "False"
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = os.environ["BENCH_DB_NAME"]


def phase_import(path):
    from core.models import User
    from core.services.recipients import ImportConsent, clients_import

    owner = User.objects.get(email=OWNER)
    data = path.read_bytes()
    with timed() as clock:
        consent = ImportConsent(text="Benchmark: they all agreed.")
        result = clients_import(owner=owner, data=data, consent=consent)
    return {
        "seconds": clock["seconds"],
        "created": result.created,
        "updated": result.updated,
        "merged": result.merged,
    }


def logged_in_browser(email):
    from django.test import Client as Browser

    from core.models import User

    browser = Browser()
    browser.force_login(User.objects.get(email=email))
    return browser


def phase_admin():
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    browser = logged_in_browser(ADMIN_OWNER)
    upload = SimpleUploadedFile("clients.csv", FIRST_FILE.read_bytes(), "text/csv")
    with timed() as check:
        page = browser.post(
            reverse("admin:core_client_import"), {"import_file": upload, "format": "0"}
        )
    # The confirm form's hidden fields, as a browser sends them back.
    confirm_form = dict(
        re.findall(
            r'name="(import_file_name|original_file_name|format|resource)" '
            r'value="([^"]*)"',
            page.content.decode(),
        )
    )
    assert {"import_file_name", "format"} <= confirm_form.keys(), (
        "the file did not pass the check"
    )
    # The owner's word that these people consented, which the confirm asks.
    confirm_form["consent"] = "on"
    with timed() as confirm:
        done = browser.post(reverse("admin:core_client_process_import"), confirm_form)
    assert done.status_code == 302, f"confirm failed: {done.status_code}"
    return {"check": check["seconds"], "confirm": confirm["seconds"]}


def phase_export():
    from django.urls import reverse

    browser = logged_in_browser(OWNER)
    size = lines = 0
    with timed() as clock:
        response = browser.get(reverse("admin:core_client_export"))
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\r\n")
    return {"seconds": clock["seconds"], "rows": lines - 1, "mb": size / 1024 / 1024}


def phase_baseline():
    """Log in and open the list: what a process needs before any export."""
    from django.urls import reverse

    browser = logged_in_browser(OWNER)
    assert browser.get(reverse("admin:core_client_changelist")).status_code == 200
    return {}


PHASES = {
    "baseline": phase_baseline,
    "import": lambda: phase_import(FIRST_FILE),
    "reimport": lambda: phase_import(SECOND_FILE),
    "admin": phase_admin,
    "export": phase_export,
}


def run_phase(name, db_name):
    """Run one phase in a fresh interpreter; return its figures."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.bench_import", "--phase", name],
        cwd=BASE_DIR,
        env={**os.environ, "BENCH_DB_NAME": db_name},
        capture_output=True,
        text=True,
    )
    if completed.returncode:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"phase {name} failed")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    engine = setup_django()
    from django.conf import settings

    missed = []

    def report(label, ok, text):
        if not ok:
            missed.append(label)
        print(f"{label:<28} {text}  {verdict(ok)}", flush=True)

    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        seed()
        db_name = str(settings.DATABASES["default"]["NAME"])
        print(
            f"{engine}: {ROWS:,} rows, 1 in {DUPLICATE_EVERY} a duplicate; "
            f"{OTHER_OWNERS} other owners with {ROWS_PER_OTHER_OWNER:,} each",
            flush=True,
        )
        phases = (("import", "import (new list)"), ("reimport", "import (updates)"))
        for name, label in phases:
            figures = run_phase(name, db_name)
            rate = ROWS / figures["seconds"]
            report(
                f"{label} speed",
                rate >= TARGET_ROWS_PER_SECOND,
                f"{rate:8,.0f} rows/s ({figures['seconds']:.1f} s; created "
                f"{figures['created']:,}, updated {figures['updated']:,}, merged "
                f"{figures['merged']:,}; target ≥ {TARGET_ROWS_PER_SECOND:,})",
            )
            report(
                f"{label} memory",
                figures["peak_mb"] < TARGET_PEAK_MB,
                f"{figures['peak_mb']:8,.0f} MB peak RSS (target < {TARGET_PEAK_MB})",
            )
        figures = run_phase("admin", db_name)
        total = figures["check"] + figures["confirm"]
        report(
            "admin upload+confirm",
            total < TARGET_ADMIN_SECONDS,
            f"{total:8.1f} s (check {figures['check']:.1f} s, confirm "
            f"{figures['confirm']:.1f} s; {figures['peak_mb']:,.0f} MB peak; "
            f"target < {TARGET_ADMIN_SECONDS} s)",
        )
        top_up_to(ROWS)
        baseline = run_phase("baseline", db_name)["peak_mb"]
        figures = run_phase("export", db_name)
        report(
            "export (streamed) memory",
            figures["peak_mb"] < TARGET_PEAK_MB and figures["rows"] == ROWS,
            f"{figures['peak_mb']:8,.0f} MB peak RSS ({figures['rows']:,} rows, "
            f"{figures['mb']:.1f} MB in {figures['seconds']:.1f} s; a process "
            f"that only opens the list: {baseline:,.0f} MB; target < "
            f"{TARGET_PEAK_MB})",
        )
        report(
            "other owners untouched",
            others_untouched(),
            f"{OTHER_OWNERS * ROWS_PER_OTHER_OWNER:8,} recipients, same owner and name",
        )
    finally:
        teardown_django()
    if missed:
        sys.exit(1)


def main_phase(name):
    connect()
    figures = PHASES[name]()
    figures["peak_mb"] = peak_rss_mb()
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--phase":
        main_phase(sys.argv[2])
    else:
        main()
