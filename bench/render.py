"""E-mails rendered per second: subject, preheader, HTML with CSS inlined, and text.

One process pinned to one core, a cart of 5 products, the reminder and the
incentive in turn, each in one of the four locales in turn, with a different
customer name, prices and coupon deadline each time. Timed after a warm-up
(templates compiled, catalogs loaded), so the figure is a worker's steady state.

    .venv/bin/python bench/render.py [--quick] [--seconds N]

The last line is ``RESULT per_s=… ms_per_email=… html_kb=…``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.rendering import Renderer
from activities.samples import sample_context
from triggermail.journeys import load_journeys

LOCALES = ("en", "fr", "ja", "uk")
EXPIRES = datetime(2030, 1, 2, 18, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-second run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    journeys = load_journeys()
    renderer = Renderer(shop_locale=journeys.shop.locale)
    jobs = []
    for step in journeys.abandoned_cart.steps:
        for locale in LOCALES:
            context = sample_context(
                journeys,
                step=step.name,
                coupon_percent=step.coupon_percent,
                locale=locale,
                products=5,
            )
            for line in context["cart"]["lines"]:
                line["base_price"] = line["price"]
            jobs.append((step.template, context, locale))

    def render(i: int) -> int:
        template, context, locale = jobs[i % len(jobs)]
        # A different name, prices and deadline each time: no cache can serve one e-mail
        # from another's work, as it could for a real shop's repeating prices.
        context["customer"]["first_name"] = f"Customer {i}"
        cents = Decimal(i) / 100
        total = Decimal(0)
        for line in context["cart"]["lines"]:
            line["price"] = line["base_price"] + cents
            line["line_total"] = line["price"] * line["quantity"]
            total += line["line_total"]
        context["cart"]["total"] = total
        if context["coupon"] is not None:
            context["coupon"]["expires_at"] = EXPIRES + timedelta(minutes=i)
        rendered = renderer.render(template, context, locale=locale)
        return len(rendered.html)

    for i in range(300):  # warm-up: every template compiled, every code path taken
        render(i)
    gc.freeze()  # as the worker does once started (worker.py)

    sizes, rounds = [], []
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        round_start = time.perf_counter()
        for _ in range(100):
            sizes.append(render(done))
            done += 1
        rounds.append((time.perf_counter() - round_start) / 100)
    elapsed = time.perf_counter() - started

    per_s = done / elapsed
    print(f"{done} e-mails in {elapsed:.2f} s on one core ({len(jobs)} step-locale variants)")
    print(
        f"per e-mail: median {statistics.median(rounds) * 1e3:.3f} ms, "
        f"best round {min(rounds) * 1e3:.3f} ms; HTML {statistics.mean(sizes) / 1024:.1f} KiB"
    )
    print(
        f"RESULT per_s={per_s:.0f} ms_per_email={1e3 / per_s:.3f} "
        f"html_kb={statistics.mean(sizes) / 1024:.1f}"
    )


if __name__ == "__main__":
    main()
