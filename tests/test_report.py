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
              commit="0123456789abcdef", dirty=False, final: dict | None = None, errors=(0.5, 0.3),
              full_train=False, recipe: dict | None = None):
    run = root / name
    run.mkdir(parents=True)
    recipe = {"depth": depth, "batch_size": 128, "iterations": iterations, "seed": seed, "full_train": full_train,
              "lr": 0.1, "lr_decay": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
              "milestones": [iterations // 2, iterations * 3 // 4], "milestone_fractions": [0.5, 0.75],
              **(recipe or {})}
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


def markdown_rows(text: str, first_column: str) -> list:
    """[{column: cell}] of the Markdown table in `text` whose first column is `first_column`."""
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"| {first_column} |")))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def table_rows(readme: str) -> dict:
    """{run name: {column: cell}} from the README's table of every run."""
    return {cells["Run"].split("]")[0].lstrip("["): cells for cells in markdown_rows(readme, "Run")}


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
    assert "| jax_impl-resnet32-64k-seed0 | 1 | 0 → ? | 2026-01-01 00:00:00 | — | " \
           "still running, or killed |" in readme
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
    assert text.startswith("intro\n<!-- results-table:start -->\n") and "stale" not in text
    assert "No finished paper-protocol run (64,000 iterations on all 50,000 training images" in text  # 45k here
    assert "Every run, with its curves: [`results/README.md`](results/README.md).\n<!-- results-table:end -->\n" \
           "middle\n<!-- how-long:start -->\n" in text  # relative to the README
    assert text.endswith("<!-- how-long:end -->\nend\n")
    rows = table_rows((tmp_path / "results" / "README.md").read_text().split("## Every run")[1])
    assert list(rows) == ["torch_impl-resnet32-2000it", "torch_impl-resnet32-64k-seed0"]  # finished runs only
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


# ---------------------------------------------------------------- summary by depth

PAPER_64K = {"final_val_error": None, "best_val_error": None, "best_val_step": None, "best_val_test_error": None,
             "wall_time_s": 36000.0, "train_time_s": 34000.0, "images_per_s": 241.0}


def paper_run(root, backend, depth, seed, test_error, **kwargs):
    return write_run(root, f"{backend}-resnet{depth}-64k-seed{seed}", backend, depth=depth, iterations=64000,
                     seed=seed, full_train=True, final={**PAPER_64K, "final_test_error": test_error}, **kwargs)


def test_summary_statistics():
    assert report.spread([7.4, 7.0, 7.2]) == "7.20% (7.00–7.40%, n=3)" \
        and report.spread([7.5]) == "7.50% (7.50–7.50%, n=1)"
    assert report.spread([7.0, 7.1, 7.4, 9.0]) == "7.25% (7.00–9.00%, n=4)" and report.spread([]) == "—"
    # Welch: 7.2 ± 0.2 (n=3) against 7.7 ± 0.28 (n=2): variances of the means 0.04/3 and 0.08/2
    a, b = [7.0, 7.2, 7.4], [7.5, 7.9]
    difference, low, high = report.welch_interval(a, b)
    se2 = 0.04 / 3 + 0.08 / 2
    df = se2 ** 2 / ((0.04 / 3) ** 2 / 2 + (0.08 / 2) ** 2 / 1)
    assert difference == pytest.approx(-0.5) and df == pytest.approx(1.6842, abs=1e-4)
    stats = pytest.importorskip("scipy.stats")
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    assert high - difference == pytest.approx(stats.t.ppf(0.975, df) * se2 ** 0.5)
    assert report.welch_interval([7.0], b) is None and report.welch_interval(a, []) is None
    assert report.welch_interval([7.0, 7.0], [7.5, 7.5]) == (-0.5, -0.5, -0.5)  # no spread at all
    assert report.difference_cell((-0.5, -1.234, 0.2)) == "-0.50 points (-1.23 to +0.20)"
    assert report.difference_cell(None) == "n/a"


