"""Write data/external/dates.csv: sentences that mention a date, each with that date in ISO 8601 (a text-to-text
normalisation task: extract the date and rewrite it as YYYY-MM-DD).

The dates are written the ways people write them, one way per domain: ``written`` (March 5, 2024 / 5 March
2024), ``abbreviated`` (5-Mar-24 / Mar 5 '24), ``numeric`` (US month first: 03/05/2024) and ``ordinal`` (the
5th of March, 2024). Generated from templates with a fixed seed, so the file is the same on every machine; the
tests generate it the same way. Usage: python examples/text-to-text/make_dates.py [output.csv] [rows]
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from pathlib import Path

MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
SENTENCES = [
    "Invoice {n} was issued on {date} and is due within 30 days.",
    "Please move the review meeting to {date}.",
    "The lease on unit {n} ends {date}, according to the landlord.",
    "Our records show the parcel was delivered on {date}.",
    "Can we confirm the appointment for {date}?",
    "The contract was signed {date} by both parties.",
    "Shipment {n} left the warehouse on {date}.",
    "Reminder: the application window closes {date}.",
    "I was born on {date} in a small town.",
    "The firmware update is scheduled for {date}.",
    "Ticket {n} was opened {date} and is still unresolved.",
    "Payment of order {n} arrived on {date}.",
]


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def written(date: dt.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1]
    return rng.choice([f"{month} {date.day}, {date.year}", f"{date.day} {month} {date.year}"])


def abbreviated(date: dt.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1][:3]
    return rng.choice(
        [f"{date.day}-{month}-{date.year}", f"{month} {date.day} {date.year}", f"{month}. {date.day}, {date.year}"]
    )


def numeric(date: dt.date, rng: random.Random) -> str:
    return rng.choice([f"{date.month:02d}/{date.day:02d}/{date.year}", f"{date.month}/{date.day}/{date.year}"])


def ordinal(date: dt.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1]
    return rng.choice(
        [f"the {_ordinal(date.day)} of {month}, {date.year}", f"{month} {_ordinal(date.day)}, {date.year}"]
    )


STYLES = {"written": written, "abbreviated": abbreviated, "numeric": numeric, "ordinal": ordinal}


def date_rows(n: int = 1000, seed: int = 11) -> list[dict[str, str]]:
    rng = random.Random(seed)
    first, span = dt.date(1990, 1, 1), (dt.date(2030, 12, 31) - dt.date(1990, 1, 1)).days
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    styles = sorted(STYLES)
    while len(rows) < n:
        style = styles[len(rows) % len(styles)]
        date = first + dt.timedelta(days=rng.randrange(span))
        text = rng.choice(SENTENCES).format(n=rng.randint(100, 99_999), date=STYLES[style](date, rng))
        if text not in seen:
            seen.add(text)
            rows.append({"id": f"date-{len(rows)}", "text": text, "target": date.isoformat(), "domain": style})
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path("data/external/dates.csv")
    rows = date_rows(int(argv[2])) if len(argv) > 2 else date_rows()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "target", "domain"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
