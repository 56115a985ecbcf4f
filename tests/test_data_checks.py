"""Branch dtypes, unphysical particles and truncation, in memory and streamed.

Every file here is written by the test (uproot ``mktree`` TTrees and pyarrow Parquet), a few dozen jets each:
constituents out of pT order, branches of every numeric dtype a ROOT/Parquet file can hold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from softsym.data.checks import ParticleCheck, unphysical_particles
from softsym.data.errors import DataError
from softsym.data.reader import read_jets
from softsym.data.splits import StreamingSplits, load_splits
from softsym.data.stream_plan import plan_stream
from softsym.data.streaming import StreamingJetLoader

P4 = ("part_energy", "part_px", "part_py", "part_pz")
SCALARS = ("part_charge", "part_isPhoton")
SPLITS = ("train", "val", "test")


def make_jets(n_jets: int = 40, seed: int = 0, integer: bool = False) -> dict[str, np.ndarray]:
    """Flat particles (``counts`` per jet, not pT-sorted) with physical 4-vectors, labels alternating."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 14, n_jets)
    n = int(counts.sum())
    p3 = rng.normal(0.0, 20.0, (n, 3))
    mass = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.1, 2.0, n))
    if integer:
        p3 = np.round(p3)
        energy = np.ceil(np.sqrt((p3**2).sum(1) + mass**2)) + 1.0  # integer and timelike
    else:
        energy = np.sqrt((p3**2).sum(1) + mass**2)
    return {"counts": counts, "part_energy": energy, "part_px": p3[:, 0], "part_py": p3[:, 1],
            "part_pz": p3[:, 2], "part_charge": rng.integers(-1, 2, n).astype(float),
            "part_isPhoton": (rng.random(n) < 0.3).astype(float), "label_QCD": np.arange(n_jets) % 2 == 0}


def write(path: Path, jets: dict[str, np.ndarray], p4_dtype: str = "f4", scalar_dtype: str = "f4",
          label_dtype: str = "f4") -> str:
    """One file holding both classes: a TTree written by uproot (.root) or Parquet written by pyarrow."""
    counts = jets["counts"]
    particles = {name: np.asarray(jets[name]).astype(p4_dtype) for name in P4}
    particles |= {name: np.asarray(jets[name]).astype(scalar_dtype) for name in SCALARS}
    labels = {"label_QCD": jets["label_QCD"].astype(label_dtype),
              "label_Tbqq": (~jets["label_QCD"]).astype(label_dtype)}
    if path.suffix == ".root":
        branches = {"part": ak.unflatten(ak.zip({k.removeprefix("part_"): v for k, v in particles.items()}), counts),
                    **labels}
        with uproot.recreate(path) as file:
            file.mktree("tree", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()})
            file["tree"].extend(branches)
    else:
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        columns = {name: pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
                   for name, values in particles.items()}
        columns |= {name: pa.array(values) for name, values in labels.items()}
        pq.write_table(pa.table(columns), path, row_group_size=16)
    return str(path)


def reference(jets: dict[str, np.ndarray], max_particles: int, p4_dtype: str = "f4", scalar_dtype: str = "f4"):
    """(p4, scalars, labels) padded one jet at a time, sorted by the float32 pT² of the stored values."""
    offsets = np.concatenate([[0], np.cumsum(jets["counts"])])
    stored = {name: np.asarray(jets[name]).astype(p4_dtype).astype(np.float32) for name in P4}
    stored |= {name: np.asarray(jets[name]).astype(scalar_dtype).astype(np.float32) for name in SCALARS}
    p4s, scalars = [], []
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        px, py = stored["part_px"][a:b], stored["part_py"][a:b]
        order = np.argsort(-(px * px + py * py), kind="stable")[:max_particles]
        p4 = np.zeros((max_particles, 4), np.float32)
        p4[:len(order)] = np.stack([stored[n][a:b] for n in P4], 1)[order]
        extra = np.zeros((max_particles, len(SCALARS)), np.float32)
        extra[:len(order)] = np.stack([stored[n][a:b] for n in SCALARS], 1)[order]
        p4s.append(p4)
        scalars.append(extra)
    return np.stack(p4s), np.stack(scalars), (~jets["label_QCD"]).astype(np.int64)


