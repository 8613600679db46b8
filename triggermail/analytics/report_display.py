"""How ``triggermail report`` shows a report: rich tables, and one HTML file with SVG charts.

Apart from the figures (:mod:`triggermail.analytics.report`) because it only reads a
finished :class:`~triggermail.analytics.report_models.Report`: it asks the store nothing,
and the figures need none of rich, Jinja or matplotlib.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency
from jinja2 import Environment
from markupsafe import Markup
from rich.console import Group
from rich.table import Table

from triggermail.analytics.report_models import (
    FUNNEL,
    HOLDOUT,
    Interval,
    JourneyReport,
    Report,
    Row,
)
from triggermail.durations import format_duration


def _percent(rate: float | None, ci: Interval | None) -> str:
    if rate is None or ci is None:
        return "—"
    return f"{rate:.1%} ({ci.low:.1%}\N{EN DASH}{ci.high:.1%})"


def _lift(lift: float | None) -> str:
    return "—" if lift is None else f"{lift:+.0%}"


def _revenue(amounts: dict[str, str], locale: str = "en") -> str:
    if not amounts:
        return "—"
    return ", ".join(
        format_currency(Decimal(amount), currency, locale=locale) if currency else amount
        for currency, amount in amounts.items()
    )


def _cells(row: Row) -> list[str]:
    return [
        str(row.entered),
        str(row.sent),
        str(row.delivered),
        str(row.opened),
        str(row.clicked),
        str(row.converted),
        _percent(row.conversion_rate, row.conversion_ci),
        _revenue(row.revenue),
        str(row.unsubscribed),
        _lift(row.lift),
    ]


HEADERS = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "converted",
    "conversion (95 % CI)",
    "revenue",
    "unsub.",
    "lift",
)


def report_renderable(report: Report) -> Group:
    """The report as rich tables, for ``triggermail report``."""
    parts: list[Any] = [
        f"[bold]{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC[/bold]  "
        f"[dim]attribution: click {_days(report.attribution.click_window_s)}, "
        f"{'open' if report.attribution.open_tracking else 'received'} "
        f"{_days(report.attribution.open_window_s)}[/dim]"
    ]
    if not report.journeys:
        parts.append("no journey e-mails in this period")
    for journey in report.journeys:
        table = Table(title=journey.journey, title_justify="left", title_style="bold")
        table.add_column("step")
        table.add_column("variant")
        for header in HEADERS:
            table.add_column(header, justify="right")
        for row in journey.steps:
            table.add_row(row.step or "", row.variant or "", *_cells(row))
        table.add_section()
        table.add_row("[bold]journey[/bold]", "mailed", *_cells(journey.total))
        if journey.holdout is not None:
            table.add_row("", HOLDOUT, *_cells(journey.holdout))
        if journey.recovery is not None:
            recovery = journey.recovery
            table.caption = (
                f"carts recovered: {recovery.carts_recovered} of {recovery.carts_entered} "
                f"= {_percent(recovery.rate, recovery.ci)}"
            )
        parts += ["", table]
    orders, retention = report.orders, report.retention
    parts += [
        "",
        f"orders: {orders.orders} ({_revenue(orders.revenue)}); attributed to e-mails: "
        f"{orders.attributed_orders} ({_revenue(orders.attributed_revenue)})",
        f"retention: {retention.returning_customers} of {retention.previous_customers} "
        f"customers who ordered in the previous period ordered again = "
        f"{_percent(retention.rate, retention.ci)}",
    ]
    return Group(*parts)


def _days(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


def funnel_svg(journey: JourneyReport) -> str:
    """A journey's funnel of entries, entered to converted, as inline SVG."""
    from matplotlib.figure import Figure

    values = [getattr(journey.funnel, stage) for stage in FUNNEL]
    figure = Figure(figsize=(6.4, 2.6))
    axes = figure.subplots()
    bars = axes.barh(list(FUNNEL), values, color="#2563eb")
    axes.invert_yaxis()
    axes.bar_label(bars, padding=3)
    axes.set_xlim(0, max([*values, 1]) * 1.15)
    axes.set_title(f"{journey.journey}: entries reaching each stage", loc="left")
    _tidy(axes)
    return _svg(figure)


