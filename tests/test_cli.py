"""The ``fastmlp train`` command line: options, data sources, errors and written files."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import cli
from fastmlp.cli import arguments, outputs

ROOT = Path(__file__).resolve().parent.parent
# small, fast settings for every run except the one that checks the defaults
FAST = ["--hidden", "16", "--epochs", "2", "--quiet"]
TRAIN_OPTIONS = (
    "--dataset", "--target", "--test-size", "--validation-split", "--standardize",
    "--no-standardize", "--hidden", "--activation", "--loss", "--optimizer", "--lr", "--momentum",
    "--batch-size", "--epochs", "--batchnorm", "--no-batchnorm", "--dropout", "--l1", "--l2",
    "--early-stopping", "--schedule", "--clip-norm", "--seed", "--dtype", "--device",
    "--cuda-matmul", "--output",
    "--no-progress", "--quiet", "--threads",
)


def run(argv, capsys):
    """(exit code, stdout, stderr) of ``fastmlp`` called in-process."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_history(folder):
    with open(Path(folder) / "history.json", encoding="utf-8") as handle:
        return json.load(handle)


def blobs(n=240, n_features=5, n_classes=3, seed=0):
    """Well-separated Gaussian clusters: (X float64 (n, d), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    X = centers[y] + rng.normal(size=(n, n_features))
    return X, y


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------- defaults

@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One ``fastmlp train`` with no options but the output folder."""
    folder = tmp_path_factory.mktemp("default-run")
    code = cli.main(["train", "--output", str(folder), "--no-progress"])
    return code, folder


def test_defaults_reach_97_percent_on_digits_and_write_all_files(default_run):
    code, folder = default_run
    assert code == 0
    for name in ("history.json", "model.npz", "curves.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = read_history(folder)
    assert doc["metrics"]["test_accuracy"] >= 0.97
    assert doc["args"]["dataset"] == "digits"
    assert sorted(os.listdir(folder)) == ["curves.png", "history.json", "model.npz"]


def test_history_json_content(default_run):
    _, folder = default_run
    doc = read_history(folder)
    assert doc["fastmlp_version"] == fm.__version__
    assert doc["command"] == "train"
    args = doc["args"]
    assert args["hidden"] == list(arguments.DEFAULT_HIDDEN)
    assert args["epochs"] == arguments.DEFAULT_EPOCHS and args["batch_size"] == arguments.DEFAULT_BATCH_SIZE
    assert args["optimizer"] == "adam" and args["lr"] == arguments.DEFAULT_LR["adam"]
    assert args["loss"] == "cross_entropy" and args["standardize"] is True
    history = doc["history"]
    for key in ("loss", "accuracy", "lr", "epoch_time"):
        assert len(history[key]) == arguments.DEFAULT_EPOCHS, key
    assert "val_loss" not in history  # no validation split without early stopping
    assert history["lr"][0] == arguments.DEFAULT_LR["adam"]
    metrics = doc["metrics"]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "train_time_s",
                "samples_per_second", "wall_time_s"):
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert metrics["epochs_run"] == arguments.DEFAULT_EPOCHS
    assert doc["data"] == {"dataset": "digits", "n_train": 1437, "n_validation": 0,
                           "n_test": 360, "n_features": 64, "n_outputs": 10, "classes": None,
                           "feature_names": None, "standardized": True}
    assert doc["model"]["input_dim"] == 64
    assert doc["files"] == {"model": "model.npz", "curves": "curves.png"}


def test_saved_model_and_standardizer_reproduce_the_test_accuracy(default_run):
    _, folder = default_run
    doc = read_history(folder)
    model = fm.MLP.load(folder / "model.npz")
    assert model.standardizer is not None
    data = fm.datasets.load_digits(seed=0)
    X_test = model.standardizer.transform(data.X_test)
    accuracy = float(np.mean(model.predict(X_test) == data.y_test))
    assert accuracy == pytest.approx(doc["metrics"]["test_accuracy"], abs=1e-12)
    assert accuracy >= 0.97


