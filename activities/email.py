"""The guarded send: re-check the store, record in the ledger, render, hand to the transport.

Order matters. The ledger row (unique idempotency key) is written *before* the
provider is called and marked ``attempting`` around the call, so a retry or a
crashed worker can tell "never tried" from "may have gone out" and never mails
anyone twice.
"""

from __future__ import annotations

import functools
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.content import Content, content_context, journey_content, lines_context
from activities.guardrails import Hold, hold, lock_customer, suppression
from activities.lapsed import with_segment_offer
from activities.rendering import Renderer, TemplateError
from activities.transports import (
    AmbiguousSendError,
    MailTransport,
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
)
from triggermail.journeys import JourneysConfig
from triggermail.links import DEV_SECRET, UnsubscribeLinks
from triggermail.localtime import customer_zone
from triggermail.store import Cart, CartLine, Coupon, Customer, EmailSend, Order, new_id, utcnow
from triggermail.variants import HOLDOUT
from workflows.types import SEND_EMAIL_ACTIVITY, SendEmailInput, SendResult, StepSpec

FINAL = frozenset({"sent", "failed", "skipped", "unknown"})
_COUPON_ALPHABET = string.ascii_uppercase.replace("O", "").replace("I", "") + "23456789"


@dataclass
class EmailActivities:
    """Activities that send journey e-mails; ``worker.py`` hands in the dependencies."""

    session_factory: sessionmaker[Session]
    renderer: Renderer
    transport: MailTransport
    journeys: JourneysConfig
    clock: Callable[[], datetime] = field(default=utcnow)
    """Now, for the ledger and coupon expiry; tests hand in the time-skipping server's clock."""
    links: UnsubscribeLinks = field(
        default_factory=lambda: UnsubscribeLinks(
            secret=DEV_SECRET, public_url="http://localhost:8000"
        )
    )
    """Signs each marketing e-mail's unsubscribe link; ``worker.py`` hands in the real one."""

    def _template(self, request: SendEmailInput) -> str | None:
        """The step's template: the one its journey entered with or, when a deploy has
        renamed or removed that file since, the one the same step names in the config now;
        None when neither exists."""
        if self.renderer.has_template(request.step.template):
            return request.step.template
        config = getattr(self.journeys, request.journey, None)
        step = (
            next((s for s in config.steps if s.name == request.step.name), None) if config else None
        )
        current = step.spec(request.variant).template if step is not None else None
        if current is not None and self.renderer.has_template(current):
            activity.logger.warning(
                "step %s: template %s is gone, sending %s (the step's template now)",
                request.step.name,
                request.step.template,
                current,
            )
            return current
        return None

    @activity.defn(name=SEND_EMAIL_ACTIVITY)
    def send_email(self, request: SendEmailInput) -> SendResult:
        """Send one step's e-mail at most once, unless a guard says it must not go."""
        request = with_segment_offer(self.journeys, request)
        with self.session_factory() as session:
            # Before anything is read: two journeys of this customer deciding about the
            # frequency cap at once must take turns, or both would pass it.
            customer = lock_customer(session, request.customer_id)
            if customer is None:
                # No ledger row: it would reference a customer the store does not have, and
                # the foreign key would refuse it on every retry until the send's deadline.
                activity.logger.warning("step %s skipped: unknown customer", request.step.name)
                return SendResult(status="skipped", send_id="", reason="unknown_customer")
            row = session.scalar(
                select(EmailSend).where(EmailSend.idempotency_key == request.idempotency_key)
            )
            if row is not None and row.status in FINAL:
                return _result(row)
            if row is not None and row.status == "attempting" and not self.transport.idempotent:
                # An earlier attempt reached the provider call and never came back (crash,
                # timeout): the e-mail may be out. Sending again could mail it twice.
                return _settle(session, row, request, "unknown", "earlier attempt ended mid-send")

            cart = (
                session.scalars(
                    select(Cart)
                    .where(Cart.id == request.cart_id)
                    # Its lines and their products in the same round trip: the e-mail shows them.
                    .options(joinedload(Cart.lines).joinedload(CartLine.product))
                )
                .unique()
                .first()
                if request.cart_id
                else None
            )
            reason = _guard(session, request, customer, cart)
            content = Content()
            if reason is None:
                assert customer is not None
                content = journey_content(session, self.journeys, request, customer, cart)
                reason = content.stop
            if reason is None and request.variant == HOLDOUT:
                # Recorded only now, when a mailed customer would have been mailed, so the
                # holdout and the mailed are the same kind of entry and lift is fair.
                reason = HOLDOUT
            now = self.clock()
            if row is None:
                # Not flushed now: the row goes in with its outcome at the first commit, one
                # INSERT instead of an INSERT and an UPDATE. The customer's lock already
                # orders two attempts of one step; :func:`_commit` covers the rest.
                row = EmailSend(
                    id=new_id(),
                    idempotency_key=request.idempotency_key,
                    customer_id=request.customer_id,
                    journey=request.journey,
                    step=request.step.name,
                    variant=request.variant,
                    workflow_id=request.workflow_id,
                    template=request.step.template,
                    status="pending",
                    attempts=0,
                    due_at=now,
                )
                session.add(row)
            if reason is not None:
                activity.logger.info("step %s skipped: %s", request.step.name, reason)
                return _settle(session, row, request, "skipped", reason)
            template = self._template(request)
            if template is None:
                # Recorded once, as a skip: retrying cannot bring a deleted file back.
                activity.logger.warning(
                    "step %s skipped: template %s is gone", request.step.name, request.step.template
                )
                return _settle(session, row, request, "skipped", "template_gone")
            row.template = template

            assert customer is not None and customer.email is not None
            guardrails = self.journeys.guardrails
            zone = customer_zone(customer.timezone, self.journeys.shop.timezone)
            # An attempt that reached the provider call was cleared then; its own
            # ``attempting`` mark must not hold it back now.
            held = (
                hold(
                    session,
                    guardrails=guardrails,
                    customer=customer,
                    row=row,
                    now=now,
                    zone=zone,
                )
                if row.status == "pending" and request.step.hold
                else None
            )
            goes_at = held.until if held is not None and request.may_defer else now
            if (
                request.send_on
                and row.status == "pending"
                and goes_at >= _end_of_day(request.send_on, zone)
            ):
                # A greeting for a day that is over is worse than none.
                return _settle(session, row, request, "skipped", "too_late")
            if held is not None and request.may_defer:
                if held.until - (row.due_at or now) > guardrails.max_deferral:
                    return _settle(session, row, request, "skipped", "capped")
                return _defer(session, row, request, held)
            if row.not_before is not None:  # set only when it was held: else one more UPDATE
                row.not_before = None
            marketing = not guardrails.is_exempt(request.journey)
            coupon = (
                self._coupon(session, request, customer, now)
                if request.step.coupon_percent
                else None
            )
            try:
                rendered = self.renderer.render(
                    template,
                    render_context(
                        self.journeys,
                        customer,
                        cart,
                        coupon,
                        now,
                        journey=request.journey,
                        step=request.step.name,
                        unsubscribe_url=self.links.url(row.id),
                        survey_url=functools.partial(self.links.survey_url, row.id),
                        content=content,
                        spec=request.step,
                    ),
                    locale=customer.locale,
                    subject=(
                        request.step.subject
                        if request.step.pinned
                        else self.journeys.subject_of(
                            request.journey, request.step.name, request.variant
                        )
                    ),
                )
            except TemplateError as err:
                row.status, row.reason = "failed", str(err)
                _commit(session)
                raise ApplicationError(str(err), type="TemplateError", non_retryable=True) from err
            row.to_email, row.subject = customer.email, rendered.subject
            row.coupon_code = coupon.code if coupon else None
            row.products = content.record()
            row.status, row.attempts = "attempting", row.attempts + 1
            row.attempted_at = now
            _commit(session)
            email = OutgoingEmail(
                send_id=row.id,
                to_email=customer.email,
                to_name=customer.first_name,
                from_email=self.journeys.shop.from_email,
                from_name=self.journeys.shop.from_name or self.journeys.shop.name,
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                date=now,
                # RFC 8058: one-click unsubscribe for mail clients (Gmail's and Yahoo's
                # bulk-sender rules); transactional journeys carry none.
                headers={
                    "List-Unsubscribe": f"<{self.links.url(row.id)}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                }
                if marketing
                else {},
            )

            try:
                provider_id = self.transport.send(email)
            except RetryableSendError as err:
                row.status, row.reason = "pending", str(err)
                session.commit()
                raise ApplicationError(
                    str(err), type="RetryableSendError", next_retry_delay=err.retry_after
                ) from err
            except PermanentSendError as err:
                return _settle(session, row, request, "failed", str(err))
            except AmbiguousSendError as err:
                return _settle(session, row, request, "unknown", str(err))
            row.provider_message_id, row.sent_at = provider_id, self.clock()
            return _settle(session, row, request, "sent", None)

    def _coupon(
        self, session: Session, request: SendEmailInput, customer: Customer, now: datetime
    ) -> Coupon:
        """The e-mail's coupon, created once: a retry finds the one it made before."""
        existing = session.scalar(select(Coupon).where(Coupon.send_key == request.idempotency_key))
        if existing is not None:
            return existing
        step = request.step
        assert step.coupon_percent is not None and step.coupon_valid_s is not None
        code = "".join(secrets.choice(_COUPON_ALPHABET) for _ in range(10))
        coupon = Coupon(
            code=f"{code[:5]}-{code[5:]}",
            customer_id=customer.id,
            percent=step.coupon_percent,
            send_key=request.idempotency_key,
            created_at=now,
            expires_at=now + timedelta(seconds=step.coupon_valid_s),
        )
        session.add(coupon)
        session.flush()
        return coupon


def _guard(
    session: Session, request: SendEmailInput, customer: Customer | None, cart: Cart | None
) -> str | None:
    """Why this e-mail must not go now, read fresh from the store; None when it may."""
    if customer is None:
        return "unknown_customer"
    if not customer.email:
        return "no_email"
    if not customer.marketing_consent:
        return "no_consent"
    # The customer may have left (unsubscribe, bounce, complaint) while the journey slept.
    suppressed = suppression(session, customer)
    if suppressed is not None:
        return suppressed
    # The signal that ends a journey on purchase can be lost; the store cannot.
    ordered = (
        session.scalar(
            select(Order.id)
            .where(
                Order.customer_id == customer.id,
                Order.placed_at >= request.entered_at,
                Order.status == "completed",
            )
            .limit(1)
        )
        if request.ends_on_purchase
        else None
    )
    if ordered is not None:
        return "converted"
    if request.cart_id is not None:
        if cart is None or cart.status == "emptied" or not cart.lines:
            return "cart_emptied"
        if cart.status == "ordered":
            return "converted"
    return None


def render_context(
    journeys: JourneysConfig,
    customer: Customer,
    cart: Cart | None,
    coupon: Coupon | None,
    now: datetime,
    *,
    journey: str,
    step: str,
    unsubscribe_url: str | None = None,
    survey_url: Callable[[str], str] | None = None,
    content: Content | None = None,
    spec: StepSpec | None = None,
) -> dict[str, Any]:
    """What a step's templates read, from the store's rows; ``triggermail preview`` uses it too.

    ``unsubscribe_url`` is the e-mail's signed link; previews, which have none, show the
    shop's preferences page. ``survey_url`` makes a survey answer's signed link (previews:
    the shop's page). ``content`` is the journey's products and order
    (:func:`activities.content.journey_content`). ``spec``: the step as the journey
    pinned it at entry; what it pinned is read there, not from ``journeys``.
    """
    shop = journeys.shop
    context: dict[str, Any] = {
        "shop": shop.model_dump(),
        "campaign": {"journey": journey, "step": step},
        "links": {"unsubscribe": unsubscribe_url or shop.preferences_url},
        "customer": {
            "id": customer.id,
            "first_name": customer.first_name,
            "timezone": customer.timezone,
        },
        "cart": None,
        "coupon": None,
        "now": now,
        **content_context(content or Content(), shop.url, shop.currency),
        "review_bonus": (
            spec.review_bonus
            if spec is not None and spec.pinned
            else journeys.review_request.bonus
            if journey == "review_request" and journeys.review_request
            else None
        ),
    }
    lapsed = context["lapsed"]
    if lapsed is not None and lapsed["survey"]:
        link = survey_url or (lambda answer: shop.url)
        survey = [{**entry, "url": link(entry["answer"])} for entry in lapsed["survey"]]
        context["lapsed"] = {**lapsed, "survey": survey}
    if cart is not None:
        lines, total = lines_context(cart.lines, shop.url)
        context["cart"] = {
            "id": cart.id,
            "lines": lines,
            "total": total,
            "currency": cart.currency or shop.currency,
            "url": f"{shop.url}/cart",
        }
    if coupon is not None:
        context["coupon"] = {
            "code": coupon.code,
            "percent": coupon.percent,
            "expires_at": coupon.expires_at,
        }
    return context


OUTCOME_METRICS = {
    "sent": ("triggermail_emails_sent", "E-mails handed to the provider"),
    "failed": ("triggermail_emails_failed", "E-mails the provider refused for good"),
    "skipped": ("triggermail_emails_suppressed", "E-mails a guard stopped before sending"),
    "unknown": ("triggermail_emails_unknown", "E-mails the provider may have; not resent"),
}


def _settle(
    session: Session, row: EmailSend, request: SendEmailInput, status: str, reason: str | None
) -> SendResult:
    """Record a step's final outcome and count it, once: later attempts return it as is."""
    row.status, row.reason = status, reason
    _commit(session)
    name, description = OUTCOME_METRICS[status]
    activity.metric_meter().create_counter(name, description).add(
        1, {"journey": request.journey, "step": request.step.name}
    )
    return _result(row)


def _defer(session: Session, row: EmailSend, request: SendEmailInput, held: Hold) -> SendResult:
    """Keep the e-mail ``pending`` until ``held.until``; the journey waits and asks again."""
    row.not_before, row.reason = held.until, held.reason
    _commit(session)
    activity.metric_meter().create_counter(
        "triggermail_emails_deferred", "E-mails held back by the frequency cap or quiet hours"
    ).add(1, {"journey": request.journey, "step": request.step.name, "reason": held.reason})
    return SendResult(status="deferred", send_id=row.id, reason=held.reason, not_before=held.until)


def _commit(session: Session) -> None:
    """Commit; when a concurrent attempt of the same step inserted its ledger row first,
    step back (retried, this attempt finds that row and defers to it)."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApplicationError("same step being sent concurrently", type="Busy") from None


def _end_of_day(day: str, zone: ZoneInfo) -> datetime:
    """The first moment after ``day`` (``YYYY-MM-DD``) in ``zone``, in UTC."""
    after = date.fromisoformat(day) + timedelta(days=1)
    return datetime.combine(after, time(0), tzinfo=zone).astimezone(UTC)


def _result(row: EmailSend) -> SendResult:
    return SendResult(status=row.status, send_id=row.id, reason=row.reason)
