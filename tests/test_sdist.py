"""The source distribution carries what its own tests need, and the metadata PyPI shows.

The sdist is built with setuptools' PEP 517 backend (what ``python -m build --sdist`` calls,
without needing ``build`` or the network) in a subprocess, from a copy of the working tree:
the build writes an ``egg-info`` next to ``setup.cfg``, which must not happen in a checkout
other people are using.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Generous: a cold build on a busy 2-core machine takes a few seconds.
BUILD_TIMEOUT = 300

#: What a checkout has that no archive should carry (the same list as .gitignore).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "__pycache__",
    "*.py[cod]",
    "*.egg-info",
    ".venv*",
    ".ci-venv",
    ".tox",
    ".coverage",
    ".coverage.*",
    "htmlcov",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
)

#: Files the tests, tox and the benchmarks read from the unpacked sdist.
REQUIRED = (
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "bearer_m2m/py.typed",
    "tests/conftest.py",
    "tests/interop/oidc_provider/package.json",
    "tests/interop/oidc_provider/package-lock.json",
    "tests/interop/oidc_provider/server.mjs",
    "benchmarks/overhead.py",
)

BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, tarfile.TarFile]]:
    """(the copied source tree, the sdist built from it).

    The copy gets a stand-in ``node_modules`` (what ``npm ci`` leaves in a checkout that
    ran the interop tests), so the archive is seen to leave it out.
    """
    work = tmp_path_factory.mktemp("sdist")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    installed = source / "tests/interop/oidc_provider/node_modules/oidc-provider"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text('{"name": "oidc-provider"}')
    out = work / "out"
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    with tarfile.open(out / built.stdout.strip().splitlines()[-1]) as archive:
        yield source, archive


def members(archive: tarfile.TarFile) -> set[str]:
    """The archive's file names without the ``bearer-m2m-X.Y/`` directory they sit in."""
    return {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile() and "/" in m.name}


def source_files(tree: Path, folder: str) -> set[str]:
    """Every file under ``folder`` of the (already filtered) copy, as archive names."""
    return {
        path.relative_to(tree).as_posix()
        for path in (tree / folder).rglob("*")
        if path.is_file() and "node_modules" not in path.parts
    }


def test_the_sdist_has_what_its_tests_need(sdist: tuple[Path, tarfile.TarFile]) -> None:
    _, archive = sdist
    missing = [name for name in REQUIRED if name not in members(archive)]
    assert missing == []


def test_every_test_and_benchmark_file_is_in_the_sdist(
    sdist: tuple[Path, tarfile.TarFile],
) -> None:
    source, archive = sdist
    names = members(archive)
    expected = source_files(source, "tests") | source_files(source, "benchmarks")
    assert "tests/test_sdist.py" in expected  # the walk found the tree
    assert sorted(expected - names) == []


def test_the_sdist_leaves_out_installed_node_modules_and_byte_code(
    sdist: tuple[Path, tarfile.TarFile],
) -> None:
    _, archive = sdist
    names = members(archive)
    assert [n for n in names if "node_modules" in n] == []
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []


def test_the_metadata_is_ready_for_pypi(sdist: tuple[Path, tarfile.TarFile]) -> None:
    _, archive = sdist
    info = next(
        m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
    )
    extracted = archive.extractfile(info)
    assert extracted is not None
    metadata = email.parser.Parser().parsestr(extracted.read().decode())
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {
        "Development Status :: 4 - Beta",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Intended Audience :: Developers",
        "Topic :: Internet :: WWW/HTTP",
        "Topic :: Security",
        "Topic :: Software Development :: Libraries",
        "Framework :: Pytest",
    } <= classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Source", "Issues", "Changelog", "Documentation"}
    assert all(url.startswith("https://github.com/bearer-m2m/bearer-m2m") for url in urls.values())
    assert "oauth2" in (metadata["Keywords"] or "").split(",")
    assert "otel" in (metadata.get_all("Provides-Extra") or [])


def test_the_otel_extra_and_the_test_extra_name_opentelemetry(
    sdist: tuple[Path, tarfile.TarFile],
) -> None:
    """``requires.txt`` is how setuptools records the extras in an sdist."""
    _, archive = sdist
    requires = next(m for m in archive.getmembers() if m.name.endswith(".egg-info/requires.txt"))
    extracted = archive.extractfile(requires)
    assert extracted is not None
    extras = parse_requires(extracted.read().decode())
    assert extras["otel"] == ["opentelemetry-api>=1.20"]
    assert "opentelemetry-api>=1.20" in extras["all"]
    assert {"opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20"} <= set(extras["test"])


def parse_requires(text: str) -> dict[str, list[str]]:
    """``requires.txt``: the core requirements, then a ``[extra]`` section per extra."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in filter(None, (line.strip() for line in text.splitlines())):
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return sections
