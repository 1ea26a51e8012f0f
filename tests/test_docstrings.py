"""The examples in the package's docstrings run and print what they show.

The modules are found by walking the *installed* package (``mixedmodels.__path__``
with pkgutil), so that this runs against the wheel in site-packages as CI
installs it, and never imports the source tree (which has no compiled
extension there).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import mixedmodels

MODULES = ["mixedmodels"] + sorted(
    name for _, name, _ in pkgutil.walk_packages(mixedmodels.__path__, mixedmodels.__name__ + ".")
)

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run_doctests(module_name: str) -> tuple[doctest.TestResults, str]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    out = io.StringIO()
    for test in finder.find(module, module_name):
        runner.run(test, out=out.write)
    return runner.summarize(verbose=False), out.getvalue()


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    results, report = run_doctests(module_name)
    assert results.failed == 0, report


def test_the_examples_are_found():
    # the walk reaches the modules with examples (a vacuous pass would hide a broken walk)
    assert {"mixedmodels.model", "mixedmodels.formula", "mixedmodels.matrices"} <= set(MODULES)
    attempted = sum(run_doctests(m)[0].attempted for m in ("mixedmodels", "mixedmodels.formula"))
    assert attempted >= 5
