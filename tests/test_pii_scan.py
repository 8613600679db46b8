"""Workflow histories carry ids, never who people are.

Every test that runs journeys through ``tests/harness.Shop`` scans the histories it
produced for its customers' addresses and names when it ends; this file checks the
recorded histories and that the scan itself catches what it should.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from tests.pii import history_text, personal_data_in

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_histories_hold_no_email_address(path: Path) -> None:
    text = history_text(WorkflowHistory.from_json(path.stem, path.read_text()))
    assert ADDRESS.findall(text) == []


def test_the_scan_finds_an_address_or_name_hidden_in_a_payload() -> None:
    data = json.loads(HISTORIES[0].read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    leaked = {"customer_id": "c-1", "email": "Ana.Lopez@Example.com", "name": "Ana"}
    started["data"] = base64.b64encode(json.dumps(leaked).encode()).decode()
    history = WorkflowHistory.from_json("planted", json.dumps(data))

    found = personal_data_in(
        history_text(history), emails=["ana.lopez@example.com"], names=["Ana", "Bob"]
    )
    assert found == ["ana.lopez@example.com", "Ana"]


def test_names_match_whole_words_only() -> None:
    assert personal_data_in("Canvas tote, Anabelle", emails=[], names=["Ana"]) == []
