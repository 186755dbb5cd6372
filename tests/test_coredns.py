"""Templates that hide AAAA in a Corefile (core/coredns.py), and doctor naming the line to remove.

The base Corefile is kubeadm's default (kubernetes/kubernetes cmd/kubeadm/app/phases/addons/dns/manifests.go,
CoreDNSConfigMap); the template lines are the two forms remedy-lab.md measured and the scoped form
dns-and-fallbacks.md recommends. Template syntax: coredns.io/plugins/template.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests import capability_scenarios as sc
from tests.fakekube import FakeKube
from webhook.cli import doctor
from webhook.core.coredns import aaaa_templates
from webhook.core.dns_report import dns_report

KUBEADM = (Path(__file__).parent / "fixtures" / "coredns" / "kubeadm-Corefile").read_text()


def _with(block: str) -> str:
    """kubeadm's Corefile with `block` after `ready` (line 6), where a person adds it by hand."""
    lines = KUBEADM.splitlines()
    return "\n".join([*lines[:6], *block.splitlines(), *lines[6:]]) + "\n"


def test_the_default_corefile_hides_nothing() -> None:
    assert aaaa_templates(KUBEADM) == ()


def test_the_nxdomain_form_is_found_with_its_line() -> None:
    (found,) = aaaa_templates(_with("    template ANY AAAA { rcode NXDOMAIN }"))
    assert (found.line, found.text, found.rcode, found.nxdomain, found.matches_some) == (
        7, "template ANY AAAA { rcode NXDOMAIN }", "NXDOMAIN", True, False)


def test_the_noerror_form_over_several_lines() -> None:
    (found,) = aaaa_templates(_with("    template IN AAAA . {\n        rcode NOERROR\n    }"))
    assert (found.line, found.rcode, found.nxdomain, found.matches_some) == (7, "NOERROR", False, False)
    (default,) = aaaa_templates(_with("    template IN AAAA {\n    }"))  # no rcode: NOERROR, empty answer
    assert default.rcode == "NOERROR"


def test_a_scoped_template_is_limited_to_its_names() -> None:
    (zones,) = aaaa_templates(_with("    template IN AAAA pypi.org pythonhosted.org {\n        rcode NOERROR\n    }"))
    assert zones.matches_some
    (matched,) = aaaa_templates(_with("    template ANY AAAA {\n        match ^ipv6[.]\n        rcode NXDOMAIN\n    }"))
    assert matched.matches_some and matched.nxdomain


@pytest.mark.parametrize("block", [
    "    # template ANY AAAA { rcode NXDOMAIN }",  # commented out
    "    template IN A example.com {\n        rcode NXDOMAIN\n    }",  # not AAAA
    "    template IN AAAA example.com {\n        answer \"{{ .Name }} 60 IN AAAA ::1\"\n    }",  # makes records up
    "    template CH ANY {\n        rcode REFUSED\n    }",  # another class
])
def test_templates_that_do_not_hide_aaaa_are_left_alone(block: str) -> None:
    assert aaaa_templates(_with(block)) == ()


def test_the_report_names_the_configmap_and_line() -> None:
    report = dns_report(None, [("kube-system/coredns Corefile", _with("    template ANY AAAA { rcode NXDOMAIN }"))])
    (problem,) = report.problems
    assert "kube-system/coredns Corefile, line 7: `template ANY AAAA { rcode NXDOMAIN }`" in problem
    assert "every musl client fails for every name" in problem and "kubectl -n kube-system edit cm coredns" in problem
    quiet = dns_report(None, [("kube-system/coredns Corefile", _with("    template IN AAAA . { rcode NOERROR }"))])
    assert quiet.problems == () and any("line 7" in hint and "harmless alone" in hint for hint in quiet.hints)


def test_doctor_reads_the_coredns_configmap(fake_kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    sc.allowing(fake_kube)
    fake_kube.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "coredns", "namespace": "kube-system"},
                          "data": {"Corefile": _with("    template ANY AAAA { rcode NXDOMAIN }")}})
    parser = argparse.ArgumentParser(prog="v4only")
    doctor.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--kubeconfig", str(fake_kube.kubeconfig_path(tmp_path))])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "kube-system/coredns Corefile, line 7: `template ANY AAAA { rcode NXDOMAIN }`" in out