def revenue_svg(journey: JourneyReport) -> str | None:
    """Attributed revenue per step (and variant), a bar per currency; None without revenue."""
    from matplotlib.figure import Figure

    labels = [
        str(row.step) if row.variant == "control" else f"{row.step} · {row.variant}"
        for row in journey.steps
    ]
    currencies = sorted({c for row in journey.steps for c in row.revenue})
    if not currencies:
        return None
    figure = Figure(figsize=(6.4, 2.6))
    axes = figure.subplots()
    width = 0.8 / len(currencies)
    for index, currency in enumerate(currencies):
        values = [float(row.revenue.get(currency, 0)) for row in journey.steps]
        positions = [i + (index - (len(currencies) - 1) / 2) * width for i in range(len(labels))]
        bars = axes.bar(positions, values, width, label=currency)
        axes.bar_label(bars, labels=[f"{v:,.2f}" if v else "" for v in values], padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.margins(y=0.2)
    axes.set_title(f"{journey.journey}: attributed revenue per step", loc="left")
    axes.legend(frameon=False)
    _tidy(axes)
    return _svg(figure)


def _tidy(axes: Any) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def _svg(figure: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text as text (small, searchable) and stable ids, so the same report gives the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "triggermail"}):
        figure.tight_layout()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    # The XML prologue and DOCTYPE do not belong inside HTML; the RDF metadata names
    # matplotlib's web site, the one outside address in the file.
    return _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>triggermail report {{ report.since.strftime('%Y-%m-%d') }} to {{
report.until.strftime('%Y-%m-%d') }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; color: #18181b; margin: 2rem auto;
  max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2.5rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #e4e4e7; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #18181b; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.charts svg { max-width: 100%; height: auto; }
.muted { color: #71717a; }
</style></head><body>
<h1>What the journeys earned</h1>
<p>{{ report.since.strftime('%Y-%m-%d %H:%M') }} to {{ report.until.strftime('%Y-%m-%d %H:%M') }}
UTC. <span class="muted">Attribution: last click within {{ click }}, else last
{{ 'open' if report.attribution.open_tracking else 'receipt' }} within {{ open }}.
Conversion rates with 95 % Wilson intervals.</span></p>
<p>Orders: {{ report.orders.orders }} ({{ revenue(report.orders.revenue) }}); attributed to
e-mails: {{ report.orders.attributed_orders }} ({{ revenue(report.orders.attributed_revenue) }}).
Retention: {{ report.retention.returning_customers }} of
{{ report.retention.previous_customers }} customers who ordered in the previous period
ordered again ({{ percent(report.retention.rate, report.retention.ci) }}).</p>
{% for journey in report.journeys %}
<section id="{{ journey.journey }}">
<h2>{{ journey.journey }}</h2>
<table><thead><tr><th>step</th><th>variant</th>{% for h in headers %}<th>{{ h }}</th>
{% endfor %}</tr></thead><tbody>
{% for row in journey.steps %}<tr><td>{{ row.step }}</td><td>{{ row.variant }}</td>
{% for cell in cells(row) %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}<tr class="total"><td>journey</td><td>mailed</td>
{% for cell in cells(journey.total) %}<td>{{ cell }}</td>{% endfor %}</tr>
{% if journey.holdout %}<tr><td></td><td>holdout</td>
{% for cell in cells(journey.holdout) %}<td>{{ cell }}</td>{% endfor %}</tr>{% endif %}
</tbody></table>
{% if journey.recovery %}<p>Carts recovered: {{ journey.recovery.carts_recovered }} of
{{ journey.recovery.carts_entered }} ({{
percent(journey.recovery.rate, journey.recovery.ci) }}).</p>{% endif %}
<div class="charts">
<figure class="funnel">{{ charts[journey.journey][0] }}</figure>
{% if charts[journey.journey][1] %}<figure class="revenue">{{ charts[journey.journey][1] }}
</figure>{% else %}<p class="muted">No attributed revenue.</p>{% endif %}
</div>
</section>
{% else %}<p>No journey e-mails in this period.</p>{% endfor %}
<p class="muted">Generated by triggermail at {{
report.generated_at.strftime('%Y-%m-%d %H:%M') }} UTC.</p>
</body></html>
"""

_TEMPLATE = Environment(autoescape=True, keep_trailing_newline=True).from_string(_HTML)


def report_html(report: Report) -> str:
    """The report as one self-contained HTML file: inline CSS, inline SVG charts."""
    charts = {
        journey.journey: (
            # matplotlib's own SVG: markup, not text to escape.
            Markup(funnel_svg(journey)),
            Markup(svg) if (svg := revenue_svg(journey)) else None,
        )
        for journey in report.journeys
    }
    return _TEMPLATE.render(
        report=report,
        charts=charts,
        headers=HEADERS,
        cells=_cells,
        percent=_percent,
        revenue=_revenue,
        click=_days(report.attribution.click_window_s),
        open=_days(report.attribution.open_window_s),
    )
