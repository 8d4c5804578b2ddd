"""Who may run commands."""

from __future__ import annotations

from bot.policy import access

# -- bot.policy.access ------------------------------------------------------------------------------


def test_may_run_without_allow_list_lets_everyone() -> None:
    assert access.may_run("U1", [])
    assert access.may_run("UANY", [])


def test_may_run_with_allow_list() -> None:
    allowed = ["U1", "U2"]
    assert access.may_run("U1", allowed)
    assert access.may_run("U2", allowed)
    assert not access.may_run("U3", allowed)
    assert not access.may_run("", allowed)
    assert not access.may_run("u1", allowed)  # Slack ids are case-sensitive


def test_refusal_names_the_user() -> None:
    assert "<@U9>" in access.refusal("U9")
