"""Golden AdmissionReview pairs: each request in tests/fixtures/admission/ against its hand-written response.

The expected responses were written by hand from the contract (shared/product.md), not generated
by v4only; the patch is compared decoded, operation by operation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.helpers import FIXTURES, apply_ops, decode_patch, validate
from webhook.cli import review as review_cmd
from webhook.cli.main import main
from webhook.core.admission import parse_review, review_request
from webhook.core.settings import Settings

ADMISSION = FIXTURES / "admission"
CASES: dict[str, str] = yaml.safe_load((ADMISSION / "cases.yaml").read_text())
SETTINGS = Settings()


def _load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request = json.loads((ADMISSION / f"{name}.request.json").read_text())
    expected = yaml.safe_load((ADMISSION / f"{name}.response.yaml").read_text())
    return request, expected


def _decoded(review: dict[str, Any]) -> dict[str, Any]:
    response = dict(review["response"])
    if "patch" in response:
        response["patch"] = decode_patch(response)
    return {**review, "response": response}


def _review(name: str, body: dict[str, Any]) -> dict[str, Any]:
    capability = review_cmd.capability_from_file(str(ADMISSION / CASES[name]), SETTINGS)
    namespaces = review_cmd.namespaces_from_file(str(ADMISSION / "namespaces.yaml"))
    request = parse_review(body)
    return review_request(request, namespaces=namespaces, capability=capability, settings=SETTINGS).response


@pytest.mark.parametrize("name", sorted(CASES))
def test_response_matches_the_golden_file(name: str) -> None:
    request, expected = _load(name)
    assert _decoded(_review(name, request)) == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_patched_pod_validates_and_a_second_review_is_empty(name: str) -> None:
    request, expected = _load(name)
    pod = request["request"]["object"]
    patched = apply_ops(pod, expected["response"].get("patch", []))
    validate(pod)
    validate(patched)
    again = json.loads(json.dumps(request))
    again["request"]["object"] = patched
    assert "patch" not in _review(name, again)["response"]


@pytest.mark.parametrize("name", ["chronicle-allowed", "existing-env", "own-sysctl-refused"])
def test_the_review_command_gives_the_same_response(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, expected = _load(name)
    status = main(
        [
            "review",
            str(ADMISSION / f"{name}.request.json"),
            "-o",
            "review",
            "--nodes",
            str(ADMISSION / CASES[name]),
            "--namespace-file",
            str(ADMISSION / "namespaces.yaml"),
        ]
    )
    assert status == 0
    assert _decoded(json.loads(capsys.readouterr().out)) == expected
