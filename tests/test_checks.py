"""The argument checks every layer shares (tpulearn._checks)."""

import math

import pytest
import torch

from tpulearn._checks import check_number, resolve_device


@pytest.mark.parametrize(
    ("value", "kwargs", "where"),
    [
        (1.5, {"low": 0, "high": 1}, "in [0, 1]"),
        (1.0, {"low": 0, "high": 1, "open_high": True}, "in [0, 1)"),
        (0, {"low": 0, "high": 1, "open_low": True}, "in (0, 1]"),
        (-1, {"low": 0}, ">= 0"),
        (0.0, {"low": 0, "open_low": True}, "> 0"),
        (2, {"high": 1}, "<= 1"),
        (math.inf, {}, "finite"),
        (math.nan, {"low": 0}, ">= 0"),
        ("0.5", {"low": 0}, ">= 0"),
        (True, {"low": 0}, ">= 0"),
        (None, {"low": 0}, ">= 0"),
    ],
)
def test_check_number_refuses_with_the_bounds_in_the_message(value, kwargs, where):
    with pytest.raises(ValueError) as info:
        check_number("x.y", value, **kwargs)
    assert str(info.value) == f"x.y must be a number {where}, got {value!r}"


def test_check_number_returns_a_float_on_the_bounds():
    assert check_number("p", 0, 0, 1) == 0.0 and isinstance(check_number("p", 1, 0, 1), float)
    assert check_number("p", 1e-9, 0, 1, open_low=True, open_high=True) == 1e-9


def test_resolve_device_reads_auto_strings_and_devices():
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("device", ["tpu", "gpu", "", 3.5])
def test_resolve_device_names_the_key_of_a_device_torch_does_not_read(device):
    with pytest.raises(ValueError) as info:
        resolve_device(device, "trainer.device")
    assert str(info.value) == (
        f"trainer.device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
    )


def test_resolve_device_refuses_a_cuda_device_the_machine_lacks():
    if torch.cuda.is_available():
        missing = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(ValueError, match=rf"device='{missing}' but this machine has"):
            resolve_device(missing)
    else:
        for device in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="no CUDA device is available; use 'cpu'"):
                resolve_device(device)
