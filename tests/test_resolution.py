"""The one resolution type: parsing, canonical text, ordering, the default sweep, and a torch-free import."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from lr0fm import reference
from lr0fm.errors import UserError
from lr0fm.resolution import (
    NATIVE, PAPER, Resolution, ResolutionError, check_below, default_sweep, for_model, order, parse_resolutions,
    split_below,
)


@pytest.mark.parametrize("value, text, pixels", [
    ("native", "native", None), (" NATIVE ", "native", None), ("16", "16", 16), (" 16 ", "16", 16),
    ("16.0", "16", 16), (16, "16", 16), (np.int64(8), "8", 8), (16.0, "16", 16), (np.float32(24), "24", 24),
    (Resolution("32"), "32", 32),
])
def test_parse_forms(value, text, pixels):
    resolution = Resolution(value)
    assert resolution == text and str(resolution) == text and resolution.pixels == pixels
    assert resolution.is_native == (pixels is None)
    assert Resolution(str(resolution)) == resolution  # the canonical text parses back to itself


@pytest.mark.parametrize("value, fragment", [
    ("12x", "not a whole number"), ("64.5", "not a whole number"), (64.5, "not a whole number"),
    (True, "not a whole number"), (None, "not a whole number"), ("", "not a whole number"),
    (float("inf"), "not a whole number"), ("0", "positive"), (-16, "positive"),
])
def test_parse_errors_are_one_sentence(value, fragment):
    with pytest.raises(ResolutionError) as caught:
        Resolution(value)
    message = str(caught.value)
    assert fragment in message and message.endswith(".") and "\n" not in message
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)


def test_a_resolution_is_its_text_everywhere():
    sixteen = Resolution(16)
    assert {"16": 1}[sixteen] == 1 and sixteen in {"native", "16"}
    assert json.dumps([sixteen, NATIVE]) == '["16", "native"]'
    again = pickle.loads(pickle.dumps(sixteen))  # crosses into DataLoader workers
    assert again == "16" and again.pixels == 16 and isinstance(again, Resolution)
    assert sixteen.side(224) == 16 and NATIVE.side(224) == 224


def test_list_parsing():
    assert parse_resolutions(None) is None
    assert parse_resolutions("native,128,64,32,16") == PAPER
    assert parse_resolutions(" 16 , NATIVE,64") == ("native", "16", "64")
    assert parse_resolutions("native,64,,32,") == ("native", "64", "32")
    assert parse_resolutions([64, "native", np.int64(16), "8"]) == ("native", "64", "16", "8")
    assert all(isinstance(r, Resolution) for r in parse_resolutions("32,64"))


@pytest.mark.parametrize("value, fragment", [
    ("64,32,64", "Resolution 64 is listed twice"), ("native,native", "'native' is listed twice"),
    ("", "No resolutions"), (" , ", "No resolutions"), ([], "No resolutions"), ("native,12x", "whole number"),
])
def test_list_errors(value, fragment):
    with pytest.raises(ResolutionError, match=fragment):
        parse_resolutions(value)


def test_fit_to_a_model():
    requested = parse_resolutions("native,128,16")
    assert for_model(requested, 224) == requested
    with pytest.raises(ResolutionError, match="Resolution 128 is not below the model's native 128 px"):
        check_below(requested, 128)
    with pytest.raises(ResolutionError, match="not below"):
        for_model(parse_resolutions("300"), 224)
    assert split_below(PAPER, 64) == (("native", "32", "16"), ("128", "64"))
    assert for_model(None, 224) == default_sweep(224)


def test_default_sweep_and_order():
    assert default_sweep(224) == PAPER == tuple(reference.RESOLUTIONS)
    assert default_sweep(64) == ("native", "32", "16")
    assert default_sweep(32) == ("native", "24", "16", "12", "8")  # too small for two of the paper's sizes
    assert default_sweep(4) == ("native", "3", "2")
    assert order(["16", "native", 128, Resolution("32")]) == ["native", "128", "32", "16"]
    assert [r.sort_key for r in order(PAPER)] == sorted(r.sort_key for r in PAPER)


def test_store_metrics_and_resolution_import_without_torch():
    code = ("import sys; import lr0fm.store, lr0fm.metrics, lr0fm.resolution; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
