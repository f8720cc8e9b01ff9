"""pyproject.toml: the SPDX license string (no setuptools license-table deprecation warning on install).

Run: pytest tests/test_packaging.py -q
"""
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "MIT"  # a TOML table is deprecated by setuptools >= 77
    assert "setuptools>=77" in data["build-system"]["requires"]  # first release with PEP 639 license strings
