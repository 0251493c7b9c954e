"""Configs and README agree (issue 20): every ``experiments/*.py`` states the same numbers in
its docstring, its ``expected=`` value and the README's tables.

Read with ``ast`` and regular expressions (no experiment is imported). Two kinds of numbers
are compared, for the digit FD (``fd``) and bits/dim (``bpd``):

* thresholds (``digit FD < 15``, ``test bits/dim < 3.5``, ``NLL <= 2.0 bits/dim``): the
  docstring and ``expected=`` must state the same ones, and so must the expected column of
  the README's Experiments table in a row naming only that config;
* measured values (``measured 2.95``; in README tables, the first number of a ``digit FD``
  column or of the first ``bits/dim`` column of a row whose config cell is that one file,
  and ``FD x`` / ``x bits/dim`` in the Experiments table's "measured here"): all must agree
  to the precision of the less precise one (2.954 agrees with 2.95, 9.1 does not with 7.9).

A failure names the file(s) and the two numbers.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.py"))
README = ROOT / "README.md"

NUM = r"(\d+(?:\.\d+)?)"
METRICS = {"fd": r"\bFD\b", "bpd": r"bits/dim|\bNLL\b"}
_THRESHOLD = re.compile(rf"(<=|>=|<|>)\s*{NUM}(\s*bits/dim|\s*nats)?")
_MEASURED = re.compile(rf"\bmeasured:?\s+{NUM}(\s*bits/dim|\s*nats)?", re.IGNORECASE)

# README numbers that contradict a config and that only the README's owner may fix:
# (config, metric, README value). The test fails once such a number is gone (remove it here).
README_PENDING: set[tuple[str, str, str]] = set()
# (config, metric) whose config states another quantity than the README's tables: the reflow
# config expects its ONE-step Euler FD (16.7); the tables give its 20-step RK4 FD (11.1).
OTHER_QUANTITY: set[tuple[str, str]] = {("rectified_flow_digits_reflow.py", "fd")}


def _metric_before(text: str, end: int) -> str | None:
    """The metric named last in ``text[:end]`` within the same clause: after the last ';'
    outside parentheses (``bits/dim < 2 (17 levels; measured 1.8)`` is one clause)."""
    start, depth = 0, 0
    for i, char in enumerate(text[:end]):
        depth += (char == "(") - (char == ")")
        if char == ";" and depth <= 0:
            start, depth = i + 1, 0
    clause = text[start:end]
    found = [
        (m.end(), name) for name, pattern in METRICS.items() for m in re.finditer(pattern, clause)
    ]
    return max(found)[1] if found else None


def _metric_of(unit: str | None, text: str, start: int) -> str | None:
    """The metric of a number: its unit if given (nats: none of ours), else the clause's."""
    if unit:
        return "bpd" if "bits/dim" in unit else None
    return _metric_before(text, start)


def thresholds(text: str) -> dict[str, set[tuple[str, str]]]:
    """``{metric: {(comparison, value)}}`` of the thresholds stated in ``text``."""
    out: dict[str, set[tuple[str, str]]] = {}
    for m in _THRESHOLD.finditer(text):
        metric = _metric_of(m.group(3), text, m.start())
        if metric and not text[max(0, m.start() - 9) : m.start()].rstrip().endswith("measured"):
            out.setdefault(metric, set()).add((m.group(1), m.group(2)))
    return out


def measured(text: str) -> dict[str, str]:
    """``{metric: value}``: the first ``measured N`` of each metric in ``text``."""
    out: dict[str, str] = {}
    for m in _MEASURED.finditer(text):
        metric = _metric_of(m.group(2), text, m.start())
        if metric:
            out.setdefault(metric, m.group(1))
    return out


def agree(a: str, b: str) -> bool:
    """Equal at the precision of the less precise of the two decimal strings."""
    places = min(len(s.partition(".")[2]) for s in (a, b))
    return round(float(a), places) == round(float(b), places)


def config_texts(path: pathlib.Path) -> tuple[str, str]:
    """(docstring, ``expected=`` string) of an experiment file, read with ``ast``."""
    tree = ast.parse(path.read_text())
    expected = ""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "expected":
            expected = ast.literal_eval(node.value)
    return " ".join((ast.get_docstring(tree) or "").split()), expected


