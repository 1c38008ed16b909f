"""The three Dockerfiles, read the way the Docker builder reads them (enough of it for the
tests: instructions, continuation lines, comments, stages)."""

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Dockerfile -> the image repository the manifests and docs name (the tag is the version).
IMAGES = {
    "Dockerfile.api": "netgap/apitier",
    "Dockerfile.web": "netgap/webtier",
    "Dockerfile.netgap": "netgap/netgap",
}


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: RUN, COPY, ...
    value: str  # the rest, continuation lines joined
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.value)
        assert isinstance(value, list), self
        return [str(word) for word in value]

    def env(self) -> dict[str, str]:
        """ENV (or ARG) key=value pairs (values as written: $VAR is not substituted)."""
        pairs = {}
        for word in shlex.split(self.value):
            key, sep, value = word.partition("=")
            assert sep, f"line {self.line}: {self.keyword} without `=` (legacy form or no default)"
            pairs[key] = value
        return pairs

    def run_flags(self) -> tuple[list[str], str]:
        """A RUN's leading --flags (--mount=...) and the shell command after them."""
        flags = []
        rest = self.value
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.lstrip()
        return flags, rest


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name}, got {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ENV"):
            merged.update(instruction.env())
        return merged

    def text(self) -> list[tuple[str, str]]:
        """The stage as (keyword, value) pairs, to compare stages of different files."""
        return [(i.keyword, i.value) for i in self.instructions]


def instructions(path: Path) -> list[Instruction]:
    result = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment (or parser directive), also inside a continued instruction
        if not parts:
            if not stripped:
                continue
            start = number
        if stripped.endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        text = "".join(parts).strip()
        parts = []
        keyword, _, value = text.partition(" ")
        result.append(Instruction(keyword.upper(), value.strip(), start))
    assert not parts, f"{path}: ends inside a continued instruction"
    return result


def global_args(path: Path) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults ('' when none): what FROM lines
    may use."""
    found: dict[str, str] = {}
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            break
        assert instruction.keyword == "ARG", f"{path}: {instruction.keyword} before FROM"
        for word in shlex.split(instruction.value):
            key, _, value = word.partition("=")
            found[key] = value
    return found


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def substitute(text: str, values: dict[str, str]) -> str:
    """$NAME and ${NAME} replaced with their values (an unknown one is an error here)."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"{text}: ${name} has no default"
        return values[name]

    return _VARIABLE.sub(value, text)


def stages(path: Path) -> list[Stage]:
    """The stages, each FROM's base with the global ARGs' defaults substituted (what a build
    without --build-arg uses)."""
    args = global_args(path)
    found: list[Stage] = []
    current: list[Instruction] = []
    base, name = "", None
    for instruction in instructions(path):
        if instruction.keyword == "ARG" and not base:
            continue  # a global ARG, in args
        if instruction.keyword == "FROM":
            if base:
                found.append(Stage(base, name, tuple(current)))
            words = instruction.value.split()
            base = substitute(words[0], args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            current = []
        else:
            assert base, f"{path}: {instruction.keyword} before FROM"
            current.append(instruction)
    found.append(Stage(base, name, tuple(current)))
    return found


def final_stage(path: Path) -> Stage:
    return stages(path)[-1]


def user(path: Path) -> tuple[int, int]:
    """The final stage's USER as numbers (uid, gid)."""
    uid, _, gid = final_stage(path).one("USER").value.partition(":")
    return int(uid), int(gid)
