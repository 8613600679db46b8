"""An experiment on the abandoned cart's reminder, and a ledger in which one variant wins."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from tests.report.builders import T0, Store
from triggermail.journeys import JourneysConfig, load_journeys

NAME = "abandoned_cart.reminder"
NOW = T0 + timedelta(days=30)
"""Long after every entry's window closed."""
DEFAULTS = Path(__file__).parent.parent.parent / "triggermail" / "journeys.toml"
VARIANT = """
[[abandoned_cart.steps.variants]]
name = "later"
after = "1h"

[abandoned_cart.steps.auto_winner]
min_recipients = 10
probability = 0.9
"""


def journeys_toml(path: Path) -> Path:
    """The packaged journeys with the reminder's experiment: ``later`` (1 h) against
    ``control`` (30 min), winner automatic at 10 recipients each and 90 %."""
    step = 'template = "abandoned_cart/reminder"\n'
    text = DEFAULTS.read_text(encoding="utf-8")
    assert step in text
    path.write_text(text.replace(step, step + VARIANT, 1), encoding="utf-8")
    return path


def config(tmp_path: Path) -> JourneysConfig:
    return load_journeys(journeys_toml(tmp_path / "journeys.toml"))


def later_wins(session: Session) -> None:
    """40 reminders each: 4 bought after ``control``, 20 after ``later``."""
    store = Store(session)
    for variant, converted in (("control", 4), ("later", 20)):
        for i in range(40):
            customer = f"{variant}-{i}"
            store.send(customer, "reminder", T0, variant=variant)
            if i < converted:
                store.order(customer, T0 + timedelta(hours=2))
    session.commit()