def readme_rows() -> list[tuple[str, dict[str, str]]]:
    """(config file, {column header: cell}) for every README table row whose config cell
    (the ``config`` column, else the first) names exactly one ``*.py`` and nothing else
    that changes it (an override ``key=value``)."""
    rows = []
    header: list[str] | None = None
    for line in README.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        where = next((i for i, h in enumerate(header) if h.lower() == "config"), 0)
        names = re.findall(r"`([\w.]+\.py)`", cells[where]) if where < len(cells) else []
        if len(names) == 1 and "=" not in cells[where]:
            rows.append((names[0], dict(zip(header, cells, strict=False))))
    return rows


def readme_measured(name: str) -> dict[str, list[str]]:
    """``{metric: [values]}`` of ``name`` in the README's result tables."""
    out: dict[str, list[str]] = {}
    for config, row in readme_rows():
        if config != name:
            continue
        bpd_done = False
        for head, cell in row.items():
            number = re.search(NUM, cell.replace("**", ""))
            if number is None or "measured" in head.lower() or "expected" in head.lower():
                continue
            if head == "digit FD":  # (not "digit FD, 20 RK4 steps": another sampler's)
                out.setdefault("fd", []).append(number.group(1))
            elif "bits/dim" in head and not bpd_done:
                out.setdefault("bpd", []).append(number.group(1))
                bpd_done = True
        measured_cell = row.get("measured here", "")
        if measured_cell:
            for metric, pattern in (("fd", rf"FD {NUM}"), ("bpd", rf"{NUM} bits/dim")):
                found = re.search(pattern, measured_cell)
                if found:
                    out.setdefault(metric, []).append(found.group(1))
    return out


def readme_thresholds(name: str) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for config, row in readme_rows():
        if config == name and "expected" in row:
            for metric, found in thresholds(row["expected"]).items():
                out.setdefault(metric, set()).update(found)
    return out


def _ids(paths: list[pathlib.Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=_ids(EXPERIMENTS))
def test_docstring_expected_and_readme_state_the_same_thresholds(path):
    doc, expected = config_texts(path)
    stated = thresholds(expected)
    for where, other in (("docstring", thresholds(doc)), ("README", readme_thresholds(path.name))):
        for metric in set(stated) & set(other):
            assert stated[metric] == other[metric], (
                f"{path.name}: expected= says {metric} {sorted(stated[metric])}, its {where} "
                f"says {sorted(other[metric])}"
            )


@pytest.mark.parametrize("path", EXPERIMENTS, ids=_ids(EXPERIMENTS))
def test_docstring_expected_and_readme_state_the_same_measured_values(path):
    doc, expected = config_texts(path)
    values = [("expected=", v) for v in [measured(expected)]] + [("docstring", measured(doc))]
    sources: dict[str, list[tuple[str, str]]] = {}
    for where, found in values:
        for metric, value in found.items():
            sources.setdefault(metric, []).append((where, value))
    for metric, found in readme_measured(path.name).items():
        if (path.name, metric) in OTHER_QUANTITY:
            continue
        for value in found:
            if (path.name, metric, value) not in README_PENDING:
                sources.setdefault(metric, []).append(("README", value))
    for metric, stated in sources.items():
        for where_a, a in stated:
            for where_b, b in stated:
                assert agree(a, b), f"{path.name}: {metric} {a} ({where_a}) vs {b} ({where_b})"


def test_pending_readme_fixes_are_still_pending():
    """Each README_PENDING number is still in the README (once fixed, drop it there)."""
    for name, metric, value in README_PENDING:
        assert value in readme_measured(name).get(metric, []), (name, metric, value)


def test_the_parsers_read_what_the_configs_write():
    text = "digit FD < 15 at 360 samples (measured 7.9; x 9.9); test bits/dim < 3.5 (measured 2.95)"
    assert thresholds(text) == {"fd": {("<", "15")}, "bpd": {("<", "3.5")}}
    assert measured(text) == {"fd": "7.9", "bpd": "2.95"}
    assert thresholds("test NLL <= 2.0 bits/dim (K=1000)") == {"bpd": {("<=", "2.0")}}
    assert thresholds("test NLL < 2.5 nats (measured 2.43)") == {}
    assert measured("test NLL < 2.5 nats (measured 2.43 nats)") == {}
    assert measured("(17 levels; measured 1.810 +- 0.016, train 1.51)") == {}  # no metric
    assert agree("2.954", "2.95") and agree("32", "31.9") and not agree("9.1", "7.9")
    assert not agree("2.5", "3.5")
    rows = dict(readme_rows())
    assert "ddpm_digits.py" in rows and "vae_digits.py" in rows
