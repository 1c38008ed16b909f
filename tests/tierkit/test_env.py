import pytest

from tierkit.env import (
    SettingsError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_optional_url,
    env_url,
)


def test_unset_or_blank_means_default() -> None:
    assert env_int({}, "N", 7, low=0, high=10) == 7
    assert env_int({"N": "  "}, "N", 7, low=0, high=10) == 7
    assert env_float({"F": ""}, "F", 1.5, low=0, high=2) == 1.5
    assert env_bool({}, "B", True) is True
    assert env_optional_url({"U": " "}, "U") is None


def test_values_are_parsed() -> None:
    assert env_int({"N": " 3 "}, "N", 7, low=0, high=10) == 3
    assert env_float({"F": "0"}, "F", 1.5, low=0, high=2) == 0.0
    assert env_bool({"B": "Off"}, "B", True) is False
    assert env_choice({"L": "debug"}, "L", "INFO", ("DEBUG", "INFO")) == "DEBUG"
    assert env_url({"U": "https://x.test:1/p"}, "U", "") == "https://x.test:1/p"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: env_int({"N": "3.5"}, "N", 0, low=0, high=9), "N must be an integer, got '3.5'"),
        (lambda: env_int({"N": "10"}, "N", 0, low=0, high=9), "N must be from 0 to 9, got 10"),
        (lambda: env_float({"F": "inf"}, "F", 0, low=0, high=9), "F must be from 0 to 9"),
        (lambda: env_float({"F": "fast"}, "F", 0, low=0, high=9), "F must be a number"),
        (lambda: env_bool({"B": "sure"}, "B", False), "B must be true or false"),
        (lambda: env_url({"U": "localhost:8801"}, "U", ""), "U must be an absolute http(s) URL"),
        (lambda: env_url({"U": "ftp://x/"}, "U", ""), "U must be an absolute http(s) URL"),
    ],
)
def test_bad_values_name_the_variable(call: object, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        call()  # type: ignore[operator]
    assert str(caught.value).startswith(message)
