"""The reader on every file form, padding and sorting, branch mapping, class selection, splits, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from softsym.data.errors import DataError
from softsym.data.reader import DEFAULT_SCALARS, read_jets
from softsym.data.stratify import split_indices
from softsym.data.stream_plan import estimate_memory_gb, should_stream

FIXTURES = Path(__file__).parent / "fixtures"
FORMS = ("rootio", "mktree", "rntuple", "parquet")
P4 = ("part_energy", "part_px", "part_py", "part_pz")


def form_files(form: str) -> list[str]:
    return sorted(str(p) for p in (FIXTURES / form).iterdir())


def reference_jets(max_particles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p4, scalars and labels padded the slow, obvious way (one jet at a time) from the uproot TTrees."""
    p4s, scalars, labels = [], [], []
    for label, path in enumerate(form_files("mktree")):
        jets = uproot.open(path)["tree"].arrays()
        for jet in jets:
            if len(jet.part_px) == 0:
                continue
            order = np.argsort(-(np.asarray(jet.part_px) ** 2 + np.asarray(jet.part_py) ** 2),
                               kind="stable")[:max_particles]
            padded = np.zeros((max_particles, 4), np.float32)
            padded[:len(order)] = np.stack([np.asarray(jet[c]) for c in P4], axis=1)[order]
            extra = np.zeros((max_particles, len(DEFAULT_SCALARS)), np.float32)
            extra[:len(order)] = np.stack([np.asarray(jet[c]) for c in DEFAULT_SCALARS], axis=1)[order]
            p4s.append(padded)
            scalars.append(extra)
            labels.append(label)
    return np.stack(p4s), np.stack(scalars), np.asarray(labels)


@pytest.fixture(scope="module")
def expected():
    arrays, summary = read_jets(form_files("mktree"), max_particles=16)
    return arrays, summary


def test_root_fixture_is_jetclass_as_written_by_root():
    tree = uproot.open(FIXTURES / "rootio" / "QCD_000.root")["tree"]
    assert tree["part_px"].typename == "std::vector<float>"
    assert tree["part_isPhoton"].typename == "std::vector<int32_t>"
    assert {tree[n].typename for n in ("label_QCD", "label_Hbb", "label_Tbqq")} == {"float", "bool", "int32_t"}
    assert "LZ4" in repr(tree["part_px"].compression)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_reads_to_identical_arrays(form, expected):
    arrays, summary = read_jets(form_files(form), max_particles=16)
    reference, reference_summary = expected
    for name in ("p4", "mask", "labels", "scalars"):
        np.testing.assert_array_equal(getattr(arrays, name), getattr(reference, name), err_msg=name)
    assert arrays.class_names == ("QCD", "Tbqq") and arrays.scalar_names == DEFAULT_SCALARS
    assert summary.n_jets_per_class == reference_summary.n_jets_per_class == {"QCD": 47, "Tbqq": 48}
    assert summary.n_dropped_empty == 1  # the QCD file has one jet without constituents


@pytest.mark.parametrize("max_particles", [8, 64])
def test_padding_truncation_and_pt_sort(max_particles):
    arrays, summary = read_jets(form_files("rootio"), max_particles=max_particles)
    p4, scalars, labels = reference_jets(max_particles)
    np.testing.assert_array_equal(arrays.p4, p4)
    np.testing.assert_array_equal(arrays.scalars, scalars)
    np.testing.assert_array_equal(arrays.labels, labels)
    assert arrays.p4.dtype == np.float32 and arrays.mask.dtype == bool
    n_real = arrays.mask.sum(1)
    assert (arrays.mask == (np.arange(max_particles) < n_real[:, None])).all()  # real particles first
    assert not arrays.p4[~arrays.mask].any()
    pt = np.hypot(arrays.p4[..., 1], arrays.p4[..., 2])
    assert (np.diff(np.where(arrays.mask, pt, 0), axis=1) <= 0).all()
    assert summary.n_truncated == int((n_real == max_particles).sum()) or max_particles == 8


def test_branch_mapping_renamed_tree(tmp_path, expected):
    """data=root: a tree with other names, mapped onto the JetClass names."""
    renames = {"part_px": "px", "part_py": "py", "part_pz": "pz", "part_energy": "e",
               "label_QCD": "is_qcd", "label_Tbqq": "is_top"}
    paths = []
    for path in form_files("rntuple"):
        jets = uproot.open(path)["tree"].arrays(list(renames))
        out = tmp_path / Path(path).name
        with uproot.recreate(out) as file:
            particles = ak.zip({renames[c]: jets[c] for c in P4})
            file.mktree("jets", {"p": particles.type.content, "is_qcd": "float32", "is_top": "int32"})
            file["jets"].extend({"p": particles, "is_qcd": jets.label_QCD, "is_top": jets.label_Tbqq})
        paths.append(str(out))
    mapping = {canonical: f"p_{name}" if canonical.startswith("part_") else name
               for canonical, name in renames.items()}
    arrays, _ = read_jets(paths, tree="jets", branches=mapping, max_particles=16)
    reference, _ = expected
    np.testing.assert_array_equal(arrays.p4, reference.p4)
    np.testing.assert_array_equal(arrays.labels, reference.labels)
    assert arrays.scalar_names == ()


