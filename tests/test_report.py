"""scripts/report.py on fake run directories: README table rows, values and labels, the skipped run, the figure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "report.py"
spec = importlib.util.spec_from_file_location("report", SCRIPT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def write_run(root: Path, name: str, backend: str, *, depth=32, iterations=2000, seed=0, devices=("cpu",),
              commit="0123456789abcdef", dirty=False, final: dict | None = None, errors=(0.5, 0.3)):
    run = root / name
    run.mkdir(parents=True)
    recipe = {"depth": depth, "batch_size": 128, "iterations": iterations, "seed": seed, "full_train": False,
              "lr": 0.1, "lr_decay": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
              "milestones": [iterations // 2, iterations * 3 // 4], "milestone_fractions": [0.5, 0.75]}
    config = {"backend": backend, "recipe": recipe, "options": {}, "command": ["train.py"],
              "git": {"commit": commit, "dirty": dirty}, "versions": {},
              "hardware": {"cpu": "Fake CPU 9000", "cpu_count": 4, "devices": list(devices)},
              "data": {"n_train": 45000, "n_val": 5000, "n_test": 10000}, "created": "2026-01-01T00:00:00+00:00"}
    (run / "config.json").write_text(json.dumps(config))
    records = []
    half = iterations // 2
    for step, err in zip((half, iterations), errors):
        records.append({"kind": "train", "step": step, "epoch": step / 351, "lr": 0.1, "loss": 1.0,
                        "train_error": err + 0.02, "images_per_s": 100.0, "wall_time": step / 10})
        records.append({"kind": "eval", "step": step, "epoch": step / 351, "lr": 0.1, "val_error": err + 0.01,
                        "test_error": err, "wall_time": step / 10})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if final is not None:
        (run / "final.json").write_text(json.dumps({
            "backend": backend, "depth": depth, "iterations": iterations, "steps_completed": iterations,
            "n_train_images": 45000, "parameters": 464154, **final}))
    return run


def table_rows(readme: str) -> dict:
    """{run name: {column: cell}} from the README's Markdown table."""
    lines = [line for line in readme.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells["Run"].split("]")[0].lstrip("[")] = cells
    return rows


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "torch_impl-resnet32-2000it", "torch_impl", final={
        "final_val_error": 0.2698, "final_test_error": 0.2661, "best_val_error": 0.2650, "best_val_step": 1500,
        "best_val_test_error": 0.2702, "wall_time_s": 2545.54, "train_time_s": 1943.91, "images_per_s": 131.7})
    write_run(root, "jax_impl-resnet32-2000it", "jax_impl", seed=1, devices=("NVIDIA H100 80GB HBM3",) * 2,
              commit="fedcba9876543210", dirty=True, errors=(0.45, 0.25), final={
                  "final_val_error": 0.25, "final_test_error": 0.2512, "best_val_error": 0.25,
                  "best_val_step": 2000, "best_val_test_error": 0.2512, "wall_time_s": 7325.0,
                  "train_time_s": 7000.0, "images_per_s": 12345.67})
    write_run(root, "jax_impl-resnet56-64000it", "jax_impl", depth=56, iterations=64000)  # no final.json
    return root


def test_readme_table_and_figure(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    rows = table_rows(readme.split("## In progress")[0])
    assert list(rows) == ["jax_impl-resnet32-2000it", "torch_impl-resnet32-2000it"]  # sorted, unfinished left out

    torch, jax = rows["torch_impl-resnet32-2000it"], rows["jax_impl-resnet32-2000it"]
    assert torch["Backend"] == "torch_impl" and jax["Backend"] == "jax_impl"
    assert torch["Depth"] == "32"
    assert torch["Iterations"] == "2,000 (compressed 32×)"
    assert torch["Train images"] == "45,000"
    assert (torch["Seed"], jax["Seed"]) == ("0", "1")
    assert torch["Best val error (step)"] == "26.50% (1,500)"
    assert torch["Test error @ best val"] == "27.02%"
    assert torch["Final test error"] == "26.61%"
    assert torch["Paper test error (Table 6)"] == "7.51%"
    assert torch["Wall time (train)"] == "42m 26s (32m 24s)"
    assert jax["Wall time (train)"] == "2h 02m (1h 56m)"
    assert torch["Images/s"] == "131.7" and jax["Images/s"] == "12,345.7"
    assert torch["Hardware"] == "Fake CPU 9000 (4 cores)"
    assert jax["Hardware"] == "2× NVIDIA H100 80GB HBM3"
    assert torch["Commit"] == "0123456" and jax["Commit"] == "fedcba9+dirty"
    assert torch["Run"] == "[torch_impl-resnet32-2000it](../runs/torch_impl-resnet32-2000it/)"

    in_progress = readme.split("## In progress", 1)[1]
    assert "[jax_impl-resnet56-64000it](../runs/jax_impl-resnet56-64000it/) | jax_impl | 56 | 64,000 (paper schedule)" \
        in in_progress and "| 64,000 of 64,000 | 30.00% (64,000) |" in in_progress
    figure = out / "curves-resnet32-2000it.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    progress = out / "progress-curves-resnet56-64000it.png"  # the unfinished run's curves so far, apart
    assert sorted(out.glob("*.png")) == sorted([figure, progress])  # one per (depth, iterations) group
    assert progress.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "(progress-curves-resnet56-64000it.png)" in readme
    assert "(curves-resnet32-2000it.png)" in readme
    printed = capsys.readouterr()
    assert f"wrote {figure}" in printed.out and f"wrote {out / 'README.md'}" in printed.out
    assert "jax_impl-resnet56-64000it" in printed.err

    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "README.md").read_text() == readme  # deterministic


