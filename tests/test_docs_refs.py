"""The docs point at tests and code that exist.

``docs/claims.md`` maps every patent claim to a test, ``docs/faults.md`` names the test that failed
before each fix, and the README sends readers to tests and modules. A renamed or removed test
would leave those maps pointing nowhere without anyone noticing; these checks notice.
``docs/benchmarks.md`` is a dated log (it names code that was tried and removed) and is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")

#: ``tests/test_x.py``, ``test_x.py::test_name`` and claims.md's ``TC::test_name``.
_TEST_REF = re.compile(r"(?:tests/)?(test_\w+\.py)(?:::(test_\w+))?|\bTC::(test_\w+)")
#: ``ftactors/core/replica.py`` and the like.
_CODE_REF = re.compile(r"\b(ftactors/[\w/]+\.py)\b")


def _refs(doc: Path) -> list[tuple[str, str | None]]:
    """Return the (test file, test name or None) pairs a document names.

    Args:
        doc: a Markdown file.

    Returns:
        One pair per reference, in order of appearance.
    """
    out: list[tuple[str, str | None]] = []
    for m in _TEST_REF.finditer(doc.read_text()):
        if m.group(3):
            out.append(("test_claims_core.py", m.group(3)))
        else:
            out.append((m.group(1), m.group(2)))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_document_names_exists(doc: Path) -> None:
    missing = []
    for file, name in _refs(doc):
        path = ROOT / "tests" / file
        if not path.exists():
            missing.append(file)
        elif name and not re.search(rf"^(?:async )?def {name}\(", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc.name} names tests that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_module_a_document_names_exists(doc: Path) -> None:
    missing = {m for m in _CODE_REF.findall(doc.read_text()) if not (ROOT / m).exists()}
    assert not missing, f"{doc.name} names modules that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("doc", DOCS + [ROOT / "docs" / "benchmarks.md"], ids=lambda p: p.name)
def test_no_document_names_a_workspace_path(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text and "/work/" not in text, doc.name


def test_the_checks_see_the_claims_map() -> None:
    """Guards the checks themselves: the claims map names dozens of tests, most by ``TC::``."""
    refs = _refs(ROOT / "docs" / "claims.md")
    assert sum(1 for f, n in refs if f == "test_claims_core.py" and n) >= 20
    assert len({f for f, _ in refs}) >= 10
