"""Pythia 8 + FastJet generator (data=pythia): physics of the jets, the JetClass schema, caching and safety.

One generation of 100 top + 100 QCD jets (two workers, detector on) is shared by the module; the other tests
use a few small shards with MPI off, which is faster and enough for what they check.
"""

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from softsym.data.errors import DataError
from softsym.data.pythia import GenerationConfig, generate_shard, generate_shards, shard_tasks
from softsym.data.pythia.detector import PHOTON, DetectorConfig, Particles, apply_detector

N_PER_CLASS = 100
PT_MIN, PT_MAX, ETA_MAX = 550.0, 650.0, 2.0
FLOAT_PARTICLE = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi", "part_charge")
PID_FLAGS = ("part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon")
JET = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass", "jet_tau1", "jet_tau2",
       "jet_tau3", "jet_tau4")
SMALL = dict(n_jets_per_class=3, jets_per_shard=3, mpi=False)  # one shard of 3 jets per class, MPI off


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("pythia")
    result = generate_shards(out_dir=out, n_jets_per_class=N_PER_CLASS, jets_per_shard=N_PER_CLASS // 2,
                             pt_min=PT_MIN, pt_max=PT_MAX, eta_max=ETA_MAX, seed=11, n_workers=2)
    return out, result


def _read(paths):
    return ak.concatenate([uproot.open(p)["tree"].arrays() for p in paths])


def _by_class(result):
    arrays = _read(result.paths)
    return arrays[arrays.label_Tbqq == 1], arrays[arrays.label_QCD == 1]


def test_shards_follow_the_jetclass_schema(generated):
    _, result = generated
    assert result.n_generated_shards == 4 and result.n_reused_shards == 0
    assert [p.name for p in result.paths] == ["qcd_000.root", "qcd_001.root", "ttbar_000.root", "ttbar_001.root"]
    assert all(p.parent.name.startswith("pythia-") for p in result.paths)
    tree = uproot.open(result.paths[0])["tree"]  # a TTree (mktree), not an RNTuple
    assert isinstance(tree, uproot.TTree)
    types = {name: tree[name].typename for name in tree.keys()}
    assert {types[n] for n in FLOAT_PARTICLE} == {"float[]"}
    assert {types[n] for n in PID_FLAGS} == {"int32_t[]"}
    assert {types[n] for n in JET} == {"float"}
    assert types["label_QCD"] == "float" and types["label_Tbqq"] == "int32_t"


def test_classes_are_balanced_one_hot_and_one_process_per_file(generated):
    _, result = generated
    for path in result.paths:
        arrays = uproot.open(path)["tree"].arrays(["label_QCD", "label_Tbqq"])
        is_top = path.name.startswith("ttbar")
        assert np.all(arrays.label_Tbqq == int(is_top)) and np.all(arrays.label_QCD == float(not is_top))
    top, qcd = _by_class(result)
    assert len(top) == len(qcd) == N_PER_CLASS


def test_the_data_stage_reader_opens_the_shards(generated):
    from softsym.data.reader import read_jets

    _, result = generated
    jets, _ = read_jets([str(p) for p in result.paths], classes=("QCD", "Tbqq"), max_particles=128)
    assert len(jets) == 2 * N_PER_CLASS
    assert np.bincount(jets.labels).tolist() == [N_PER_CLASS, N_PER_CLASS]


def test_all_jets_are_in_the_pt_and_eta_window(generated):
    _, result = generated
    arrays = _read(result.paths)
    assert np.all((arrays.jet_pt >= PT_MIN) & (arrays.jet_pt <= PT_MAX))
    assert np.all(np.abs(arrays.jet_eta) < ETA_MAX)


def test_soft_drop_mass_peaks_at_the_top_mass_for_top_jets_only(generated):
    _, result = generated
    top, qcd = _by_class(result)
    top_median, qcd_median = np.median(top.jet_sdmass), np.median(qcd.jet_sdmass)
    assert 140.0 < top_median < 200.0
    assert qcd_median < 80.0
    # and top jets are three-pronged: tau3/tau2 lower than for QCD
    assert np.median(top.jet_tau3 / top.jet_tau2) < np.median(qcd.jet_tau3 / qcd.jet_tau2) - 0.1


