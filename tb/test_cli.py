"""The scripts' shared argument types (:mod:`scripts.cli`)."""

import argparse

import pytest

from scripts.cli import comma_subset


def test_comma_subset_keeps_the_given_order():
    parse = comma_subset("nets", ("digits_cnn", "resnet18"))
    assert parse("resnet18,digits_cnn") == ("resnet18", "digits_cnn")
    assert parse("digits_cnn,") == ("digits_cnn",)


@pytest.mark.parametrize("text", ["vgg", "digits_cnn,vgg", "digits_cnn,digits_cnn", "", ","])
def test_comma_subset_rejects_unknown_repeated_and_empty(text):
    parse = comma_subset("nets", ("digits_cnn", "resnet18"))
    with pytest.raises(argparse.ArgumentTypeError,
                       match=r"nets must be a comma-separated subset of "
                             r"\['digits_cnn', 'resnet18'\], not"):
        parse(text)


def test_comma_subset_may_allow_empty():
    parse = comma_subset("classes", ("weight", "gradient"), allow_empty=True)
    assert parse("") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="classes must be"):
        parse("bias")