# ----------------------------------------------------------------------------- help and version

def test_train_help_lists_every_option(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    for option in TRAIN_OPTIONS:
        assert option in out, option
    # every option the parser knows is documented with some help text
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in out, option


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert fm.__version__ in out


def test_no_command_prints_help_and_fails(capsys):
    code, _, err = run([], capsys)
    assert code == 2
    assert "train" in err


def test_python_dash_m_in_a_subprocess(tmp_path):
    folder = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "train", "--hidden", "16", "--epochs", "2",
         "--output", str(folder)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "test" in result.stdout and "accuracy" in result.stdout
    assert "samples/s" in result.stdout and "wall time" in result.stdout
    for name in ("history.json", "model.npz", "curves.png"):
        assert (folder / name).is_file()


# ----------------------------------------------------------------------------- user data

def test_csv_with_target_column(tmp_path, capsys):
    X, y = blobs()
    rows = [[*(float(v) for v in x), int(label)] for x, label in zip(X, y)]
    path = write_csv(tmp_path / "data.csv", ["f0", "f1", "f2", "f3", "f4", "class"], rows)
    folder = tmp_path / "out"
    code, out, err = run(["train", "--dataset", path, "--target", "class", "--test-size", 0.25,
                          "--hidden", "16", "--epochs", "20", "--batch-size", "16", "--lr", "0.01",
                          "--output", folder], capsys)
    assert code == 0, err
    assert "accuracy" in out
    doc = read_history(folder)
    assert doc["data"]["n_features"] == 5 and doc["data"]["n_outputs"] == 3
    assert doc["data"]["n_test"] == 60 and doc["data"]["n_train"] == 180
    assert doc["data"]["feature_names"] == ["f0", "f1", "f2", "f3", "f4"]
    assert doc["metrics"]["test_accuracy"] > 0.9


@pytest.mark.parametrize("option,message", [
    (["--test-size", 0.9], "--test-size 0.9 leaves no training or no test samples out of 3"),
    (["--test-size", 0.3, "--validation-split", 0.2],
     "--validation-split 0.2 leaves no training or no validation samples out of 2"),
])
def test_splits_that_leave_a_part_empty_are_usage_errors(tmp_path, capsys, option, message):
    rows = [[0.0, 1.0, 0], [1.0, 0.0, 1], [0.5, 0.5, 0]]
    path = write_csv(tmp_path / "tiny.csv", ["a", "b", "class"], rows)
    code, _, err = run(["train", "--dataset", path, "--target", "class", *option,
                        "--output", tmp_path / "out"], capsys)
    assert code == 2
    assert message in err


def test_csv_target_in_the_middle_and_regression(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3))
    target = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    rows = [[X[i, 0], target[i], X[i, 1], X[i, 2]] for i in range(150)]
    path = write_csv(tmp_path / "reg.csv", ["a", "price", "b", "c"], rows)
    folder = tmp_path / "out"
    code, out, err = run(["train", "--dataset", path, "--target", "price", "--loss", "mse",
                          "--hidden", "16", "--epochs", "3", "--output", folder], capsys)
    assert code == 0, err
    assert "accuracy" not in out
    doc = read_history(folder)
    assert doc["data"]["feature_names"] == ["a", "b", "c"]
    assert doc["data"]["n_outputs"] == 1
    assert "test_accuracy" not in doc["metrics"] and doc["metrics"]["test_loss"] > 0