def test_class_order_selection_and_cap():
    files = form_files("parquet")
    flipped, _ = read_jets(files, classes=("Tbqq", "QCD"), max_particles=16)
    assert flipped.class_names == ("Tbqq", "QCD") and (flipped.labels == 0).sum() == 48
    only_qcd, summary = read_jets(files, classes=("QCD",), max_particles=16)
    assert set(only_qcd.labels) == {0} and summary.files_skipped == (files[1],)
    assert summary.n_unselected == 48
    # two QCD files: a cap of 10 fills from the first and never opens the second; the cap counts labelled
    # jets, so the empty one among the first 10 QCD jets leaves 9
    capped, summary = read_jets([*form_files("rootio"), form_files("mktree")[0]], max_jets_per_class=10,
                                max_particles=16)
    assert summary.n_jets_per_class == {"QCD": 9, "Tbqq": 10} and summary.n_dropped_empty == 1
    assert summary.files_skipped == (form_files("mktree")[0],)
    full, _ = read_jets(form_files("rootio"), max_particles=16)
    np.testing.assert_array_equal(capped.p4[:9], full.p4[:9])  # the first jets in file order
    with pytest.raises(DataError, match="no jets of class Hbb"):
        read_jets(files, classes=("QCD", "Hbb"))


def test_mixed_process_file_missing_unselected_labels(tmp_path):
    """Labels cast from mixed dtypes; unselected classes skipped; label columns of other classes optional."""
    counts = np.array([2, 3, 1, 2])
    px = ak.unflatten(np.arange(1, 9, dtype=np.float32), counts)
    columns = {"part_px": px, "part_py": px, "part_pz": px, "part_energy": px * 2,
               "label_QCD": np.array([1, 0, 0, 0], np.float32), "label_Hbb": np.array([0, 1, 0, 0], bool),
               "label_Tbqq": np.array([0, 0, 1, 1], np.int32)}
    path = tmp_path / "mixed.parquet"
    ak.to_parquet(ak.zip(columns, depth_limit=1), path)
    arrays, summary = read_jets([str(path)], max_particles=4)
    np.testing.assert_array_equal(arrays.labels, [0, 1, 1])
    assert summary.n_unselected == 1 and arrays.scalar_names == ()
    assert arrays.p4[0, 0, 1] == 2 and arrays.p4[0, 1, 1] == 1  # sorted by pT


