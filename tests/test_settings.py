"""Settings: defaults, a full document, and every refusal naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.adapters.files import InputError, load_settings
from webhook.core.settings import FallbackVar, Settings, SettingsError, Sysctl, parse_settings


def test_defaults_follow_the_contract() -> None:
    settings = parse_settings(None)
    assert settings.sysctls == (Sysctl("net.ipv6.conf.all.disable_ipv6", "1"),)
    assert [(v.name, v.value, v.mode) for v in settings.fallback_env] == [
        ("NODE_OPTIONS", "--dns-result-order=ipv4first", "append"),
        ("JAVA_TOOL_OPTIONS", "-Djava.net.preferIPv4Stack=true", "append"),
    ]
    # product.md: UV_NO_SYNC only where uv's network start is known to fail, or where asked.
    assert [(v.name, v.value, v.mode) for v in settings.uv_offline_env] == [
        ("UV_NO_SYNC", "1", "set"), ("UV_PYTHON_DOWNLOADS", "never", "set")]
    assert settings.excluded_namespaces == {"kube-system", "v4only-system"}
    assert (settings.mixed_clusters, settings.dns.mode, settings.dns.probe_names) == ("affinity", "auto", ("pypi.org",))


def test_a_full_document() -> None:
    settings = parse_settings({
        "sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"},
                    {"name": "net/ipv6/conf/default/disable_ipv6", "value": "1"}],
        "fallbackEnv": [{"name": "UV_OFFLINE", "value": "1"}, {"name": "NODE_OPTIONS", "value": "--x", "mode": "append"}],
        "excludedNamespaces": ["kube-system", "v4only-system", "monitoring"],
        "mixedClusters": "env",
        "dns": {"mode": "cluster-search", "probeNames": ["pypi.org", "files.pythonhosted.org"],
                "probeIntervalSeconds": 60},
        "podSecurityDefault": "baseline",
        "capabilityMaxAgeSeconds": 120,
    })
    assert settings.sysctl_names == {"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"}
    assert settings.fallback_env == (FallbackVar("UV_OFFLINE", "1", "set"), FallbackVar("NODE_OPTIONS", "--x", "append"))
    assert settings.mixed_clusters == "env" and settings.dns.mode == "cluster-search"
    assert settings.dns.probe_names == ("pypi.org", "files.pythonhosted.org") and settings.dns.probe_interval_seconds == 60
    assert settings.pod_security_default == "baseline" and settings.capability_max_age_seconds == 120.0


REFUSALS = [
    ({"sysctl": []}, "settings: unknown key 'sysctl'"),
    ({"sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6", "value": 1}]},
     "sysctls[0].value: expected a string (quote it in YAML), got int"),
    ({"sysctls": [{"name": "Net.IPv6", "value": "1"}]}, "sysctls[0].name: 'Net.IPv6' is not a valid sysctl name"),
    ({"sysctls": [{"name": "net.ipv6.*", "value": "1"}]}, "sysctls[0].name: 'net.ipv6.*' is not a valid sysctl name"),
    ({"sysctls": []}, "sysctls: at least one sysctl is needed"),
    ({"sysctls": [{"name": "net.a", "value": "1"}, {"name": "net/a", "value": "1"}]}, "sysctls: a sysctl is listed twice"),
    # Neither safe nor allowlistable: component-helpers namespace.go knows no namespace for it, so the kubelet
    # refuses to start with it in allowedUnsafeSysctls (allowlist.go NewAllowlist) and v4only could never apply it.
    ({"sysctls": [{"name": "vm.swappiness", "value": "10"}]},
     "sysctls[0].name: 'vm.swappiness' is not namespaced, so no kubelet can allow it"),
    ({"sysctls": [{"name": "a.b", "value": "1", "extra": 1}]}, "sysctls[0]: unknown key 'extra'"),
    ({"fallbackEnv": [{"name": "A", "value": "1", "mode": "prepend"}]},
     "fallbackEnv[0].mode: 'prepend' is not one of set, append"),
    ({"fallbackEnv": [{"name": "A=B", "value": "1"}]}, "fallbackEnv[0].name: 'A=B' is not a valid environment"),
    ({"fallbackEnv": "UV_NO_SYNC=1"}, "fallbackEnv: expected a list, got str"),
    # As the API server validates (Go's anchored regexp never matches before a final newline; Python's `$` did):
    # a YAML block scalar's trailing newline, or a name apimachinery IsEnvVarName refuses.
    ({"sysctls": [{"name": "net.ipv6.conf.all.disable_ipv6\n", "value": "1"}]},
     "sysctls[0].name: 'net.ipv6.conf.all.disable_ipv6\\n' is not a valid sysctl name"),
    ({"fallbackEnv": [{"name": "1NODE OPTIONS", "value": "1"}]},
     "fallbackEnv[0].name: '1NODE OPTIONS' is not a valid environment variable name"),
    ({"fallbackEnv": [{"name": "NODE_OPTIONS\n", "value": "1"}]},
     "fallbackEnv[0].name: 'NODE_OPTIONS\\n' is not a valid environment variable name"),
    ({"fallbackEnv": [{"name": "..X", "value": "1"}]}, "fallbackEnv[0].name: '..X' is not a valid environment"),
    ({"mixedClusters": "sysctl"}, "mixedClusters: 'sysctl' is not one of affinity, env"),
    ({"dns": {"mode": "on"}}, "dns.mode: 'on' is not one of auto, cluster-search, ndots, off"),
    ({"dns": {"probeNames": ["pypi.org\n"]}}, "dns.probeNames: 'pypi.org\\n' is not a DNS name"),
    ({"dns": {"probeIntervalSeconds": 0}}, "dns.probeIntervalSeconds: expected a positive number, got 0"),
    ({"dns": {"enabled": True}}, "dns: unknown key 'enabled'"),
    ({"uvOfflineEnv": [{"name": "A=B", "value": "1"}]}, "uvOfflineEnv[0].name: 'A=B' is not a valid environment"),
    ({"excludedNamespaces": ["a", 3]}, "excludedNamespaces[1]: expected a string"),
    ({"capabilityMaxAgeSeconds": 0}, "capabilityMaxAgeSeconds: expected a positive number, got 0"),
    (["sysctls"], "settings: expected a mapping, got list"),
]


@pytest.mark.parametrize(("raw", "message"), REFUSALS, ids=[m for _, m in REFUSALS])
def test_bad_settings_are_refused_naming_the_key(raw: object, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings(raw)
    assert str(error.value).startswith(message)


def test_the_shipped_configmap_parses(tmp_path: Path) -> None:
    import yaml

    manifest = Path(__file__).parents[1] / "manifests" / "base" / "configmap.yaml"
    if not manifest.exists():
        pytest.fail("manifests/base/configmap.yaml is missing")
    config = yaml.safe_load(manifest.read_text())["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    assert load_settings(str(tmp_path / "config.yaml")) == Settings()


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sysctls: [\n")
    with pytest.raises(InputError, match=r"bad\.yaml is not valid YAML"):
        load_settings(str(bad))
    with pytest.raises(InputError, match=r"cannot read .*missing\.yaml"):
        load_settings(str(tmp_path / "missing.yaml"))
    typo = tmp_path / "typo.yaml"
    typo.write_text("mixedCluster: env\n")
    with pytest.raises(InputError, match=r"typo\.yaml: settings: unknown key 'mixedCluster'"):
        load_settings(str(typo))
