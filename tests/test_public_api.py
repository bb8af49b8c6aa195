"""The public API keeps the house rules: everything in ``__all__`` is documented with a runnable
example (the doctests run them), the exceptions excepted, whose tree has one."""

from __future__ import annotations

import inspect

import pytest

import omsframe


def _without_example(obj: object) -> bool:
    return ">>>" not in (inspect.getdoc(obj) or "")


@pytest.mark.parametrize("name", sorted(omsframe.__all__))
def test_every_public_name_has_a_runnable_example(name: str) -> None:
    obj = getattr(omsframe, name)
    if inspect.isclass(obj) and issubclass(obj, Exception):
        assert not _without_example(omsframe.OmsframeError)  # the base class shows them all
        return
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return  # a constant or a module: nothing to run
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        methods = [
            method
            for method, value in vars(obj).items()
            if not method.startswith("_") and callable(value)
        ]
        if _without_example(obj):  # each method then shows its own use
            lacking = [m for m in methods if _without_example(getattr(obj, m))]
            assert not lacking, f"{name}: no example in the class or in {lacking}"
    else:
        assert not _without_example(obj), f"{name} has no example in its docstring"