@pytest.mark.parametrize("iterations, milestones, label", [
    (64000, [32000, 48000], "64,000 (paper schedule)"),
    (2000, [1000, 1500], "2,000 (compressed 32×)"),
    (6400, None, "6,400 (compressed 10×)"),
    (3000, [1500, 2250], "3,000 (compressed 21.3×)"),
    (2000, [500, 1500], "2,000 (compressed 32×); lr ÷10 at 500/1,500"),
])
def test_schedule_label(iterations, milestones, label):
    assert report.schedule_label(iterations, milestones) == label


def test_slices_of_a_run_that_spans_machines(tmp_path):
    """A run carried forward in slices: the table names every machine and commit, the Slices section each slice,
    and a run that is still going is listed in progress with the step it reached."""
    root = tmp_path / "runs"
    finals = {"final_val_error": None, "final_test_error": 0.0751, "best_val_error": None, "best_val_step": None,
              "best_val_test_error": None, "wall_time_s": 36000.0, "train_time_s": 34000.0, "images_per_s": 241.0}
    cpu = {"cpu": "Fake CPU 9000", "cpu_count": 2, "devices": ["cpu"]}
    gpu = {"cpu": "Host", "cpu_count": 16, "devices": ["NVIDIA H200"]}
    slices = [{"from_step": 0, "to_step": 30000, "started": "2026-01-01T00:00:00+00:00", "wall_time_s": 8400.0,
               "stopped": "time budget", "hardware": cpu, "git": {"commit": "aaaaaaaa", "dirty": False}},
              {"from_step": 30000, "to_step": 64000, "started": "2026-01-02T00:00:00+00:00", "wall_time_s": 500.0,
               "stopped": "finished", "hardware": gpu, "git": {"commit": "bbbbbbbb", "dirty": False}}]
    for name, final in (("torch_impl-resnet32-64k-seed0", finals), ("jax_impl-resnet32-64k-seed0", None)):
        run = write_run(root, name, name.split("-")[0], iterations=64000, final=final)
        config = json.loads((run / "config.json").read_text())
        config["slices"] = slices if final else [{**slices[0], "to_step": None, "stopped": None, "wall_time_s": None}]
        (run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert report.main(["--runs", str(root), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    row = table_rows(readme.split("## In progress")[0])["torch_impl-resnet32-64k-seed0"]
    assert row["Hardware"] == "Fake CPU 9000 (2 cores); 2 slices, also on 1× NVIDIA H200"
    assert row["Commit"] == "aaaaaaa (resumed at bbbbbbb)"
    finished = next(r for r in report.load_runs(root)[0] if r.name == "torch_impl-resnet32-64k-seed0")
    assert report.pace_by_hardware(finished) == {"Fake CPU 9000 (2 cores)": (30000, 8400.0),
                                                 "1× NVIDIA H200": (34000, 500.0)}
    assert report.how_long_lines([finished], [])[0].endswith(
        "By hardware: Fake CPU 9000 (2 cores), 30,000 steps in 2h 20m (all 64,000 at that pace: 4h 58m); "
        "1× NVIDIA H200, 34,000 steps in 8m 20s (all 64,000 at that pace: 15m 41s).")
    assert "| torch_impl-resnet32-64k-seed0 | 2 | 30,000 → 64,000 | 2026-01-02 00:00:00 | 8m 20s | finished | " \
           "1× NVIDIA H200 | bbbbbbb |" in readme
    assert "| jax_impl-resnet32-64k-seed0 | 1 | 0 → ? | 2026-01-01 00:00:00 | — | still running, or killed |" in readme
    assert "| 64,000 of 64,000 | 30.00% (64,000) | 1h 46m | 100.0 | 0m 00s of training |" in readme
    in_progress = readme.split("## In progress", 1)[1].split("## Slices")[0]
    assert "jax_impl-resnet32-64k-seed0" in in_progress and "torch_impl" not in in_progress
    assert sorted(p.name for p in out.glob("*.png")) == ["curves-resnet32-64000it.png",  # the finished run
                                                         "progress-curves-resnet32-64000it.png"]  # the other


def test_project_readme_table_and_cost(tmp_path):
    """The project README's results table and "How long" list are rewritten between their markers, everything
    else kept: the cost of each paper-schedule run, finished (from final.json) or not (so far, and the rest at
    its median rate), and no compressed schedule."""
    root = tmp_path / "runs"
    write_run(root, "torch_impl-resnet32-2000it", "torch_impl", final={
        "final_val_error": 0.27, "final_test_error": 0.2661, "best_val_error": 0.265, "best_val_step": 1500,
        "best_val_test_error": 0.2702, "wall_time_s": 2545.5, "train_time_s": 1943.9, "images_per_s": 131.7})
    finished = write_run(root, "torch_impl-resnet32-64k-seed0", "torch_impl", iterations=64000, final={
        "final_val_error": None, "final_test_error": 0.0751, "best_val_error": None, "best_val_step": None,
        "best_val_test_error": None, "wall_time_s": 36000.0, "train_time_s": 34000.0, "images_per_s": 241.0})
    config = json.loads((finished / "config.json").read_text())
    config["resumed"] = [{"hardware": config["hardware"], "git": config["git"]}]
    (finished / "config.json").write_text(json.dumps(config))
    unfinished = write_run(root, "jax_impl-resnet32-64k-seed0", "jax_impl", iterations=64000)
    metrics = unfinished / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))  # to step 32,000
    project = tmp_path / "README.md"
    project.write_text("intro\n<!-- results-table:start -->\nstale table\n<!-- results-table:end -->\nmiddle\n"
                       "<!-- how-long:start -->\nstale list\n<!-- how-long:end -->\nend\n")

    assert report.main(["--runs", str(root), "--out", str(tmp_path / "results")]) == 0
    text = project.read_text()
    assert text.startswith("intro\n<!-- results-table:start -->\n| Run |") and "stale" not in text
    assert "<!-- results-table:end -->\nmiddle\n<!-- how-long:start -->\n" in text
    assert text.endswith("<!-- how-long:end -->\nend\n")
    rows = table_rows(text.split("<!-- how-long:start -->")[0])
    assert list(rows) == ["torch_impl-resnet32-2000it", "torch_impl-resnet32-64k-seed0"]  # finished runs only
    assert rows["torch_impl-resnet32-64k-seed0"]["Run"] == \
        "[torch_impl-resnet32-64k-seed0](runs/torch_impl-resnet32-64k-seed0/)"  # relative to the README
    how_long = text.split("<!-- how-long:start -->\n")[1].split("\n<!-- how-long:end -->")[0]
    assert how_long.splitlines() == [
        "- `jax_impl-resnet32-64k-seed0` (unfinished): 32,000 of 64,000 steps in 53m 20s; its remaining 32,000 steps "
        "take about 11h 22m of training at its median 100 images/s; Fake CPU 9000 (4 cores).",
        "- `torch_impl-resnet32-64k-seed0` (7.51%): 10h 00m in all, 9h 26m of it training at 241 images/s, the rest "
        "its 2 evaluations, checkpoints and restarts; Fake CPU 9000 (4 cores); 2 slices."]

    assert report.main(["--runs", str(root), "--out", str(tmp_path / "results")]) == 0
    assert project.read_text() == text  # rewriting is idempotent


def test_paper_figures_and_hardware():
    assert report.PAPER_TEST_ERROR == {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
    assert report.hardware({"cpu": "X", "cpu_count": 2, "devices": ["cpu:0", "cpu:1"]}) == "X (2 cores)"
    assert report.hardware({"devices": ["cuda:0"]}).startswith("1× cuda device")
    assert report.hardware({"devices": ["gpu:0 NVIDIA H200", "gpu:1 NVIDIA H200"]}) == "2× NVIDIA H200"  # jax's
    assert report.hardware({"devices": ["TPU_0(process=0,(0,0,0,0))"]}) == "1× TPU device (model not recorded)"


def test_command_line_without_finished_runs(tmp_path):
    write_run(tmp_path / "runs", "torch_impl-resnet20-100it", "torch_impl", depth=20, iterations=100)
    result = subprocess.run([sys.executable, str(SCRIPT), "--runs", str(tmp_path / "runs"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "no final.json" in result.stderr
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "No finished runs yet." in readme
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["progress-curves-resnet20-100it.png"]


def test_progress_curves_of_finished_runs_are_removed(tmp_path):
    """A run's curves-so-far go once it finishes (or no run of that group is left unfinished); other figures in
    the folder stay."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("progress-curves-resnet32-64000it.png", "progress-curves-resnet20-100it.png", "parity_loss_gap.png"):
        (out / name).write_bytes(b"old")
    write_run(tmp_path / "runs", "torch_impl-resnet20-100it", "torch_impl", depth=20, iterations=100)  # unfinished
    write_run(tmp_path / "runs", "torch_impl-resnet32-64k-seed0", "torch_impl", iterations=64000, final={
        "final_val_error": None, "final_test_error": 0.0751, "best_val_error": None, "best_val_step": None,
        "best_val_test_error": None, "wall_time_s": 36000.0, "train_time_s": 34000.0, "images_per_s": 241.0})
    assert report.main(["--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["curves-resnet32-64000it.png", "parity_loss_gap.png",
                                                         "progress-curves-resnet20-100it.png"]
    assert (out / "progress-curves-resnet20-100it.png").read_bytes()[:4] == b"\x89PNG"  # rewritten, not kept
