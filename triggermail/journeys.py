"""The journeys TOML: timings, templates and offers, validated once at process start.

A running journey never reads this file: its entry snapshots the journey's spec
into the workflow input, so a deploy never changes a journey under a customer.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from triggermail.durations import parse_duration
from workflows.types import JourneySpec, StepSpec


class JourneysConfigError(Exception):
    """The journeys TOML is wrong; the message names the file, section and field."""


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("write a duration as a string, e.g. '30m'")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    after: Duration
    template: str = Field(min_length=1)
    coupon_percent: int | None = Field(default=None, ge=1, le=100)
    coupon_valid: Duration | None = None

    @model_validator(mode="after")
    def _coupon_needs_validity(self) -> Step:
        if self.coupon_percent is not None and self.coupon_valid is None:
            raise ValueError("coupon_percent needs coupon_valid (how long the code works)")
        return self

    def spec(self) -> StepSpec:
        return StepSpec(
            name=self.name,
            after_s=self.after.total_seconds(),
            template=self.template,
            coupon_percent=self.coupon_percent,
            coupon_valid_s=self.coupon_valid.total_seconds() if self.coupon_valid else None,
        )


class Journey(_Strict):
    enabled: bool = True
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_step_names(self) -> Journey:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        return self

    def horizon(self) -> timedelta:
        """How long after entry the journey's last e-mail is due."""
        return sum((step.after for step in self.steps), timedelta())


class Shop(_Strict):
    name: str
    url: str
    from_email: str
    from_name: str | None = None
    help_email: str
    currency: str = "EUR"
    locale: str = "en"


class JourneysConfig(_Strict):
    shop: Shop
    abandoned_cart: Journey

    def spec(self, journey: str) -> JourneySpec:
        config: Journey = getattr(self, journey)
        return JourneySpec(name=journey, steps=[step.spec() for step in config.steps])

    def enabled(self) -> dict[str, Journey]:
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name != "shop" and getattr(self, name).enabled
        }


def _default_text() -> tuple[str, str]:
    source = resources.files("triggermail").joinpath("journeys.toml")
    return str(source), source.read_text(encoding="utf-8")


def load_journeys(path: Path | None = None) -> JourneysConfig:
    """Load and validate the journeys TOML (the packaged defaults when ``path`` is None).

    Raises:
        JourneysConfigError: naming the file, section and field that is wrong.
    """
    if path is None:
        name, text = _default_text()
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise JourneysConfigError(f"{name}: cannot read journeys file: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise JourneysConfigError(f"{name}: not valid TOML: {err}") from err
    try:
        return JourneysConfig.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = _toml_path(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: [{where}]: {message}")
        raise JourneysConfigError("\n".join(problems)) from err


def _toml_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
