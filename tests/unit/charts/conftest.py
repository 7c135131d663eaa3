"""The helm fixture of the chart tests (see support.py for where helm comes from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.charts.support import Helm, find_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home: Path = tmp_path_factory.mktemp("helm-home")
    return Helm(binary=find_helm(), home=home)