def test_npz_with_x_and_y(tmp_path, capsys):
    X, y = blobs(n=200, n_features=4)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    folder = tmp_path / "out"
    code, _, err = run(["train", "--dataset", path, *FAST, "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert (doc["data"]["n_train"], doc["data"]["n_test"]) == (160, 40)
    model = fm.MLP.load(folder / "model.npz")
    assert model.input_dim == 4 and model.n_outputs == 3


def test_npz_with_its_own_split(tmp_path, capsys):
    X, y = blobs(n=200, n_features=4)
    path = tmp_path / "split.npz"
    np.savez(path, X_train=X[:150], y_train=y[:150], X_test=X[150:], y_test=y[150:])
    folder = tmp_path / "out"
    code, _, err = run(["train", "--dataset", path, *FAST, "--no-standardize",
                        "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert (doc["data"]["n_train"], doc["data"]["n_test"]) == (150, 50)
    assert doc["data"]["standardized"] is False
    assert fm.MLP.load(folder / "model.npz").standardizer is None


def test_negative_labels_are_mapped_to_classes(tmp_path, capsys):
    X, y = blobs(n=120, n_classes=2)
    path = tmp_path / "svm.npz"
    np.savez(path, X=X, y=np.where(y == 0, -1, 1))
    folder = tmp_path / "out"
    code, _, err = run(["train", "--dataset", path, "--loss", "hinge", *FAST,
                        "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert doc["data"]["classes"] == [-1, 1] and doc["data"]["n_outputs"] == 2


def test_binary_targets_use_one_sigmoid_output(tmp_path, capsys):
    X, y = blobs(n=120, n_classes=2)
    path = tmp_path / "binary.npz"
    soft = np.clip(y + np.random.default_rng(0).uniform(-0.2, 0.2, size=y.shape), 0, 1)
    np.savez(path, X=X, y=soft)
    folder = tmp_path / "out"
    code, _, err = run(["train", "--dataset", path, "--loss", "binary_cross_entropy", *FAST,
                        "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert doc["data"]["n_outputs"] == 1 and "test_accuracy" in doc["metrics"]


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse", "hinge"])
def test_every_loss_on_digits(loss, tmp_path, capsys):
    folder = tmp_path / "out"
    code, _, err = run(["train", "--loss", loss, *FAST, "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert ("test_accuracy" in doc["metrics"]) == (loss != "mse")
    assert doc["data"]["n_outputs"] == (1 if loss == "mse" else 10)


def test_training_options_are_used(tmp_path, capsys):
    folder = tmp_path / "out"
    code, _, err = run(["train", "--hidden", "8", "--hidden", "6,4", "--activation", "tanh",
                        "--no-batchnorm", "--dropout", "0", "--optimizer", "sgd", "--lr", "0.05",
                        "--momentum", "0.9", "--batch-size", "32", "--epochs", "3", "--l1",
                        "1e-5", "--l2", "1e-4", "--schedule", "step", "--clip-norm", "5",
                        "--seed", "3", "--dtype", "float64", "--threads", "1", "--quiet",
                        "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    layers = doc["model"]["layers"]
    assert [layer["units"] for layer in layers] == [8, 6, 4, 10]
    assert all(layer["activation"] == "tanh" and not layer["batchnorm"] for layer in layers[:-1])
    assert doc["model"]["dtype"] == "float64" and doc["model"]["seed"] == 3
    assert doc["optimizer"]["class"] == "SGD" and doc["optimizer"]["momentum"] == 0.9
    # --schedule step: lr x 0.1 every epochs // 3 = 1 epoch
    assert doc["history"]["lr"] == pytest.approx([0.05, 0.005, 0.0005])
    assert doc["args"]["l1"] == 1e-5 and doc["args"]["clip_norm"] == 5.0
    assert fm.MLP.load(folder / "model.npz").dtype == np.float64


def test_early_stopping_uses_a_validation_split(tmp_path, capsys):
    folder = tmp_path / "out"
    code, _, err = run(["train", "--hidden", "16", "--epochs", "40", "--early-stopping", "2",
                        "--schedule", "plateau", "--quiet", "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    assert doc["args"]["validation_split"] == arguments.DEFAULT_VALIDATION_SPLIT
    assert doc["data"]["n_validation"] == round(1437 * arguments.DEFAULT_VALIDATION_SPLIT)
    assert len(doc["history"]["val_loss"]) == doc["metrics"]["epochs_run"]
    assert "val_accuracy" in doc["history"] and "val_loss" in doc["metrics"]
    assert 1 <= doc["metrics"]["best_epoch"] <= doc["metrics"]["epochs_run"]
    if doc["metrics"]["stop_reason"] == "early stopping":
        assert doc["metrics"]["epochs_run"] < 40


def test_history_json_is_replaced_atomically(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("old")
    outputs.write_json_atomic(path, {"a": [1.0, float("nan")], "b": np.float32(2.5),
                                 "c": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": [1.0, None], "b": 2.5, "c": [0, 1]}
    assert os.listdir(tmp_path) == ["history.json"]


def test_without_matplotlib_a_note_is_printed(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    folder = tmp_path / "out"
    code, _, err = run(["train", *FAST, "--output", folder], capsys)
    assert code == 0
    assert "matplotlib is not installed" in err and 'pip install "fastmlp[plot]"' in err
    assert not (folder / "curves.png").exists()
    assert (folder / "history.json").is_file() and (folder / "model.npz").is_file()
    assert read_history(folder)["files"]["curves"] is None


# ----------------------------------------------------------------------------- bad input

@pytest.fixture()
def small_csv(tmp_path):
    return write_csv(tmp_path / "small.csv", ["a", "b", "label"],
                     [[i, i % 3, i % 2] for i in range(20)])


def _bad_cases(tmp_path, small_csv):
    text_csv = write_csv(tmp_path / "text.csv", ["a", "colour", "label"],
                         [[1, "red", 0], [2, "blue", 1], [3, "red", 0]])
    missing_csv = write_csv(tmp_path / "missing.csv", ["a", "b", "label"],
                            [[1, 2, 0], [2, "", 1], [3, 4, 0]])
    headless_csv = write_csv(tmp_path / "headless.csv", ["1", "2", "3"], [[4, 5, 6]])
    np.savez(tmp_path / "wrong.npz", features=np.zeros((4, 2)))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 but then not a zip file at all")
    (tmp_path / "text.npz").write_text("f0,f1,label\n1,2,0\n3,4,1\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "single.npy", np.zeros((4, 2)))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with open(tmp_path / "semicolons.csv", "w", encoding="utf-8") as handle:
        handle.write("f0;f1;label\n1.5;2;0\n3;4.5;1\n")
    with open(tmp_path / "tabs.csv", "w", encoding="utf-8") as handle:
        handle.write("f0\tf1\tlabel\n1\t2\t0\n3\t4\t1\n")
    return {
        "missing target column": (["--dataset", small_csv, "--target", "price"],
                                  "no column 'price'"),
        "no --target for csv": (["--dataset", small_csv], "--target COLUMN is required"),
        "non-numeric column": (["--dataset", text_csv, "--target", "label"],
                               "column 'colour' is not numeric"),
        "missing value": (["--dataset", missing_csv, "--target", "label"], "missing value"),
        "no header": (["--dataset", headless_csv, "--target", "1"], "header row"),
        "unknown dataset path": (["--dataset", tmp_path / "nowhere.csv", "--target", "a"],
                                 "does not exist"),
        "unknown dataset name": (["--dataset", "cifar"], "unknown data set 'cifar'"),
        "npz without X and y": (["--dataset", tmp_path / "wrong.npz"], "must hold arrays X and y"),
        "broken npz": (["--dataset", tmp_path / "broken.npz"], "cannot read"),
        "text file named .npz": (["--dataset", tmp_path / "text.npz"],
                                 "is not an .npz archive (it looks like a text file)"),
        "empty .npz": (["--dataset", tmp_path / "empty.npz"],
                       "is not an .npz archive (it is empty)"),
        ".npy named .npz": (["--dataset", tmp_path / "single.npz"], "a single .npy array"),
        "semicolon-separated csv": (["--dataset", tmp_path / "semicolons.csv", "--target", "label"],
                                    "header looks separated by semicolons (';')"),
        "tab-separated csv": (["--dataset", tmp_path / "tabs.csv", "--target", "label"],
                              "header looks separated by tabs"),
        "bad --hidden": (["--hidden", "64,abc"], "invalid hidden sizes"),
        "zero --hidden": (["--hidden", "0"], "must be positive"),
        "cuda": (["--device", "cuda"], "cuda"),
        "cuda matmul on the cpu": (["--cuda-matmul", "cublas"],
                                   "--cuda-matmul applies to --device cuda"),
        "momentum with adam": (["--momentum", "0.9"], "--momentum applies to sgd and rmsprop"),
        "bad dropout": (["--dropout", "1.5"], "--dropout"),
        "target for digits": (["--target", "label"], "--target applies to .csv"),
        "early stopping without validation": (["--early-stopping", "3", "--validation-split",
                                               "0"], "needs validation data"),
    }


BAD_CASE_NAMES = ["missing target column", "no --target for csv", "non-numeric column",
                  "missing value", "no header", "unknown dataset path", "unknown dataset name",
                  "npz without X and y", "broken npz", "text file named .npz", "empty .npz",
                  ".npy named .npz", "semicolon-separated csv", "tab-separated csv",
                  "bad --hidden", "zero --hidden", "cuda",
                  "cuda matmul on the cpu",
                  "momentum with adam", "bad dropout", "target for digits",
                  "early stopping without validation"]


@pytest.mark.parametrize("case", BAD_CASE_NAMES)
def test_bad_input_exits_2_with_a_clear_message(case, tmp_path, small_csv, capsys):
    argv, expected = _bad_cases(tmp_path, small_csv)[case]
    folder = tmp_path / "out"
    code, _, err = run(["train", *argv, *FAST, "--output", folder], capsys)
    assert code == 2
    assert "error" in err and expected in err
    assert "Traceback" not in err
    # one error style: a single line "fastmlp train: error: ..." (notes before it alike)
    lines = err.splitlines()
    assert all(line.startswith("fastmlp train: ") for line in lines), err
    assert [line for line in lines if ": error: " in line] == [lines[-1]], err
    assert lines[-1].startswith("fastmlp train: error: "), err
    assert "contains object arrays" not in err
    # a failed run leaves no output folder of its own behind
    assert not folder.exists()


def test_non_integer_labels_for_classification_are_refused(tmp_path, capsys):
    path = write_csv(tmp_path / "r.csv", ["a", "y"], [[i, i / 3] for i in range(30)])
    code, _, err = run(["train", "--dataset", path, "--target", "y", *FAST,
                        "--output", tmp_path / "out"], capsys)
    assert code == 2
    assert "non-integer" in err and "--loss mse" in err and "Traceback" not in err


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = run(["train", *FAST, "--output", target], capsys)
    assert code == 2 and "not a folder" in err


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "train", "--dataset", str(tmp_path / "none.npz")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert result.stderr.startswith("fastmlp train: error: ") and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_separator_hint_suggests_a_conversion(tmp_path, capsys):
    path = tmp_path / "euro.csv"
    path.write_text("f0;f1;label\n1,5;2;0\n3;4,5;1\n", encoding="utf-8")
    code, _, err = run(["train", "--dataset", path, "--target", "label", *FAST,
                        "--output", tmp_path / "out"], capsys)
    assert code == 2
    assert "fastmlp reads comma-separated files" in err and "sep=';'" in err
    assert "decimal=','" in err
    assert "no column 'label'" not in err  # the cause, not the symptom


# ----------------------------------------------------------------------------- command-line manners

def test_usage_errors_have_the_same_one_line_form(capsys):
    for argv in (["train", "--epochs", "0"], ["train", "--no-such-option"], ["train", "extra"]):
        code, _, err = run(argv, capsys)
        assert code == 2
        assert err.startswith("fastmlp train: error: ") and err.count("\n") == 1, err
        assert "fastmlp train --help" in err
    code, _, err = run([], capsys)
    assert code == 2 and err.startswith("fastmlp: error: ") and err.count("\n") == 1, err


def test_a_failed_run_removes_only_the_folders_it_made(tmp_path, capsys, monkeypatch):
    # nested folders that did not exist: all removed again
    nested = tmp_path / "runs" / "a" / "b"
    code, _, _ = run(["train", "--dataset", tmp_path / "none.npz", *FAST, "--output", nested],
                     capsys)
    assert code == 2 and not (tmp_path / "runs").exists()
    # a folder that existed, with an earlier run's files: left as it was
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "history.json").write_text("{}")
    code, _, _ = run(["train", "--dataset", tmp_path / "none.npz", *FAST, "--output", earlier],
                     capsys)
    assert code == 2 and sorted(os.listdir(earlier)) == ["history.json"]
    assert (earlier / "history.json").read_text() == "{}"
    # interrupted during training: the empty folder goes, too
    from fastmlp import trainer as trainer_module

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    folder = tmp_path / "interrupted"
    monkeypatch.setattr(trainer_module.Trainer, "fit", interrupted)
    code, _, err = run(["train", *FAST, "--output", folder], capsys)
    assert code == 130 and err.strip() == "fastmlp train: interrupted"
    assert not folder.exists()


def test_summary_has_a_validation_row_and_the_early_stop(tmp_path, capsys):
    folder = tmp_path / "out"
    code, out, err = run(["train", "--hidden", "16", "--epochs", "60", "--lr", "0.05",
                          "--early-stopping", "1", "--schedule", "none", "--no-progress",
                          "--output", folder], capsys)
    assert code == 0, err
    doc = read_history(folder)
    metrics = doc["metrics"]
    assert metrics["stop_reason"] == "early stopping" and metrics["epochs_run"] < 60
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.strip() and line.split()[0] in ("train", "validation", "test")}
    assert set(rows) == {"train", "validation", "test"}
    assert float(rows["validation"][0]) == pytest.approx(metrics["val_loss"], abs=1e-4)
    assert rows["validation"][1] == f"{100 * metrics['val_accuracy']:.2f}%"
    assert f"stopped early at epoch {metrics['epochs_run']}; kept the weights of epoch " \
           f"{metrics['best_epoch']}" in out
    # a validation split without early stopping: the row, but no stop line
    code, out, err = run(["train", *FAST[:-1], "--validation-split", "0.2", "--output", folder],
                         capsys)
    assert code == 0, err
    assert any(line.split()[:1] == ["validation"] for line in out.splitlines())
    assert "stopped" not in out


def test_no_validation_row_without_validation(default_run, tmp_path, capsys):
    code, out, err = run(["train", *FAST[:-1], "--output", tmp_path / "out"], capsys)
    assert code == 0, err
    assert not any(line.split()[:1] == ["validation"] for line in out.splitlines())


def test_a_reader_that_stops_early_ends_nothing(tmp_path):
    """fastmlp train | head -1: no 'Broken pipe' error, the run finishes and writes its files."""
    folder = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastmlp", "train", "--hidden", "16", "--epochs", "3",
         "--no-progress", "--output", str(folder)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert first.startswith(b"data: ")
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err, err
    for name in ("history.json", "model.npz"):
        assert (folder / name).is_file()
    # --help into a closed pipe as well
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", "train", "--help"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err


def test_the_first_run_says_it_compiles(tmp_path, capsys, monkeypatch):
    from fastmlp import kernel_cache
    notice = "fastmlp train: note: compiling the kernels for first use"
    monkeypatch.setattr(kernel_cache, "is_cold", lambda: True)
    monkeypatch.setattr(kernel_cache, "_notice_given", False)
    code, out, err = run(["train", *FAST[:-1], "--no-progress", "--output", tmp_path / "a"],
                         capsys)
    assert code == 0 and notice in err and notice not in out
    assert err.count("compiling") == 1
    monkeypatch.setattr(kernel_cache, "_notice_given", False)
    code, _, err = run(["train", *FAST, "--output", tmp_path / "b"], capsys)  # --quiet
    assert code == 0 and err == ""
    monkeypatch.setattr(kernel_cache, "is_cold", lambda: False)
    code, _, err = run(["train", *FAST[:-1], "--no-progress", "--output", tmp_path / "c"], capsys)
    assert code == 0 and "compiling" not in err
