"""What a failed image build tells the user: short plain text, no build noise."""

from __future__ import annotations

from aiart.engine.adapter import _build_failure


def test_aiart_diagnosis_wins_and_colour_codes_are_removed() -> None:
    output = ["Step 3/4 : RUN check", " ---> Running in 1a2b",
              "\x1b[31maiart: the model does not load: refused\x1b[0m"]
    assert _build_failure("returned a non-zero code: 1", output) == (
        "image build failed: the model does not load: refused")


def test_without_a_diagnosis_the_steps_own_lines_and_the_error_are_kept_short() -> None:
    output = ["Step 1/2 : FROM base", " ---> 5031bc3e310f", "Step 2/2 : RUN pip install x",
              "\x1b[1mERROR: no matching distribution\x1b[0m", *(["noise " * 50] * 3)]
    message = _build_failure("The command returned a non-zero code: 1", output)
    assert message.startswith("image build failed: ")
    assert "\x1b" not in message and "Step " not in message and "--->" not in message
    assert len(message) <= 620
    assert _build_failure("boom", ["Step 1/1 : RUN x", "only this"]) == (
        "image build failed: only this | boom")
