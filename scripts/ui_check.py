"""Look at the MLflow UI as a user would: a small store (two jobs on the test fixtures, ± the Lorentz penalty,
and a report run), `mlflow ui` on it, and headless-Chromium screenshots of the experiment page, a parent run
and the compare view. Not part of CI (needs Debian's `chromium`: apt-get install -y chromium).

    python scripts/ui_check.py [--out ui_check] [--port 5077]

The PNGs land in --out; open them with an image viewer and check what README ("Comparing runs in the MLflow
UI") describes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mktree"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=20000", "--window-size=1400,900"]


def make_store(work: Path) -> None:
    """Two jobs (penalty none and lorentz λ = 0.1) and their report, in ``work`` (the working directory)."""
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    common = [sys.executable, "-m", "softsym", "-m", "stages=[data,train]", "data=jetclass",
              f"data.paths=[{FIXTURES}/*]", "threads=1", "train.epochs=2", "train.batch_size=32", "model.size=small",
              "data.max_particles=24", "mlflow.experiment_name=ui-check", "penalty=lorentz",
              "penalty.lambda=0.0,0.1"]
    subprocess.run(common, cwd=work, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "softsym.report.cli", "--experiment", "ui-check"], cwd=work, env=env,
                   check=True, capture_output=True)


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow ui did not listen on port {port} within {timeout} s")


def screenshot(url: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
                       check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("ui_check"))
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("ui_check: needs chromium (apt-get install -y chromium)")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="softsym-ui-"))
    make_store(work)

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui-check")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                           "--port", str(args.port)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(args.port)
        time.sleep(3)
        base = f"http://127.0.0.1:{args.port}"
        exp = experiment.experiment_id
        ids = json.dumps([r.info.run_id for r in parents])
        ml = "workflowType=machine_learning"  # MLflow 3.17's "Model training" switch (GenAI is its default)
        pages = {
            "1_experiment_default": f"{base}/#/experiments/{exp}",
            "2_experiment_runs": f"{base}/#/experiments/{exp}?{ml}",
            "3_parent_run": f"{base}/#/experiments/{exp}/runs/{parents[0].info.run_id}?{ml}",
            "4_compare": f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp])}&{ml}",
        }
        for name, url in pages.items():
            screenshot(url, out / f"{name}.png")
            print(f"{out / name}.png  <- {url}")
        print(f"store: {work} ({len(parents)} jobs, {len(parents[0].data.metrics)} metrics on a parent run)")
    finally:
        ui.terminate()
        ui.wait(timeout=30)


if __name__ == "__main__":
    main()