def test_without_scipy_the_t_table_gives_a_wider_interval(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    a, b = [7.0, 7.2, 7.4], [7.5, 7.9]
    _, low, high = report.welch_interval(a, b)
    monkeypatch.setitem(sys.modules, "scipy", None)  # `from scipy import stats` raises ImportError
    assert report.t_975(1.6842) == 12.706 and report.t_975(4) == 2.776 and report.t_975(200.0) == 1.980
    assert report.t_975(13.7) == 2.179 > stats.t.ppf(0.975, 13.7)  # rounded down to df 12: conservative
    _, table_low, table_high = report.welch_interval(a, b)
    assert table_low < low and table_high > high


@pytest.mark.parametrize("torch_errors, jax_errors, sentence", [
    ([7.0, 7.2, 7.4], [7.5, 7.9], "ResNet-32: no detectable difference between the backends: the 95% interval of "
     "PyTorch's mean minus JAX's (-1.70 to +0.70 points) contains 0, so the gap of -0.50 points is within seed noise "
     "(3 and 2 seeds)."),
    ([7.0, 7.1, 7.2], [8.0, 8.1, 8.2], "ResNet-32: JAX's mean test error is higher than PyTorch's by 1.00 points, "
     "beyond seed noise: the 95% interval of PyTorch's mean minus JAX's (-1.23 to -0.77 points) excludes 0 "
     "(3 and 3 seeds)."),
    ([8.0, 8.1, 8.2], [7.0, 7.1, 7.2], "ResNet-32: PyTorch's mean test error is higher than JAX's by 1.00 points, "
     "beyond seed noise: the 95% interval of PyTorch's mean minus JAX's (+0.77 to +1.23 points) excludes 0 "
     "(3 and 3 seeds)."),
    ([7.0], [7.5, 7.9], "ResNet-32: too few seeds to tell a difference from seed noise (PyTorch 1, JAX 2; the "
     "interval needs at least 2 a side)."),
])
def test_the_verdict_follows_the_interval(torch_errors, jax_errors, sentence):
    pytest.importorskip("scipy.stats")  # the intervals in the sentences are scipy's
    assert report.verdict(32, torch_errors, jax_errors) == sentence


def test_summary_by_depth_of_paper_protocol_runs(tmp_path):
    """Only finished 64k runs on all 50,000 images with the paper's recipe count: a departure, a 45k run, a
    run stopped short and an unfinished run are left out; ResNet-110 counts with the paper's warm-up only."""
    root = tmp_path / "runs"
    for seed, error in enumerate((0.0742, 0.0721, 0.0735)):
        paper_run(root, "torch_impl", 32, seed, error)
    for seed, error in enumerate((0.0774, 0.0742)):
        paper_run(root, "jax_impl", 32, seed, error)
    warmup = {"warmup_lr": 0.01, "warmup_until_train_error": 0.8}
    paper_run(root, "torch_impl", 110, 0, 0.0650, recipe=warmup)
    paper_run(root, "jax_impl", 110, 0, 0.0640, recipe=warmup)
    paper_run(root, "jax_impl", 110, 1, 0.0700)  # no warm-up: not the paper's ResNet-110
    paper_run(root, "torch_impl", 32, 9, 0.0500, recipe={"optimizer": "adam"})
    paper_run(root, "torch_impl", 32, 8, 0.0500, recipe=warmup)  # the warm-up departs from the paper at depth 32
    write_run(root, "torch_impl-resnet32-64k-45k", "torch_impl", iterations=64000,
              final={**PAPER_64K, "final_test_error": 0.05})
    short = paper_run(root, "jax_impl", 32, 7, 0.0500)
    final = json.loads((short / "final.json").read_text())
    (short / "final.json").write_text(json.dumps({**final, "steps_completed": 30000}))
    write_run(root, "jax_impl-resnet56-64k-seed0", "jax_impl", depth=56, iterations=64000, full_train=True)  # running
    out = tmp_path / "results"
    assert report.main(["--runs", str(root), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    summary = readme.split("## Summary by depth")[1].split("## Every run")[0]
    rows = markdown_rows(summary, "Depth")
    assert [list(row.values()) for row in rows] == [
        ["32", "7.51%", "7.35% (7.21–7.42%, n=3)", "7.58% (7.42–7.74%, n=2)", "-0.25 points (-1.53 to +1.02)"],
        ["110", "6.43% (best of 5 runs; mean 6.61±0.16)", "6.50% (6.50–6.50%, n=1)", "6.40% (6.40–6.40%, n=1)",
         "n/a"]]
    sentences = [line for line in summary.splitlines() if line.startswith("ResNet-")]
    assert sentences[0].startswith("ResNet-32: no detectable difference between the backends")
    assert sentences[1].startswith("ResNet-110: too few seeds") and len(sentences) == 2
    assert "![Final test error against depth, each seed a point, beside Table 6](error-vs-depth.png)" in summary
    assert (out / "error-vs-depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "optimizer=adam" in table_rows(readme)["torch_impl-resnet32-64k-seed9"]["Iterations"]
    assert "warmup_lr=None" in table_rows(readme)["jax_impl-resnet110-64k-seed1"]["Iterations"]
    assert report.main(["--runs", str(root), "--out", str(out)]) == 0
    assert (out / "README.md").read_text() == readme  # deterministic

