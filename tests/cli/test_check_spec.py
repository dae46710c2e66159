"""`image-compat-extender check-spec`, through a real subprocess, on purpose-made bad specs."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import DATA, SPECS, Run


def findings(stdout: str, path: Path) -> list[str]:
    """The finding lines for one file, without the file prefix."""
    prefix = f"{path}: "
    return [line[len(prefix) :] for line in stdout.splitlines() if line.startswith(prefix)]


def test_clean_spec_is_ok(run: Run) -> None:
    result = run("check-spec", DATA / "clean.yaml")
    assert result.returncode == 0
    assert result.stdout == f"{DATA / 'clean.yaml'}: ok\n"


def test_invalid_yaml_is_an_error(run: Run) -> None:
    path = DATA / "invalid-yaml.yaml"
    result = run("check-spec", path)
    assert result.returncode == 1
    lines = findings(result.stdout, path)
    assert lines[0].startswith("error: invalid YAML")
    assert "(line " in lines[0]
    assert lines[-1] == "1 error, 0 warnings"


def test_every_load_error_is_reported_with_its_path(run: Run) -> None:
    path = DATA / "bad-expressions.yaml"
    result = run("check-spec", path)
    assert result.returncode == 1
    lines = findings(result.stdout, path)
    errors = [line for line in lines if line.startswith("error: ")]
    base = "error: compatibilities[0].rules"
    assert len(errors) == 3
    assert errors[0] == (
        f"{base}[0].matchFeatures[0].matchExpressions.family: "
        "op Gt needs exactly one value (have 2) [invalid]"
    )
    assert errors[1].startswith(
        f"{base}[0].matchFeatures[0].matchExpressions.id: unknown op 'in' (ops are case-sensitive"
    )
    assert errors[2] == (
        f"{base}[1].matchFeatures[0].matchExpressions.major.value[0]: "
        "'5.15' is not an integer (add type: version to compare versions) [invalid]"
    )
    assert lines[-1].startswith("3 errors")


def test_warnings_name_their_paths_and_do_not_fail(run: Run) -> None:
    path = DATA / "warnings.yaml"
    result = run("check-spec", path)
    assert result.returncode == 0, result.stdout
    lines = findings(result.stdout, path)
    set0, set1, set2 = "compatibilities[0]", "compatibilities[1]", "compatibilities[2]"
    expected = [
        # unknown field, with a hint
        f"warning: {set0}.weigth: unknown field, ignored; did you mean 'weight'? [unknown-field]",
        # an unquoted number in a value list: YAML 1.1 reads 0200 as octal 128
        f"warning: {set0}.rules[1].matchFeatures[0].matchExpressions.class.value[0]: "
        "unquoted 0200 is read as '128'; quote it to keep it as written [spec]",
        # the hyphen NFD's own docs example has
        f"warning: {set0}.rules[0].matchFeatures[0].matchExpressions.vfio-pci: 'vfio-pci' "
        "never matches: /proc/modules lists module names with underscores; write 'vfio_pci' "
        "[module-hyphen]",
        f"warning: {set0}.rules[1].matchFeatures[0].matchExpressions.vendor.value[0]: "
        "'0x8086' never equals pci.device vendor: NFD reports 4 lower-case hex digits "
        "without 0x (e.g. '8086') [id-format]",
        # a set that can never match: Exists in one rule, DoesNotExist in another
        f"warning: {set1}.rules[1].matchFeatures[0].matchExpressions.vfio_pci: DoesNotExist "
        f"contradicts Exists at {set1}.rules[0].matchFeatures[0].matchExpressions.vfio_pci: "
        "no node has a kernel.loadedmodule 'vfio_pci' that satisfies all of them [contradiction]",
        f"warning: {set1}: this set can never match: kernel.loadedmodule: vfio_pci Exists and "
        "DoesNotExist cannot all hold [never-matches]",
        # a value op on a flag-only feature
        f"warning: {set2}.rules[0].matchFeatures[0].matchExpressions.nvidia: In never matches: "
        "kernel.loadedmodule elements are flags (present or absent, with no value); use Exists "
        "or DoesNotExist [flag-value-op]",
        f"warning: {set2}: this set can never match: kernel.loadedmodule: nvidia In [true] tests "
        f"the value of a flag ({set2}.rules[0].matchFeatures[0].matchExpressions.nvidia) "
        "[never-matches]",
    ]
    for line in expected:
        assert line in lines
    assert lines[-1] == f"0 errors, {len(lines) - 1} warnings"
    strict = run("check-spec", "--strict", path)
    assert strict.returncode == 1


def test_several_files_each_get_a_summary_and_any_error_fails(run: Run) -> None:
    clean, bad = DATA / "clean.yaml", DATA / "bad-expressions.yaml"
    result = run("check-spec", clean, bad)
    assert result.returncode == 1
    assert f"{clean}: ok" in result.stdout.splitlines()
    assert f"{bad}: 3 errors, 0 warnings" in result.stdout.splitlines()


def test_unreadable_file_is_an_error(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = run("check-spec", DATA / "clean.yaml", missing)
    assert result.returncode == 1
    assert f"{missing}: error: cannot read {missing}" in result.stdout


def test_spec_from_stdin(run: Run) -> None:
    result = run("check-spec", "-", stdin=(DATA / "warnings.yaml").read_text())
    assert result.returncode == 0
    assert "-: warning: compatibilities[0].weigth: unknown field" in result.stdout


def test_no_files_is_a_usage_error(run: Run) -> None:
    assert run("check-spec").returncode == 2


def test_example_specs_pass(run: Run) -> None:
    specs = sorted(SPECS.glob("*.yaml"))
    result = run("check-spec", *specs)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    for spec in specs:
        if spec.name == "cuda-app.yaml":
            continue
        assert f"{spec}: ok" in lines
    # The CUDA example deliberately uses `type: version` on kernel.version.full.
    cuda = findings(result.stdout, SPECS / "cuda-app.yaml")
    assert len(cuda) == 2
    assert cuda[0].endswith("[version-portability]")