def test_constituents_sum_to_the_jet_and_are_consistent(generated):
    _, result = generated
    a = _read(result.paths)
    px, py, pz, e = (ak.sum(a[f], axis=1).to_numpy().astype(np.float64)
                     for f in ("part_px", "part_py", "part_pz", "part_energy"))
    pt = np.hypot(px, py)
    np.testing.assert_allclose(pt, a.jet_pt.to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(e, a.jet_energy.to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(np.arcsinh(pz / pt), a.jet_eta.to_numpy(), atol=1e-3)
    dphi = (np.arctan2(py, px) - a.jet_phi.to_numpy() + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(dphi, 0.0, atol=1e-3)
    assert np.all(ak.num(a.part_px, axis=1).to_numpy() == a.jet_nparticles.to_numpy())

    part_pt = np.hypot(a.part_px, a.part_py)
    assert ak.all(part_pt[:, :-1] >= part_pt[:, 1:])  # pT-sorted
    eta = np.arcsinh(a.part_pz / part_pt)
    np.testing.assert_allclose(ak.flatten(eta - a.jet_eta).to_numpy(), ak.flatten(a.part_deta).to_numpy(),
                               atol=1e-3)
    flags = sum(a[name] for name in PID_FLAGS)
    assert ak.all(flags == 1)  # exactly one PID flag per particle
    charged = (a.part_isChargedHadron + a.part_isElectron + a.part_isMuon) == 1
    assert ak.all(charged == (a.part_charge != 0))


def test_detector_thresholds_are_applied(generated):
    _, result = generated
    a = _read(result.paths)
    pt = ak.flatten(np.hypot(a.part_px, a.part_py)).to_numpy()
    charged = ak.flatten(a.part_charge != 0).to_numpy()
    assert pt[charged].min() >= 0.3 - 1e-4 and pt[~charged].min() >= 0.5 - 1e-4


def test_second_identical_call_reuses_every_shard(generated):
    out, first = generated
    mtimes = [p.stat().st_mtime_ns for p in first.paths]
    again = generate_shards(out_dir=out, n_jets_per_class=N_PER_CLASS, jets_per_shard=N_PER_CLASS // 2,
                            pt_min=PT_MIN, pt_max=PT_MAX, eta_max=ETA_MAX, seed=11, n_workers=2)
    assert again.paths == first.paths
    assert again.n_generated_shards == 0 and again.n_reused_shards == 4
    assert "reused all 4" in again.summary()
    assert again.seconds < 0.2 * first.seconds
    assert [p.stat().st_mtime_ns for p in again.paths] == mtimes


def test_the_pythia_data_source_returns_the_same_shards(generated):
    from softsym.data.sources import DATA_SOURCES, source_options

    out, first = generated
    data = {"source": "pythia", "paths": None, "tree": "tree", "cache_dir": str(out), "generation_seed": 11,
            "n_jets_per_class": N_PER_CLASS, "jets_per_shard": N_PER_CLASS // 2, "pt_min": PT_MIN,
            "pt_max": PT_MAX, "eta_max": ETA_MAX, "n_workers": 2, "detector": {"enabled": True}}
    options = source_options("pythia", data)
    assert "paths" not in options and "tree" not in options and options["generation_seed"] == 11
    assert DATA_SOURCES.build("pythia", **options) == [str(p) for p in first.paths]
    assert DATA_SOURCES.build("pythia", **{**options, "detector": {}}) == [str(p) for p in first.paths]


def test_same_seed_gives_identical_shards_whatever_the_number_of_workers(generated, tmp_path):
    _, result = generated
    config = GenerationConfig(n_jets_per_class=N_PER_CLASS, jets_per_shard=N_PER_CLASS // 2, pt_min=PT_MIN,
                              pt_max=PT_MAX, eta_max=ETA_MAX, seed=11)
    task = shard_tasks(config, tmp_path)[0]  # qcd_000, generated above by one of two workers
    assert config.key in str(result.cache_dir)
    generate_shard(task)
    fresh, original = uproot.open(task.path)["tree"], uproot.open(result.paths[0])["tree"]
    assert fresh.keys() == original.keys()
    for name in original.keys():
        assert ak.all(fresh[name].array() == original[name].array()), name


def test_a_different_seed_or_config_is_a_different_cache(tmp_path):
    a = generate_shards(out_dir=tmp_path, seed=1, **SMALL)
    b = generate_shards(out_dir=tmp_path, seed=2, **SMALL)
    c = generate_shards(out_dir=tmp_path, seed=1, detector=None, **SMALL)
    assert len({a.cache_dir, b.cache_dir, c.cache_dir}) == 3
    assert not np.array_equal(_read(a.paths).jet_pt.to_numpy(), _read(b.paths).jet_pt.to_numpy())
    # without the detector there is no pT threshold: generator-level particles below 0.3 GeV appear
    pt = ak.flatten(np.hypot(_read(c.paths).part_px, _read(c.paths).part_py)).to_numpy()
    assert pt.min() < 0.3
    assert generate_shards(out_dir=tmp_path, seed=1, detector=DetectorConfig(enabled=False), **SMALL).cache_dir \
        == c.cache_dir


def test_a_killed_generation_leaves_no_partial_file_and_resumes(tmp_path):
    options = dict(n_jets_per_class=4, jets_per_shard=2, mpi=False, seed=5)  # 4 shards
    script = textwrap.dedent(f"""
        from softsym.data.pythia import generate_shards
        if __name__ == "__main__":
            generate_shards(out_dir={str(tmp_path)!r}, n_workers=2, **{options!r})
    """)
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("pythia-*/*.root")):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was written within 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the parent and its two workers, mid-way
        child.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the workers die asynchronously (and only then drop their locks)
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    cache = next(tmp_path.glob("pythia-*"))
    finished = sorted(cache.glob("*.root"))
    assert 1 <= len(finished) < 4
    for path in finished:  # whatever has the final name is complete
        assert uproot.open(path)["tree"].num_entries == 2

    result = generate_shards(out_dir=tmp_path, n_workers=1, **options)
    assert result.n_reused_shards >= len(finished) and result.n_generated_shards == 4 - result.n_reused_shards
    assert [uproot.open(p)["tree"].num_entries for p in result.paths] == [2] * 4
    assert sorted(p.name for p in cache.iterdir()) == sorted([p.name for p in result.paths] + ["config.json"])


def _generation_script(out_dir, options: dict, n_workers: int, start_file=None) -> str:
    """A generation in a child process; it prints its result as JSON (and waits for ``start_file`` first)."""
    return textwrap.dedent(f"""
        import json, os, time
        from softsym.data.pythia import generate_shards
        if __name__ == "__main__":
            while {str(start_file)!r} != "None" and not os.path.exists({str(start_file)!r}):
                time.sleep(0.01)
            result = generate_shards(out_dir={str(out_dir)!r}, n_workers={n_workers}, **{options!r})
            print(json.dumps({{"generated": result.n_generated_shards, "reused": result.n_reused_shards,
                              "paths": [str(p) for p in result.paths]}}))
    """)


def _live_group_members(group: int) -> list[str]:
    """Processes of process group ``group`` that are not zombies (from /proc: no psutil needed)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            members.append(f"{stat.parent.name}: {text[:80]}")
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_the_parent_leaves_no_worker_behind(tmp_path, sig):
    """Only the parent is signalled: its two workers must go too, mid-shard, and take their temporaries along."""
    options = dict(n_jets_per_class=6, jets_per_shard=2, mpi=False, seed=6)  # 6 shards
    child = subprocess.Popen([sys.executable, "-c", _generation_script(tmp_path, options, 2)],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("pythia-*/*.root")):  # mid-way: the workers are making the next shards
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was written within 120 s"
            time.sleep(0.01)
        assert len(_live_group_members(child.pid)) >= 3  # the parent and its workers
        os.kill(child.pid, sig)
        child.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := _live_group_members(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes left behind after {sig.name} of the parent: {left}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode != 0
    cache = next(tmp_path.glob("pythia-*"))
    assert not list(cache.glob(".*.tmp*")), "a temporary was left behind"
    for path in cache.glob("*.root"):  # whatever has the final name is complete
        assert uproot.open(path)["tree"].num_entries == 2
    result = generate_shards(out_dir=tmp_path, n_workers=1, **options)  # and the cache resumes cleanly
    assert sorted(p.name for p in cache.iterdir()) == sorted([p.name for p in result.paths] + ["config.json"])


def test_two_concurrent_generations_of_one_config_make_each_shard_once(tmp_path):
    options = dict(n_jets_per_class=6, jets_per_shard=2, mpi=False, seed=8)  # 6 shards
    start = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", _generation_script(tmp_path, options, n_workers, start)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for n_workers in (1, 2)]
    time.sleep(1.0)  # both have imported by now; they start together
    start.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0]["paths"] == outputs[1]["paths"] and len(outputs[0]["paths"]) == 6
    assert outputs[0]["generated"] + outputs[1]["generated"] == 6  # every shard made once
    assert all(o["generated"] + o["reused"] == 6 for o in outputs)
    cache = Path(outputs[0]["paths"][0]).parent
    assert sorted(p.name for p in cache.iterdir()) == sorted([Path(p).name for p in outputs[0]["paths"]]
                                                             + ["config.json"])  # no lock file left
    assert [uproot.open(p)["tree"].num_entries for p in outputs[0]["paths"]] == [2] * 6


def test_a_shard_locked_by_another_process_is_waited_for_and_reused(tmp_path):
    from softsym.data.pythia.pool import BUSY, REUSED, produce_shard
    from softsym.data.pythia.shards import shard_lock

    task = shard_tasks(GenerationConfig(**SMALL), tmp_path)[0]
    with shard_lock(task.path, wait=False) as held:
        assert held
        assert produce_shard(task, lambda n: None, wait=False) == (BUSY, None)
        task.path.write_bytes(b"made by the holder")  # as if the other generation had made it
    assert produce_shard(task, lambda n: None, wait=True) == (REUSED, None)
    assert not list(tmp_path.glob(".*"))  # the lock file went with its holder


def test_stale_temporaries_are_removed_but_live_ones_kept(tmp_path):
    config = GenerationConfig(**SMALL)
    cache = tmp_path / f"pythia-{config.key}"
    cache.mkdir()
    stale = cache / ".qcd_000.root.0badf00d.tmp"
    stale.write_bytes(b"half a ROOT file")
    live = cache / ".qcd_001.root.0c0ffee0.tmp"
    with open(live, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # as a concurrent writer holds it
        result = generate_shards(out_dir=tmp_path, **SMALL)
        assert live.exists()
    assert not stale.exists()
    assert [uproot.open(p)["tree"].num_entries for p in result.paths] == [3] * 2


def test_a_failing_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import softsym.data.pythia as pythia

    def broken_mktree(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(uproot.WritableDirectory, "mktree", broken_mktree)
    with pytest.raises(OSError, match="disk full"):
        pythia.generate_shards(out_dir=tmp_path, **SMALL)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "config.json"]


@pytest.mark.parametrize("options, message", [
    (dict(n_jets_per_class=0), "n_jets_per_class"),
    (dict(n_jets_per_class=10, pt_min=700.0, pt_max=650.0), "pt_min"),
    (dict(n_jets_per_class=10, n_workers=0), "n_workers"),
    (dict(n_jets_per_class=10, detector={"resolution": 0.1}), "unknown detector option"),
    (dict(n_jets_per_class=10, detector={"min_pt_charged": -1.0}), "min_pt_charged"),
    (dict(n_jets_per_class=10, pthat_min=800.0, pthat_max=900.0), "does not overlap"),
])
def test_bad_options_raise_a_data_error(tmp_path, options, message):
    with pytest.raises(DataError, match=message):
        generate_shards(out_dir=tmp_path, **options)


# ---------------------------------------------------------------------------------------------------------
# The detector response alone


def _particles(n, *, charge, kind, energy, eta=0.5, seed=0):
    rng = np.random.default_rng(seed)
    phi = rng.uniform(-np.pi, np.pi, n)
    eta = np.full(n, eta) + rng.normal(0, 0.3, n)
    pt = energy / np.cosh(eta)
    return Particles(np.sort(rng.integers(0, 10, n)), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                     np.full(n, float(energy)), np.full(n, charge, np.int32), np.full(n, kind, np.int8))


def test_detector_resolutions_match_the_configuration():
    config = DetectorConfig()
    rng = np.random.default_rng(0)
    photons = _particles(200_000, charge=0, kind=PHOTON, energy=100.0)
    smeared = apply_detector(photons, config, rng)
    ratio = smeared.energy / 100.0
    assert np.std(ratio) == pytest.approx(np.hypot(0.05 / 10.0, 0.01), rel=0.02)
    assert np.mean(ratio) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(smeared.eta, photons.eta, atol=1e-9)  # direction kept
    pions = _particles(200_000, charge=1, kind=0, energy=200.0, eta=0.0)
    smeared = apply_detector(pions, config, rng)
    pt_ratio = smeared.pt / pions.pt
    expected = np.sqrt(np.mean((1e-4 * pions.pt) ** 2) + 0.005**2)
    assert np.std(pt_ratio) == pytest.approx(expected, rel=0.03)
    assert np.all(np.diff(smeared.event) >= 0)  # still grouped by event


def test_detector_threshold_cells_and_switch():
    rng = np.random.default_rng(1)
    soft = _particles(1000, charge=0, kind=PHOTON, energy=0.4, eta=0.0)
    assert len(apply_detector(soft, DetectorConfig(photon_res_stochastic=0, photon_res_constant=0), rng)) == 0
    assert apply_detector(soft, DetectorConfig(enabled=False), rng) is soft
    # cells: energy is conserved per event, towers are massless at cell centres
    neutral = _particles(5000, charge=0, kind=1, energy=20.0, eta=0.0, seed=2)
    exact = DetectorConfig(hadron_res_stochastic=0, hadron_res_constant=0, min_pt_neutral=0, cell_size=0.05)
    towers = apply_detector(neutral, exact, rng)
    assert len(towers) < len(neutral)
    np.testing.assert_allclose(np.bincount(towers.event, towers.energy), np.bincount(neutral.event, neutral.energy))
    mass2 = towers.energy**2 - towers.px**2 - towers.py**2 - towers.pz**2
    np.testing.assert_allclose(mass2 / towers.energy**2, 0.0, atol=1e-9)
    centre = (np.floor(towers.eta / 0.05) + 0.5) * 0.05
    np.testing.assert_allclose(towers.eta, centre, atol=1e-9)


def test_detector_config_rejects_bad_values():
    with pytest.raises(DataError, match="cell_size"):
        DetectorConfig(cell_size=0.0)
    with pytest.raises(DataError, match="photon_res_constant"):
        DetectorConfig(photon_res_constant=float("nan"))
    with pytest.raises(DataError, match="enabled"):
        DetectorConfig(enabled="yes")


def test_shard_sizes_and_seeds_are_reproducible(tmp_path):
    config = GenerationConfig(n_jets_per_class=25, jets_per_shard=10)
    tasks = shard_tasks(config, tmp_path)
    assert [(t.process, t.index, t.n_jets) for t in tasks] == [
        ("qcd", 0, 10), ("ttbar", 0, 10), ("qcd", 1, 10), ("ttbar", 1, 10), ("qcd", 2, 5), ("ttbar", 2, 5)]
    seeds = [t.pythia_seed for t in tasks]
    assert len(set(seeds)) == len(seeds) and all(1 <= s <= 900_000_000 for s in seeds)
    assert seeds == [t.pythia_seed for t in shard_tasks(config, Path("elsewhere"))]
