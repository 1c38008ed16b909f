"""What the image smoke test measured (image sizes, build and run times), for the summary that
tests/k8s/conftest.py prints at the end of the run, next to each check's outcome."""

CHECKS: list[str] = []  # outcome and name of each check, in the order they ran
LINES: list[str] = []


def note(line: str) -> None:
    LINES.append(line)
