"""Browse abandonment: products viewed and left get a reminder of them, then an offer."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import BrowseAbandonmentInput, JourneyResult, ProductView, StepSpec

MAX_PRODUCTS = 12
"""The e-mail shows a few; the rest of a long visit is not worth history space."""


@workflow.defn
class BrowseAbandonmentWorkflow(Journey):
    """One customer's browse abandonment (ID: ``browse-abandonment/<customer id>``).

    Steps come from the journeys TOML, snapshotted at entry (by default: the viewed
    products 20 min after the last view, an offer on them 24 h later). Every view before
    the first e-mail starts its quiet window over; views further back than the window
    before the latest are forgotten.

    Signals:
        ``viewed(ProductView)``: a product view (also the start signal).
        ``exit(JourneyExit)``: Product Added (the cart journey takes over), an order, an
        unsubscribe or a cancel — ends it now.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "browse_abandonment"
    title = "Browse abandonment"

    def __init__(self) -> None:
        super().__init__()
        self.views: list[ProductView] = []
        self.shown: list[str] | None = None  # the products the e-mails show

    @workflow.signal
    def viewed(self, view: ProductView) -> None:
        self.views.append(view)

    def last_view(self) -> datetime | None:
        return max((v.at for v in self.views), default=None)

    def products(self, window: timedelta) -> list[str]:
        """The products of this visit, most recently viewed first, each once."""
        latest = self.last_view()
        if latest is None:
            return []
        recent = sorted(
            (v for v in self.views if v.at >= latest - window), key=lambda v: v.at, reverse=True
        )
        return list(dict.fromkeys(v.product_id for v in recent))[:MAX_PRODUCTS]

    @workflow.run
    async def run(self, input: BrowseAbandonmentInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        window = timedelta(seconds=input.window_s)

        async def send(step: StepSpec) -> str | None:
            if self.shown is None:
                # Fixed now: both e-mails are about this visit, whatever is viewed later.
                self.shown = self.products(window)
            return await self.send_step(
                step,
                entry_event_id=input.entry_event_id,
                entered_at=input.entered_at,
                product_ids=self.shown,
            )

        return await self.send_after_quiet(
            input.spec.steps,
            lambda: self.last_view() or input.entered_at,
            why="a cart or an order",
            changed=self.last_view,
            send=send,
        )


JOURNEY = JourneyDef(
    workflow=BrowseAbandonmentWorkflow,
    keyed_by="customer",
    workflow_id=ids.browse_abandonment_id,
    enters_on=("Product Viewed",),
    exits_on=("Order Completed", "Product Added"),
    about="views",
    needs_products=True,
)
