"""``triggermail preview``: a step's e-mail written to files, as a customer would get it.

With sample data (the data the worker's start-up check renders), or for a real
customer from the store through the same context-building code as the real send.
Nothing is recorded and no coupon is created.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from activities.content import journey_content
from activities.email import render_context
from activities.rendering import Rendered, Renderer, TemplateError
from activities.samples import ORDER_JOURNEYS, sample_context
from triggermail.durations import format_duration
from triggermail.journey_tables import Journey, Step
from triggermail.journeys import JourneysConfig
from triggermail.store import Cart, Coupon, Customer, Event, Order
from workflows.types import SendEmailInput, StepSpec

PREVIEW_COUPON = "PREVIEW-CODE"
"""Shown where a real send creates a unique code; previews must not create one."""


class PreviewError(Exception):
    """What to preview does not exist; the message says what does."""


@dataclass(frozen=True)
class Preview:
    journey: str
    step: str
    locale: str
    rendered: Rendered
    html_path: Path
    text_path: Path
    variant: str = "control"


def find_step(journeys: JourneysConfig, journey: str, step: str) -> Step:
    names = [name for name in journeys.journey_names() if getattr(journeys, name) is not None]
    if journey not in names:
        raise PreviewError(f"no journey {journey!r}; the journeys are {', '.join(names)}")
    config: Journey = getattr(journeys, journey)
    for candidate in config.steps:
        if candidate.name == step:
            return candidate
    steps = ", ".join(s.name for s in config.steps)
    raise PreviewError(f"journey {journey!r} has no step {step!r}; its steps are {steps}")


def find_variant(journeys: JourneysConfig, journey: str, step: str, variant: str) -> StepSpec:
    """The step as customers assigned ``variant`` get it (``control``: as written)."""
    config = find_step(journeys, journey, step)
    if variant != "control" and config.variant(variant) is None:
        names = ", ".join(name for name, _ in config.weights())
        raise PreviewError(f"step {step!r} has no variant {variant!r}; its variants are {names}")
    return config.spec(variant)


def render_sample(
    renderer: Renderer,
    journeys: JourneysConfig,
    journey: str,
    step: str,
    *,
    locale: str | None,
    variant: str = "control",
) -> Rendered:
    spec = find_variant(journeys, journey, step, variant)
    chosen = renderer.locale_for(locale or journeys.shop.locale)
    context = sample_context(
        journeys, journey=journey, step=step, coupon_percent=spec.coupon_percent, locale=chosen
    )
    return renderer.render(
        spec.template,
        context,
        locale=locale or journeys.shop.locale,
        subject=journeys.subject_of(journey, step, variant),
    )


def render_customer(
    renderer: Renderer,
    journeys: JourneysConfig,
    sessions: sessionmaker[Session],
    journey: str,
    step: str,
    *,
    customer_id: str,
    locale: str | None,
    now: datetime,
    variant: str = "control",
) -> Rendered:
    """The e-mail this customer would get now, with their latest cart.

    Raises:
        PreviewError: the customer is not in the store.
        TemplateError: the step cannot render for them (e.g. it shows a cart they lack).
    """
    spec = find_variant(journeys, journey, step, variant)
    with sessions() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise PreviewError(f"no customer {customer_id!r} in the store")
        cart = session.scalar(
            select(Cart)
            .where(Cart.customer_id == customer_id)
            .order_by((Cart.status == "open").desc(), Cart.last_activity_at.desc())
            .limit(1)
            .options(selectinload(Cart.lines))
        )
        coupon = None
        if spec.coupon_percent is not None and spec.coupon_valid_s is not None:
            # Never added to the session: a preview must not hand out a real code.
            coupon = Coupon(
                code=PREVIEW_COUPON,
                customer_id=customer_id,
                percent=spec.coupon_percent,
                send_key="preview",
                created_at=now,
                expires_at=now + timedelta(seconds=spec.coupon_valid_s),
            )
        content = journey_content(
            session,
            journeys,
            _request(session, journey, spec, customer_id, now),
            customer,
            cart if journey == "abandoned_cart" else None,
        )
        if content.stop is not None:
            raise PreviewError(
                f"customer {customer_id!r} would not get this e-mail now: {content.stop}"
            )
        context = render_context(
            journeys,
            customer,
            cart,
            coupon,
            now,
            journey=journey,
            step=step,
            content=content,
        )
        try:
            return renderer.render(
                spec.template,
                context,
                locale=locale or customer.locale,
                subject=journeys.subject_of(journey, step, variant),
            )
        except TemplateError as err:
            if cart is None:
                raise TemplateError(f"{err}\n(customer {customer_id!r} has no cart)") from err
            raise


def _request(
    session: Session, journey: str, spec: StepSpec, customer_id: str, now: datetime
) -> SendEmailInput:
    """What the journey would send this customer now: about their latest order, and the
    products they viewed or bought last."""
    order = session.scalar(
        select(Order)
        .where(Order.customer_id == customer_id, Order.status == "completed")
        .order_by(Order.placed_at.desc())
        .limit(1)
        .options(selectinload(Order.lines))
    )
    order_id = order.id if order and journey in ORDER_JOURNEYS else None
    product_ids: list[str] = []
    if journey == "browse_abandonment":
        views = session.scalars(
            select(Event.payload)
            .where(Event.customer_id == customer_id, Event.event == "Product Viewed")
            .order_by(Event.timestamp.desc())
            .limit(20)
        )
        product_ids = [
            str(pid) for payload in views if (pid := _product_id(payload.get("properties") or {}))
        ]
    elif journey == "replenishment" and order is not None and order.lines:
        product_ids = [order.lines[0].product_id]
    return SendEmailInput(
        idempotency_key="preview",
        customer_id=customer_id,
        journey=journey,
        step=spec,
        workflow_id="preview",
        variant=spec.variant,
        entered_at=order.placed_at if order_id and order else now,
        order_id=order_id,
        product_ids=product_ids,
    )


def _product_id(properties: dict[str, object]) -> object:
    # As the event was sent: Segment's spec names it product_id, some SDKs productId.
    return next(
        (properties[k] for k in ("product_id", "productId", "id", "sku") if k in properties), None
    )


def write(
    rendered: Rendered, out: Path, journey: str, step: str, variant: str = "control"
) -> Preview:
    """``<out>/<journey>/<step>.<locale>.html`` and ``.txt`` (``<step>.<variant>.<locale>``
    for a variant)."""
    folder = out / journey
    folder.mkdir(parents=True, exist_ok=True)
    stem = step if variant == "control" else f"{step}.{variant}"
    html_path = folder / f"{stem}.{rendered.locale}.html"
    text_path = folder / f"{stem}.{rendered.locale}.txt"
    html_path.write_text(rendered.html, encoding="utf-8")
    text_path.write_text(f"Subject: {rendered.subject}\n\n{rendered.text}", encoding="utf-8")
    return Preview(journey, step, rendered.locale, rendered, html_path, text_path, variant)


def gallery(renderer: Renderer, journeys: JourneysConfig, out: Path) -> tuple[Path, list[Preview]]:
    """Every step (and variant) of every journey, enabled or not, in every locale, and an
    index page."""
    previews = []
    for journey in journeys.journey_names():
        config: Journey | None = getattr(journeys, journey)
        for spec in config.steps if config else []:
            for variant, _ in spec.weights():
                for locale in renderer.locales():
                    rendered = render_sample(
                        renderer, journeys, journey, spec.name, locale=locale, variant=variant
                    )
                    previews.append(write(rendered, out, journey, spec.name, variant))
    index = out / "index.html"
    index.write_text(_index(journeys, renderer.locales(), previews, out), encoding="utf-8")
    return index, previews


def _index(journeys: JourneysConfig, locales: list[str], previews: list[Preview], out: Path) -> str:
    rows = []
    by_step: dict[tuple[str, str, str], dict[str, Preview]] = {}
    for preview in previews:
        key = (preview.journey, preview.step, preview.variant)
        by_step.setdefault(key, {})[preview.locale] = preview
    for (journey, step, variant), cells in by_step.items():
        spec = find_variant(journeys, journey, step, variant)
        after = _duration(timedelta(seconds=spec.after_s))
        if variant != "control":
            after += f" · variant {variant}"
        tds = []
        for locale in locales:
            p = cells[locale]
            html_link = p.html_path.relative_to(out).as_posix()
            text_link = p.text_path.relative_to(out).as_posix()
            tds.append(
                f'<td><a href="{html.escape(html_link)}">{html.escape(p.rendered.subject)}</a>'
                f"<br><small>{html.escape(p.rendered.preheader)}</small>"
                f'<br><a class="text" href="{html.escape(text_link)}">text</a></td>'
            )
        rows.append(
            f"<tr><th>{html.escape(journey)}<br><small>{html.escape(step)} · +{after}</small>"
            f"</th>{''.join(tds)}</tr>"
        )
    heads = "".join(f"<th>{html.escape(locale)}</th>" for locale in locales)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(journeys.shop.name)} · e-mail gallery</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #18181b; }}
  table {{ border-collapse: collapse; }}
  th, td {{ border: 1px solid #e4e4e7; padding: .6rem .8rem; text-align: left;
           vertical-align: top; max-width: 22rem; }}
  small {{ color: #71717a; }}
  a.text {{ font-size: .85rem; }}
</style>
</head>
<body>
<h1>{html.escape(journeys.shop.name)} · every e-mail, every locale</h1>
<p>Sample data; subjects link to the HTML, “text” to the plain-text part.</p>
<table>
<tr><th>journey · step</th>{heads}</tr>
{chr(10).join(rows)}
</table>
</body>
</html>
"""


def _duration(delta: timedelta) -> str:
    return format_duration(delta)