def streamed(paths, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """Every jet of every split, streamed (file order), with the plan."""
    plan = plan_stream(paths, scalar_branches=SCALARS, seed=3, chunk_entries=8, **options)
    batches = [b for split in SPLITS for b in StreamingJetLoader(plan, split, batch_size=7, shuffle=False)]
    return (np.concatenate([b.p4.numpy() for b in batches]), np.concatenate([b.scalars.numpy() for b in batches]),
            np.concatenate([b.labels.numpy() for b in batches]), plan)


def keys(p4: np.ndarray, labels: np.ndarray) -> list[bytes]:
    return sorted(row.tobytes() + bytes([int(label)]) for row, label in zip(p4.reshape(len(p4), -1), labels,
                                                                            strict=True))


# --- 1. every dtype, sorted or not, in memory and streamed ---

@pytest.mark.parametrize("suffix", [".root", ".parquet"])
@pytest.mark.parametrize("p4_dtype, scalar_dtype, label_dtype", [
    ("f8", "f8", "f8"), ("i8", "i8", "i8"), ("i4", "u1", "bool"), ("f4", "bool", "u1"), ("f8", "i2", "i4"),
])
def test_every_branch_dtype_reads_unsorted_in_memory_and_streamed(tmp_path, suffix, p4_dtype, scalar_dtype,
                                                                   label_dtype):
    jets = make_jets(integer=p4_dtype[0] in "iu")
    path = write(tmp_path / f"jets{suffix}", jets, p4_dtype, scalar_dtype, label_dtype)
    p4, scalars, labels = reference(jets, 8, p4_dtype, scalar_dtype)
    offsets = np.concatenate([[0], np.cumsum(jets["counts"])])
    pt2 = jets["part_px"] ** 2 + jets["part_py"] ** 2
    assert any((np.diff(pt2[a:b]) > 0).any() for a, b in zip(offsets[:-1], offsets[1:], strict=True))  # unsorted

    arrays, summary = read_jets([path], scalar_branches=SCALARS, max_particles=8)
    assert arrays.p4.dtype == np.float32 and arrays.scalars.dtype == np.float32
    np.testing.assert_array_equal(arrays.p4, p4)
    np.testing.assert_array_equal(arrays.scalars, scalars)
    np.testing.assert_array_equal(arrays.labels, labels)
    assert summary.n_truncated == int((jets["counts"] > 8).sum())

    stream_p4, stream_scalars, stream_labels, _ = streamed([path], max_particles=8)
    assert keys(stream_p4, stream_labels) == keys(p4, labels)
    assert sorted(map(bytes, stream_scalars.reshape(len(stream_scalars), -1))) == \
        sorted(map(bytes, scalars.reshape(len(scalars), -1)))


def test_double_precision_keeps_the_float32_order_of_what_is_stored(tmp_path):
    """Two particles whose pT differ only below float32 precision: the order is the stored float32 one."""
    jets = {"counts": np.array([3]), "part_energy": np.array([10.0, 10.0, 20.0]),
            "part_px": np.array([3.0, 3.0 + 1e-12, 5.0]), "part_py": np.zeros(3), "part_pz": np.zeros(3),
            "part_charge": np.zeros(3), "part_isPhoton": np.zeros(3), "label_QCD": np.array([True])}
    jets = {k: np.concatenate([v, v]) if k != "counts" else np.array([3, 3]) for k, v in jets.items()}
    jets["label_QCD"] = np.array([True, False])
    arrays, _ = read_jets([write(tmp_path / "close.root", jets, "f8")], scalar_branches=SCALARS, max_particles=4)
    np.testing.assert_array_equal(arrays.p4[0, :3, 1], [5.0, 3.0, 3.0])


# --- 2. unphysical particles ---

def spoil(jets: dict[str, np.ndarray], particles: list[int], kind: str) -> dict[str, np.ndarray]:
    """The same jets with some particles made spacelike (E 1% below |p|) or of energy <= 0."""
    jets = {k: v.copy() for k, v in jets.items()}
    p = np.sqrt(jets["part_px"] ** 2 + jets["part_py"] ** 2 + jets["part_pz"] ** 2)
    for i in particles:
        jets["part_energy"][i] = 0.99 * p[i] if kind == "spacelike" else -1.0
    return jets


def without(jets: dict[str, np.ndarray], particles: list[int]) -> dict[str, np.ndarray]:
    """The jets with those particles removed (what data.unphysical=drop must give)."""
    keep = np.ones(int(jets["counts"].sum()), bool)
    keep[particles] = False
    jet_of = np.repeat(np.arange(len(jets["counts"])), jets["counts"])
    out = {k: v[keep] for k, v in jets.items() if k.startswith("part_")}
    out["counts"] = np.bincount(jet_of[keep], minlength=len(jets["counts"]))
    out["label_QCD"] = jets["label_QCD"]
    return out


def test_the_tolerance_accepts_float32_rounding_of_massless_particles():
    rng = np.random.default_rng(1)
    p3 = rng.normal(0, 1, (100_000, 3)) * rng.lognormal(0, 3, (100_000, 1))
    energy = np.sqrt((p3**2).sum(1))  # massless, in double precision, then stored as float32
    columns = [a.astype(np.float32) for a in (energy, *p3.T)]
    not_positive, spacelike = unphysical_particles(*columns, 1e-4)
    assert not not_positive.any() and not spacelike.any()
    assert unphysical_particles(*columns, 0.0)[1].any()  # without a tolerance, rounding is "spacelike"
    spoiled = columns[0] * np.float32(1 - 3e-4)  # E 3e-4 below |p|: beyond 1e-4
    assert unphysical_particles(spoiled, *columns[1:], 1e-4)[1].all()
    with pytest.raises(DataError, match="data.unphysical must be one of error, drop, keep"):
        ParticleCheck("ignore")
    with pytest.raises(DataError, match="data.unphysical_tolerance"):
        ParticleCheck("error", -1.0)


@pytest.mark.parametrize("suffix", [".root", ".parquet"])
@pytest.mark.parametrize("kind", ["spacelike", "energy"])
def test_unphysical_particles_are_refused_naming_file_branch_and_entry(tmp_path, suffix, kind):
    jets = make_jets()
    first_of_jet = np.concatenate([[0], np.cumsum(jets["counts"])])
    bad = [int(first_of_jet[17]) + 1 if jets["counts"][17] > 1 else int(first_of_jet[17]), int(first_of_jet[30])]
    path = write(tmp_path / f"bad{suffix}", spoil(jets, bad, kind), "f8")
    what = "part_energy <= 0" if kind == "energy" else r"part_energy < \|\(part_px, part_py, part_pz\)\|"
    pattern = rf"bad{suffix.replace('.', '[.]')}: 2 unphysical particles .*{what}.*first is in entry 17"
    with pytest.raises(DataError, match=pattern):
        read_jets([path], scalar_branches=SCALARS, max_particles=8)
    with pytest.raises(DataError, match=pattern):
        plan_stream([path], scalar_branches=SCALARS, max_particles=8)  # refused before any epoch
    with pytest.raises(DataError, match="data.unphysical=drop"):
        load_splits([path], max_particles=8)


@pytest.mark.parametrize("suffix", [".root", ".parquet"])
def test_drop_removes_and_keep_keeps_unphysical_particles_and_both_count_them(tmp_path, suffix):
    jets = make_jets()
    starts = np.concatenate([[0], np.cumsum(jets["counts"])])
    lonely = int(np.flatnonzero(jets["counts"] == 1)[0])  # a jet whose only particle goes: it becomes empty
    bad = [int(starts[3]), int(starts[11]) + int(jets["counts"][11]) - 1, int(starts[lonely])]
    spoiled = spoil(spoil(jets, bad[:2], "spacelike"), bad[2:], "energy")
    path = write(tmp_path / f"bad{suffix}", spoiled)
    clean = without(spoiled, bad)
    assert clean["counts"][lonely] == 0

    dropped, summary = read_jets([path], scalar_branches=SCALARS, max_particles=8, unphysical="drop")
    p4, scalars, labels = reference(without_jets(clean, clean["counts"] == 0), 8)  # the emptied jet goes too
    np.testing.assert_array_equal(dropped.p4, p4)
    np.testing.assert_array_equal(dropped.scalars, scalars)
    np.testing.assert_array_equal(dropped.labels, labels)
    assert summary.n_unphysical == 3 and summary.n_dropped_empty == 1
    assert (dropped.p4[..., 0][dropped.mask] > 0).all()

    kept, kept_summary = read_jets([path], scalar_branches=SCALARS, max_particles=8, unphysical="keep")
    p4, _, _ = reference(spoiled, 8)
    np.testing.assert_array_equal(kept.p4, p4)
    assert kept_summary.n_unphysical == 3 and kept_summary.n_dropped_empty == 0
    assert (kept.p4[..., 0][kept.mask] <= 0).sum() == 1

    for mode, arrays, counts in (("drop", dropped, summary), ("keep", kept, kept_summary)):
        stream_p4, _, stream_labels, plan = streamed([path], max_particles=8, unphysical=mode)
        assert keys(stream_p4, stream_labels) == keys(arrays.p4, arrays.labels), mode
        assert plan.counts == counts.counts, mode
        metrics = StreamingSplits(plan).metrics()
        assert metrics["data_unphysical_particles"] == 3.0
        assert metrics["data_dropped_jets"] == float(mode == "drop")
        in_memory = load_splits([path], max_particles=8, unphysical=mode).metrics()
        assert in_memory["data_unphysical_particles"] == 3.0


def without_jets(jets: dict[str, np.ndarray], drop: np.ndarray) -> dict[str, np.ndarray]:
    jet_of = np.repeat(np.arange(len(jets["counts"])), jets["counts"])
    keep = ~drop[jet_of]
    out = {k: v[keep] for k, v in jets.items() if k.startswith("part_")}
    return out | {"counts": jets["counts"][~drop], "label_QCD": jets["label_QCD"][~drop]}


# --- 3. truncation, counted and logged ---

@pytest.mark.parametrize("max_particles", [4, 9, 64])
def test_truncated_jets_and_particles_lost_are_counted_in_memory_and_streamed(tmp_path, max_particles):
    jets = make_jets(n_jets=60, seed=4)
    path = write(tmp_path / "jets.root", jets)
    over = jets["counts"][jets["counts"] > max_particles] - max_particles  # independent count
    expected = {"data_truncated_jets": float(len(over)),
                "data_truncated_particles_mean": float(over.mean()) if len(over) else 0.0}
    splits = load_splits([path], max_particles=max_particles)
    assert splits.summary.n_truncated_particles == int(over.sum())
    plan = plan_stream([path], max_particles=max_particles)
    for metrics in (splits.metrics(), StreamingSplits(plan).metrics()):
        assert {k: metrics[k] for k in expected} == pytest.approx(expected)
        assert metrics["data_unphysical_particles"] == 0.0
    arrays, _ = read_jets([path], max_particles=max_particles, scalar_branches=SCALARS)
    np.testing.assert_array_equal(arrays.mask.sum(1), np.minimum(jets["counts"], max_particles))


def test_the_data_stage_logs_the_checks(tmp_path, caplog):
    from omegaconf import OmegaConf

    from softsym.stages import STAGES
    from softsym.stages.context import StageContext

    class Recorder:
        def __init__(self):
            self.metrics, self.tags = {}, {}

        def log_metrics(self, metrics, step=None):
            self.metrics.update(metrics)

        def set_tags(self, tags):
            self.tags.update(tags)

    jets = make_jets(n_jets=30, seed=5)
    path = write(tmp_path / "jets.root", spoil(jets, [0], "spacelike"))
    cfg = OmegaConf.create({"data": {"max_particles": 4, "unphysical": "keep", "eval_sets": {}}, "progress": False})
    for splits in (load_splits([path], max_particles=4, unphysical="keep"),
                   StreamingSplits(plan_stream([path], max_particles=4, unphysical="keep"))):
        tracker = Recorder()
        ctx = StageContext(cfg, tracker, tmp_path, outputs={"dataset": splits})
        with caplog.at_level(logging.WARNING, logger="softsym.stages.data"):
            caplog.clear()
            STAGES.get("data")(ctx)
        n_over = int((jets["counts"] > 4).sum())
        assert tracker.metrics["data_truncated_jets"] == n_over
        assert tracker.metrics["data_unphysical_particles"] == 1
        assert f"{n_over} jets have more than data.max_particles=4" in caplog.text
        assert "1 unphysical particle(s)" in caplog.text
