"""Supply chain: the lock files against the advisory database (pip-audit), ruff's security
rules on, and no secrets in any tracked file (detect-secrets). hadolint over the Dockerfiles
is in tests/k8s/test_dockerfiles.py."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCKS = ["requirements.lock", "requirements-dev.lock"]

# Known vulnerabilities we accept, each with the reason: {"ID (package version)": "why"}.
# pip-audit is told to ignore exactly these IDs; keep the list empty unless a fix is impossible.
ACCEPTED_VULNERABILITIES: dict[str, str] = {}

# A release with a published advisory (GHSA-q2x7-8rv6-6q7h, fixed in 3.1.5): pip-audit must
# flag it, or the audit is not really running (an index or mirror answering "not found" for
# every release makes pip-audit report nothing at all).
CANARY = (
    "jinja2==3.1.4 --hash=sha256:bc5dd2abb727a5319567b7a813e6a2e7318c39f4f487cfe6c89c6f9c7d25197d\n"
)
AUDIT_TIMEOUT_S = 300


def pip_audit(requirements: Path) -> tuple[int, dict[str, Any], str]:
    """pip-audit over a hashed requirements file without pip (no resolution, no download):
    its exit code, its JSON report and its stderr."""
    ignores = [
        arg for vuln in ACCEPTED_VULNERABILITIES for arg in ("--ignore-vuln", vuln.split()[0])
    ]
    done = subprocess.run(
        [
            str(BIN / "pip-audit"),
            "--requirement",
            str(requirements),
            "--require-hashes",
            "--disable-pip",
            "--strict",  # a package it cannot look up fails the audit instead of passing
            "--progress-spinner",
            "off",
            "--format",
            "json",
            *ignores,
        ],
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
        cwd=ROOT,
    )
    try:
        report = json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        report = {}
    return done.returncode, report, done.stderr


def vulnerabilities(report: dict[str, Any]) -> list[str]:
    return [
        f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {vuln.get('fix_versions')})"
        for dep in report.get("dependencies", [])
        for vuln in dep.get("vulns", [])
    ]


@pytest.fixture(scope="module")
def audit_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skips (with the reason) unless pip-audit can reach its vulnerability service here."""
    canary = tmp_path_factory.mktemp("audit") / "canary.txt"
    canary.write_text(CANARY)
    code, report, stderr = pip_audit(canary)
    if not vulnerabilities(report):
        pytest.skip(
            "pip-audit cannot query PyPI's vulnerability data from here (the canary "
            f"jinja2 3.1.4 was not flagged; exit {code}): {stderr.strip()[-500:]}"
        )


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_has_no_known_vulnerabilities(audit_works: None, lock: str) -> None:
    code, report, stderr = pip_audit(ROOT / lock)
    found = vulnerabilities(report)
    assert not found, (
        f"{lock}: known vulnerabilities (bump the pin, or accept with a reason):\n"
        + "\n".join(found)
    )
    assert code == 0, f"{lock}: pip-audit exited {code}:\n{stderr}"


def test_ruff_security_rules_are_on() -> None:
    """flake8-bandit's rules (S) are selected and nothing of them ignored wholesale outside the
    tests; `make lint` then keeps the tree clean of them (this runs it too)."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    assert not [rule for rule in lint.get("ignore", []) if rule.startswith("S")]
    for path, rules in lint.get("per-file-ignores", {}).items():
        if not path.startswith("tests/"):
            assert all(rule != "S" for rule in rules), f"{path}: all of S ignored"
    done = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S", "--output-format", "concise", "."],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- secrets

# What detect-secrets flags in this tree that is no secret, by value, with the reason.
NOT_SECRETS = {
    # the W3C Trace Context specification's example trace id (and its truncation in a test)
    "4bf92f3577b34da6a3ce929d0e0e4736": "W3C Trace Context's example trace id",
    "4bf92f3577b34da6a3ce929d0e0e47": "W3C Trace Context's example trace id, cut short",
}


def tracked_files() -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if done.returncode != 0:
        pytest.skip(f"not a git work tree: {done.stderr.strip()}")
    return [name for name in done.stdout.split("\0") if name and (ROOT / name).is_file()]


def secrets_in(paths: list[str], root: Path) -> list[str]:
    """detect-secrets with all its plugins (private keys, AWS, GitHub and other tokens,
    password= style keywords, high-entropy strings): '<path>:<line> <type>' per finding."""
    collection = SecretsCollection(root=str(root))
    with default_settings():
        collection.scan_files(*paths)
    return [
        f"{path}:{secret.line_number} {secret.type}"
        for path, secret in collection
        if secret.secret_value not in NOT_SECRETS
    ]


def test_no_secrets_in_tracked_files() -> None:
    found = secrets_in(tracked_files(), ROOT)
    assert not found, "possible secrets in tracked files:\n" + "\n".join(found)


def test_the_secret_scan_would_catch_one(tmp_path: Path) -> None:
    """The scanner is not silently blind: planted fakes (assembled here, so that no literal
    one sits in the tree) are all found."""
    planted = {
        "key.pem": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA "
        "PRIVATE KEY-----\n",
        "aws.py": 'aws_key = "AKIA' + "Z7QX" + "4MBN" + "2PL5" + 'KV3R"\n',
        "gh.py": 'TOKEN = "ghp_' + "aB3dE5fG7" + "hJ9kL1mN3" + "pQ5rS7tU9" + "vW1xY3z5A" + '"\n',
        "settings.py": 'password = "' + "hunter2-" + 'correct-horse-battery"\n',
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    found = secrets_in(sorted(planted), tmp_path)
    for name in planted:
        assert any(line.startswith(f"{name}:") for line in found), f"{name}: {found}"
