"""The package type-checks: ``mypy`` with the settings in pyproject.toml (every module of ftactors)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_type_checks_with_no_error(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api", reason="mypy is in the test extras: pip install -e '.[test]'")
    out, err, rc = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path),
                            str(ROOT / "ftactors")])
    assert rc == 0, out + err
    assert "Success: no issues found" in out