def test_split_indices_stratified_deterministic():
    labels = np.repeat([0, 1, 0, 2, 1], [400, 150, 300, 50, 100])  # files of one class each, in blocks
    train, val, test = split_indices(labels, fractions=(0.7, 0.15, 0.15), seed=3)
    assert len(np.intersect1d(train, val)) == len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(len(labels)))
    assert abs(len(train) - 700) <= 3 and abs(len(val) - 150) <= 3
    signal_frac = (labels != 0).mean()
    for part in (train, val, test):
        assert abs((labels[part] != 0).mean() - signal_frac) <= 0.05 * signal_frac  # the 5% of issue 9
        for cls in (0, 1, 2):  # each class in its proportion, up to rounding one jet
            assert abs((labels[part] == cls).sum() - (labels == cls).sum() * len(part) / len(labels)) <= 1.5
    again = split_indices(labels, fractions=(0.7, 0.15, 0.15), seed=3)
    other = split_indices(labels, fractions=(0.7, 0.15, 0.15), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(train, other[0])
    with pytest.raises(DataError, match="data.splits"):
        split_indices(labels, fractions=(0.7, 0.2, 0.2), seed=0)


def test_should_stream_decides_from_entry_counts():
    files = form_files("mktree")
    estimate = estimate_memory_gb(files, max_particles=128)
    assert 0 < estimate < 0.01  # 96 jets
    assert should_stream(files, stream="auto", memory_budget_gb=estimate / 2)
    assert not should_stream(files, stream="auto", memory_budget_gb=estimate * 2)
    assert should_stream(files, stream=True, memory_budget_gb=100)
    assert not should_stream(files, stream="false", memory_budget_gb=0)
    with pytest.raises(DataError, match="data.stream"):
        should_stream(files, stream="sometimes")


# --- bad input: one DataError that names the file and the problem ---

def _copy(src: Path, tmp_path: Path, name: str | None = None) -> Path:
    out = tmp_path / (name or src.name)
    shutil.copy(src, out)
    return out


def _write_rntuple(path: Path, columns: dict) -> Path:
    with uproot.recreate(path) as file:
        file["tree"] = columns
    return path


def _good_columns(n: int = 4) -> dict:
    px = ak.unflatten(np.arange(1, 2 * n + 1, dtype=np.float32), np.full(n, 2))
    return {"part_px": px, "part_py": px, "part_pz": px, "part_energy": px * 2,
            "label_QCD": np.ones(n, np.float32), "label_Tbqq": np.zeros(n, np.int32)}


def test_missing_file_and_glob(tmp_path):
    with pytest.raises(DataError, match=r"nope\.root: file not found"):
        read_jets([str(tmp_path / "nope.root")])
    with pytest.raises(DataError, match=r"\*\.root: no file matches this glob"):
        read_jets([str(tmp_path / "*.root")])


def test_not_root_or_parquet(tmp_path):
    path = tmp_path / "notes.root"
    path.write_text("hello, not a ROOT file\n")
    with pytest.raises(DataError, match=r"notes\.root: is neither a ROOT file nor a Parquet file"):
        read_jets([str(path)])


@pytest.mark.parametrize("form,name", [("rootio", "QCD_000.root"), ("parquet", "QCD_000.parquet")])
def test_truncated_file(tmp_path, form, name):
    data = (FIXTURES / form / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{name}: .*truncated or corrupt"):
        read_jets([str(path), *form_files(form)[1:]])


def test_missing_tree_lists_trees(tmp_path):
    path = _copy(FIXTURES / "rootio" / "QCD_000.root", tmp_path)
    with pytest.raises(DataError, match=r"QCD_000\.root: has no TTree or RNTuple named 'jets'; found: tree \(TTree\)"):
        read_jets([str(path)], tree="jets")


@pytest.mark.parametrize("form", ["rootio", "rntuple", "parquet"])
def test_missing_branch_lists_branches(form):
    what = {"rootio": "branch", "rntuple": "field", "parquet": "column"}[form]
    with pytest.raises(DataError, match=rf"QCD_000\..*has no {what} 'e' \(mapped from part_energy.*found: .*part_px"):
        read_jets(form_files(form), branches={"part_energy": "e"})


def test_no_label_branches(tmp_path):
    columns = _good_columns()
    del columns["label_QCD"], columns["label_Tbqq"]
    path = _write_rntuple(tmp_path / "nolabels.root", columns)
    with pytest.raises(DataError, match=r"nolabels\.root: RNTuple 'tree' has no label fields"):
        read_jets([str(path)])


def test_nan_values_counted(tmp_path):
    columns = _good_columns()
    values = np.arange(1, 9, dtype=np.float32)
    values[[1, 4, 5]] = [np.nan, np.inf, np.nan]
    columns["part_pz"] = ak.unflatten(values, np.full(4, 2))
    path = _write_rntuple(tmp_path / "nan.root", columns)
    with pytest.raises(DataError, match=r"nan\.root: part_pz has 3 NaN/inf values"):
        read_jets([str(path), *form_files("rntuple")], classes=("QCD",))


def test_labels_not_one_hot_counted(tmp_path):
    columns = _good_columns(6)
    columns["label_Tbqq"] = np.array([0, 1, 0, 1, 0, 0], np.int32)  # rows 1 and 3: two labels set
    columns["label_QCD"] = np.array([1, 1, 1, 1, 0.5, 1], np.float32)  # row 4: not 0/1
    path = _write_rntuple(tmp_path / "labels.root", columns)
    with pytest.raises(DataError, match=r"labels\.root: 3 of 6 jets have labels that are not one-hot.*entry 1"):
        read_jets([str(path)])


def test_mapped_branch_that_does_not_exist():
    with pytest.raises(DataError, match=r"has no branch 'is_top' \(mapped from label_Tbqq"):
        read_jets(form_files("mktree"), branches={"label_Tbqq": "is_top"})


def test_particle_columns_of_different_lengths(tmp_path):
    columns = _good_columns()
    columns["part_energy"] = ak.unflatten(np.ones(9, np.float32), [3, 2, 2, 2])
    path = _write_rntuple(tmp_path / "ragged.root", columns)
    with pytest.raises(DataError, match=r"ragged\.root: part_px and part_energy have different numbers of parti"):
        read_jets([str(path)], classes=("QCD",))


def test_the_files_data_source_returns_the_configured_paths():
    from softsym.data.sources import DATA_SOURCES, source_options
    from softsym.registry import UnknownNameError

    assert DATA_SOURCES.names() == ["files", "pythia"]
    data = {"source": "files", "paths": ["a.root", "b/*.root"], "tree": "tree", "n_workers": 2}
    assert source_options("files", data) == {"paths": ["a.root", "b/*.root"]}
    assert DATA_SOURCES.build("files", **source_options("files", data)) == ["a.root", "b/*.root"]
    with pytest.raises(DataError, match="data.paths is empty"):
        DATA_SOURCES.build("files", paths=[])
    with pytest.raises(UnknownNameError, match="did you mean 'files'"):
        DATA_SOURCES.get("file")
