"""The project's code names nothing undefined and imports nothing it does not use (pyflakes).

Tests are checked for undefined names only: pytest fixtures are imported into a test module and
then named as parameters, which pyflakes reads as an unused import redefined."""
from pathlib import Path

from pyflakes import messages
from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]
CODE = ("tacoord", "services", "infra", "bench", "examples")
UNDEFINED = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)
UNUSED = (messages.UnusedImport, messages.UnusedVariable)


class Collect(Reporter):
    def __init__(self):
        super().__init__(None, None)
        self.found = []

    def flake(self, message):
        self.found.append(message)

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: syntax error: {msg}")

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")


def problems(folders, kinds):
    reporter = Collect()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            checkPath(str(path), reporter)
    return [str(m) for m in reporter.found if isinstance(m, str) or isinstance(m, kinds)]


def test_the_code_names_nothing_undefined_and_imports_nothing_unused():
    assert problems(CODE, UNDEFINED + UNUSED) == []


def test_the_tests_name_nothing_undefined():
    assert problems(("tests",), UNDEFINED) == []
