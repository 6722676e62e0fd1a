"""Hostile inputs (issue 13): integers too large for the kernels, files that lie about their
sizes or hold forbidden values, metadata of the wrong types, and the command line's answer to
each (exit status 2, one line on stderr). Every rejection is a ValueError, TypeError or
FileFormatError naming the argument or field, raised before any state changes."""

import io
import json
import re
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp as fm
from fastmlp import _validation, cli
from fastmlp._validation import MAX_SEED, MAX_SIZE, MAX_STEP

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 4))
Y = np.arange(24) % 3
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def small_model(batchnorm=True, seed=0):
    return fm.MLP(4, [fm.Dense(5, "relu", batchnorm=batchnorm), fm.Dense(3)], seed=seed)


def trained_trainer():
    model = small_model()
    trainer = fm.Trainer(model, fm.Adam(1e-2), batch_size=8, epochs=2, progress=False,
                         early_stopping=fm.EarlyStopping(monitor="loss", patience=2),
                         lr_schedule=fm.StepLR(step_size=1))
    trainer.fit(X, Y)
    return trainer


def read_npz(path):
    """(arrays without the metadata, metadata dict) of an .npz file."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(str(arrays.pop("__meta__")))


def write_npz(path, arrays, meta):
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def rewrite(path, change):
    """Apply ``change(meta, arrays)`` to the file at ``path``."""
    arrays, meta = read_npz(path)
    change(meta, arrays)
    write_npz(path, arrays, meta)


def set_field(meta, field, value):
    """Set the dotted metadata ``field`` to ``value``; list items are named by their index, and
    a key that itself holds dots (``optimizer.state/0.W/step``) is matched whole."""
    parts = field.split(".")
    target = meta
    while True:
        for end in range(len(parts), 0, -1):  # the longest key first
            key = ".".join(parts[:end])
            if isinstance(target, list) or key in target or end == 1:
                break
        if isinstance(target, list):
            key, end = int(parts[0]), 1
        if end == len(parts):
            target[key] = value
            return
        target, parts = target[key], parts[end:]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.npz"
    small_model().save(path)
    return path


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    """A checkpoint of a trained Trainer (with schedule and early stopping); read it only."""
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.npz"
    trained_trainer().save_checkpoint(path)
    return path


@pytest.fixture
def checkpoint_file(tmp_path, saved_checkpoint):
    path = tmp_path / "checkpoint.npz"
    shutil.copyfile(saved_checkpoint, path)
    return path


def peak_bytes(call):
    """(exception raised by ``call()``, peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the caller checks the type
        raised = exc
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


def snapshot(model):
    return {key: value.copy() for key, value in {**model.params, **model.buffers}.items()}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


# ----------------------------------------------------------------------------- integer ranges

@pytest.mark.parametrize("make, name", [
    (lambda: fm.MLP(4, [fm.Dense(2)], seed=2 ** 64), "seed"),
    (lambda: fm.MLP(4, [fm.Dense(2)], seed=MAX_SEED + 1), "seed"),
    (lambda: fm.MLP(2 ** 62, [fm.Dense(2)]), "input_dim"),
    (lambda: fm.MLP(MAX_SIZE + 1, [fm.Dense(2)]), "input_dim"),
    (lambda: fm.Dense(10 ** 20), "units"),
    (lambda: fm.Dense(MAX_SIZE + 1), "units"),
    (lambda: fm.Dense(2 ** 20, "maxout", pieces=2 ** 12), "units * pieces"),
    (lambda: fm.Trainer(small_model(), seed=2 ** 64), "seed"),
    (lambda: fm.Trainer(small_model(), batch_size=2 ** 40), "batch_size"),
    (lambda: fm.Trainer(small_model(), epochs=2 ** 70), "epochs"),
    (lambda: fm.Bagging(small_model(), n_estimators=3, seed=MAX_SEED - 1), "seed"),
    (lambda: small_model().forward(X, training=True, dropout_step=2 ** 70), "dropout_step"),
    (lambda: small_model().loss_and_grad(X, Y, dropout_step=2 ** 70), "dropout_step"),
])
def test_integers_beyond_the_kernels_are_value_errors_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name.replace("*", r"\*")):
        make()


def test_limits_are_inclusive():
    assert fm.Dense(MAX_SIZE).units == MAX_SIZE  # nothing is allocated by a layer
    assert fm.Trainer(small_model(), seed=MAX_SEED, epochs=MAX_STEP).seed == MAX_SEED
    model = small_model(seed=MAX_SEED)
    model.dropout_step = MAX_STEP
    assert model.dropout_step == MAX_STEP
    assert fm.Bagging(small_model(), n_estimators=3, seed=MAX_SEED - 2).seed == MAX_SEED - 2


def test_a_rejected_dropout_step_leaves_the_model_unchanged():
    model = small_model()
    model.dropout_step = 7
    before = snapshot(model)
    with pytest.raises(ValueError, match="dropout_step"):
        model.dropout_step = 2 ** 70
    with pytest.raises(TypeError, match="dropout_step"):
        model.dropout_step = 1.5
    with pytest.raises(ValueError, match="dropout_step"):
        model.forward(X, training=True, dropout_step=2 ** 70)
    assert model.dropout_step == 7
    assert_unchanged(model, before)


def test_a_network_with_too_many_parameters_is_refused_before_allocating():
    layers = [fm.Dense(MAX_SIZE), fm.Dense(MAX_SIZE), fm.Dense(2)]
    raised, peak = peak_bytes(lambda: fm.MLP(MAX_SIZE, layers))
    assert isinstance(raised, ValueError) and "parameters" in str(raised)
    assert peak < 1 << 20


def test_a_network_larger_than_memory_is_a_memory_error_before_allocating(monkeypatch):
    monkeypatch.setattr(_validation, "physical_memory", lambda: 1 << 30)  # 1 GiB
    raised, peak = peak_bytes(lambda: fm.MLP(10 ** 4, [fm.Dense(10 ** 5), fm.Dense(2)]))
    assert isinstance(raised, MemoryError), raised
    assert "not enough memory for the model" in str(raised) and "1.0 GiB" in str(raised)
    assert peak < 1 << 20


@FAST
@given(bits=st.integers(0, 300), offset=st.integers(-2, 2), negative=st.booleans())
def test_integer_magnitudes_are_accepted_or_refused_by_name(bits, offset, negative):
    value = (-1 if negative else 1) * (2 ** bits + offset)
    for name, maximum, minimum, call in (
            ("units", MAX_SIZE, 1, lambda v: fm.Dense(v)),
            ("seed", MAX_SEED, 0, lambda v: fm.Trainer(_TEMPLATE, seed=v)),
            ("epochs", MAX_STEP, 0, lambda v: fm.Trainer(_TEMPLATE, epochs=v)),
            ("batch_size", MAX_SIZE, 1, lambda v: fm.Trainer(_TEMPLATE, batch_size=v))):
        if minimum <= value <= maximum:
            call(value)
        else:
            with pytest.raises(ValueError, match=name):
                call(value)
    model = _TEMPLATE
    step = model.dropout_step
    if 0 <= value <= MAX_STEP:
        model.dropout_step = value
        assert model.dropout_step == value
        model.dropout_step = step
    else:
        with pytest.raises(ValueError, match="dropout_step"):
            model.dropout_step = value
        assert model.dropout_step == step


_TEMPLATE = small_model()


# ----------------------------------------------------------------------------- float32 overflow

def test_features_that_overflow_float32_say_so():
    model = small_model()
    with pytest.raises(ValueError, match="X has values that overflow float32"):
        model.predict(np.full((3, 4), 1e300))
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        model.predict(np.full((3, 4), np.inf))


def test_a_fit_rejected_for_overflowing_targets_changes_nothing():
    model = fm.MLP(4, [fm.Dense(1)], loss="mse", seed=0)
    trainer = fm.Trainer(model, epochs=1, progress=False)
    before, state = snapshot(model), trainer.shuffle_state
    with pytest.raises(ValueError, match="y has values that overflow float32"):
        trainer.fit(X, np.full(24, 1e300))
    assert_unchanged(model, before)
    assert trainer.shuffle_state == state and trainer.epoch == 0 and model.dropout_step == 0


# ----------------------------------------------------------------------------- foreign files

def _npy(path):
    path.write_bytes(_npy_bytes(np.arange(10.0)))  # a .npy array under an .npz name


def _text(path):
    path.write_text("input_dim,units\n4,3\n")


def _empty(path):
    path.write_bytes(b"")


def _binary(path):
    path.write_bytes(bytes(range(256)) * 4)


@pytest.mark.parametrize("write, kind", [
    (_npy, "a single .npy array"), (_text, "a text file"), (_empty, "an empty file"),
    (_binary, "some other binary file")])
@pytest.mark.parametrize("load", [fm.MLP.load, fm.Trainer.load_checkpoint])
def test_files_of_other_kinds_are_file_format_errors(tmp_path, write, kind, load):
    path = tmp_path / "file.npz"
    write(path)
    with pytest.raises(fm.FileFormatError, match=f"is not a fastmlp .npz file: it is {kind}"):
        load(path)


def test_a_zip_with_other_members_is_a_file_format_error(tmp_path):
    path = tmp_path / "file.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(fm.FileFormatError, match="'readme.txt' is not an .npy array"):
        fm.MLP.load(path)


# ----------------------------------------------------------------------------- files that lie

def test_a_small_file_claiming_a_huge_layer_is_refused_without_allocating(model_file):
    rewrite(model_file, lambda meta, arrays: set_field(meta, "config.layers.0.units", 10 ** 9))
    assert model_file.stat().st_size < 8192
    raised, peak = peak_bytes(lambda: fm.MLP.load(model_file))
    assert isinstance(raised, fm.FileFormatError), raised
    assert "params/0.W" in str(raised) and "(4, 1000000000)" in str(raised)
    assert peak < 1 << 20  # far below the 16 GB the claimed layer needs


def _member_with_header(shape, payload):
    """An .npy member whose header claims ``shape`` (float32) followed by ``payload`` bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def test_array_headers_that_claim_more_data_than_the_file_holds(model_file):
    arrays, meta = read_npz(model_file)
    set_field(meta, "config.layers.0.units", 10 ** 9)
    with zipfile.ZipFile(model_file, "w") as archive:
        archive.writestr("__meta__.npy", _npy_bytes(np.array(json.dumps(meta))))
        for key, value in arrays.items():
            if key == "params/0.W":  # consistent with the lying metadata, but not with the file
                archive.writestr(f"{key}.npy", _member_with_header((4, 10 ** 9), b"\0" * 80))
            else:
                archive.writestr(f"{key}.npy", _npy_bytes(value))
    raised, peak = peak_bytes(lambda: fm.MLP.load(model_file))
    assert isinstance(raised, fm.FileFormatError), raised
    assert "params/0.W" in str(raised) and "16,000,000,000 bytes" in str(raised)
    assert peak < 1 << 20


def test_a_negative_dimension_in_a_header_is_a_file_format_error(model_file):
    arrays, meta = read_npz(model_file)
    with zipfile.ZipFile(model_file, "w") as archive:
        archive.writestr("__meta__.npy", _npy_bytes(np.array(json.dumps(meta))))
        for key, value in arrays.items():
            data = _npy_bytes(value)
            if key == "params/1.b":
                data = _member_with_header((-1, -3), value.tobytes())
            archive.writestr(f"{key}.npy", data)
    with pytest.raises(fm.FileFormatError, match="negative shape"):
        fm.MLP.load(model_file)


def _npy_bytes(value):
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


def test_a_checkpoint_claiming_a_huge_input_is_refused_without_allocating(checkpoint_file):
    rewrite(checkpoint_file,
            lambda meta, arrays: set_field(meta, "model.config.input_dim", 2 ** 30))
    raised, peak = peak_bytes(lambda: fm.Trainer.load_checkpoint(checkpoint_file))
    assert isinstance(raised, fm.FileFormatError), raised
    assert "params/0.W" in str(raised)
    assert peak < 1 << 20


@pytest.mark.parametrize("field, value, name", [
    ("config.input_dim", 2 ** 62, "input_dim"),
    ("config.seed", 2 ** 64, "seed"),
    ("config.layers.0.units", 10 ** 20, "units"),
    ("config.layers.0.units", "5", "units"),
    ("config.layers", {"units": 5}, "config.layers"),
    ("config", [4, 5], "config"),
    ("dropout_step", 2 ** 70, "dropout_step"),
    ("dropout_step", "3", "dropout_step"),
])
def test_model_file_config_values_out_of_range_or_of_the_wrong_type(model_file, field, value,
                                                                     name):
    rewrite(model_file, lambda meta, arrays: set_field(meta, field, value))
    with pytest.raises(fm.FileFormatError, match=name):
        fm.MLP.load(model_file)


# ----------------------------------------------------------------------------- forbidden values

def _poison(name, value, index=0):
    def change(meta, arrays):
        array = arrays[name].copy()
        array.reshape(-1)[index] = value
        arrays[name] = array
    return change


@pytest.mark.parametrize("name, value, match", [
    ("params/0.W", np.nan, "params/0.W contains NaN or inf"),
    ("params/1.b", np.inf, "params/1.b contains NaN or inf"),
    ("buffers/0.running_mean", -np.inf, "running_mean contains NaN or inf"),
    ("buffers/0.running_var", -0.5, "running_var must be non-negative"),
])
def test_model_files_with_forbidden_values_are_refused(model_file, name, value, match):
    rewrite(model_file, _poison(name, value))
    with pytest.raises(fm.FileFormatError, match=match):
        fm.MLP.load(model_file)


@pytest.mark.parametrize("group, key, value, match", [
    ("params", "0.W", np.full((4, 5), np.nan), "0.W contains NaN or inf"),
    ("params", "1.b", np.full(3, 1e300), "1.b has values that overflow float32"),
    ("buffers", "0.running_var", np.full(5, -1.0), "0.running_var must be non-negative"),
    ("buffers", "0.running_mean", np.full(5, np.inf), "0.running_mean contains NaN or inf"),
])
def test_assignment_applies_the_rules_loading_applies(group, key, value, match):
    model = small_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        getattr(model, group)[key] = value
    good = {k: np.zeros_like(v) for k, v in getattr(model, group).items() if k != key}
    with pytest.raises(ValueError, match=match):  # one bad value: none of them is copied in
        getattr(model, group).update({**good, key: value})
    assert_unchanged(model, before)


@pytest.mark.parametrize("name, value, match", [
    ("params/0.W", np.nan, "params/0.W contains NaN or inf"),
    ("buffers/0.running_var", -1.0, "running_var must be non-negative"),
    ("early_stopping/params", np.inf, "early_stopping/params contains NaN or inf"),
    ("early_stopping/buffers", np.nan, "early_stopping/buffers"),
    ("optimizer/state/0.W/exp_avg", np.nan, "exp_avg"),
    ("optimizer/state/0.W/exp_avg_sq", -1.0, "exp_avg_sq"),
])
def test_checkpoints_with_forbidden_values_are_refused(checkpoint_file, name, value, match):
    rewrite(checkpoint_file, _poison(name, value))
    with pytest.raises(fm.FileFormatError, match=match):
        fm.Trainer.load_checkpoint(checkpoint_file)


def test_early_stopping_running_variances_must_be_non_negative(checkpoint_file):
    # the best buffers are running_mean (5 values) then running_var (5 values)
    rewrite(checkpoint_file, _poison("early_stopping/buffers", -1.0, index=7))
    with pytest.raises(fm.FileFormatError, match=r"running_var\) must be non-negative"):
        fm.Trainer.load_checkpoint(checkpoint_file)


# ----------------------------------------------------------------------------- checkpoint metadata

@pytest.mark.parametrize("field, value, match", [
    ("history", [1, 2], "'history' must be a JSON object; got a list"),
    ("history.loss", "low", "'history.loss' must be a list of numbers"),
    ("history.loss", [0.5, "x"], "'history.loss' must be a list of numbers"),
    ("epoch", "3", "'epoch' must be an integer; got a string"),
    ("epoch", 2 ** 70, "epoch must be <= 2\\*\\*62"),
    ("epoch", True, "'epoch' must be an integer; got true or false"),
    ("trainer.batch_size", 2 ** 40, "trainer.batch_size must be <= 2\\*\\*31 - 1"),
    ("trainer.seed", 2 ** 64, "trainer.seed must be <= 2\\*\\*63 - 1"),
    ("trainer.shuffle", "yes", "trainer.shuffle must be true or false"),
    ("trainer", [8], "'trainer' must be a JSON object"),
    ("trainer.momentum", 0.9, "'trainer' has unknown entries \\['momentum'\\]"),
    ("model.dropout_step", 2 ** 70, "model.dropout_step must be <= 2\\*\\*62"),
    ("model.config", None, "'model.config' must be a JSON object"),
    ("model.config.input_dim", 2 ** 62, "input_dim must be <= 2\\*\\*31 - 1"),
    ("model.config.layers.0.units", 10 ** 9, "params/0.W has shape \\(4, 5\\)"),
    ("optimizer.class", "Lion", "'optimizer.class' must be one of"),
    ("optimizer.state/0.W/step", 2 ** 70, "optimizer.state/0.W/step must be <= 2\\*\\*62"),
    ("optimizer.state/0.W/step", -1, "optimizer.state/0.W/step must be >= 0"),
    ("schedule.state", "none", "'schedule.state' must be a JSON object"),
    ("schedule.class", 3, "'schedule.class' must be a string"),
    ("schedule.class", "Warmup", "'schedule.class' must be one of"),
    ("early_stopping.state.best", "best", "'early_stopping.state.best' must be a number"),
    ("stop_reason", 5, "'stop_reason' must be a string or null"),
    ("rng", [1, 2], "'rng' must be a JSON object"),
    ("rng.state.inc", "odd", "rng\\['state'\\]\\['inc'\\] must be an integer"),
    ("rng.state.state", 2 ** 200, "rng\\['state'\\]\\['state'\\] must be <= 2\\*\\*128 - 1"),
    ("rng.bit_generator", "MT19937", "rng\\['bit_generator'\\] must be 'PCG64'"),
])
def test_checkpoint_metadata_of_the_wrong_type_is_a_file_format_error(checkpoint_file, field,
                                                                      value, match):
    rewrite(checkpoint_file, lambda meta, arrays: set_field(meta, field, value))
    raised, peak = peak_bytes(lambda: fm.Trainer.load_checkpoint(checkpoint_file))
    assert isinstance(raised, fm.FileFormatError), raised
    assert re.search(match, str(raised)), str(raised)
    assert peak < 1 << 20  # refused before the model is built


def test_a_checkpoint_without_a_field_names_it(checkpoint_file):
    rewrite(checkpoint_file, lambda meta, arrays: meta.pop("history"))
    with pytest.raises(fm.FileFormatError, match="'history' is missing"):
        fm.Trainer.load_checkpoint(checkpoint_file)


_FIELDS = ("history", "history.loss", "epoch", "trainer.batch_size", "trainer.epochs",
           "trainer.seed", "trainer.l2", "trainer.clip_norm", "model.dropout_step",
           "model.config.input_dim", "model.config.layers.0.units",
           "model.config.layers.0.dropout", "model.config.dtype", "optimizer.hyper",
           "optimizer.state/0.W/step", "schedule.config", "schedule.state.base_lr",
           "early_stopping.config", "early_stopping.state.wait", "stop_reason", "rng",
           "rng.uinteger", "rng.has_uint32")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 130, 2 ** 130)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


@FAST
@given(field=st.sampled_from(_FIELDS), value=_JSON)
def test_corrupted_checkpoint_metadata_loads_or_is_a_file_format_error(
        tmp_path, saved_checkpoint, field, value):
    path = tmp_path / "corrupt.npz"
    shutil.copyfile(saved_checkpoint, path)
    rewrite(path, lambda meta, arrays: set_field(meta, field, value))
    try:
        trainer = fm.Trainer.load_checkpoint(path)
    except fm.FileFormatError:
        return
    assert trainer.epoch >= 0 and isinstance(trainer.history, dict)


@FAST
@given(field=st.sampled_from(("config.input_dim", "config.seed", "config.layers.0.units",
                              "config.layers.1.units", "config.layers.0.pieces", "dropout_step",
                              "config.loss", "config.init", "config.layers.0.batchnorm")),
       value=_JSON)
def test_corrupted_model_metadata_loads_or_is_a_file_format_error(tmp_path, field, value):
    path = tmp_path / "corrupt.npz"
    small_model().save(path)
    rewrite(path, lambda meta, arrays: set_field(meta, field, value))
    try:
        fm.MLP.load(path)
    except fm.FileFormatError:
        pass


# ----------------------------------------------------------------------------- saving

def test_save_with_a_bad_standardizer_is_a_type_error_and_writes_nothing(tmp_path):
    model = small_model()
    path = tmp_path / "model.npz"
    with pytest.raises(TypeError, match="standardizer must be a fitted fastmlp.Standardizer"):
        model.save(path, standardizer=object())
    assert not path.exists()
    model.save(path)
    content = path.read_bytes()
    model.standardizer = "mean and var"
    with pytest.raises(TypeError, match="model.standardizer"):
        model.save(path)
    assert path.read_bytes() == content  # the previous file is intact


# ----------------------------------------------------------------------------- optimizer state

@pytest.mark.parametrize("entry, value, exc, match", [
    ("exp_avg_sq", -1.0, ValueError, "must be non-negative"),
    ("exp_avg", np.nan, ValueError, "NaN or inf"),
    ("step", 2 ** 70, ValueError, r"\[0, 2\*\*62\]"),
])
def test_optimizer_state_values_are_checked_and_a_rejected_load_changes_nothing(entry, value,
                                                                                  exc, match):
    trainer = trained_trainer()
    optimizer = trainer.optimizer
    state = optimizer.state_dict()
    key = next(k for k in state if k.endswith(f"/{entry}"))
    bad = dict(state)
    if entry == "step":
        bad[key] = value
    else:
        bad[key] = np.full_like(state[key], value)
    with pytest.raises(exc, match=match):
        optimizer.load_state_dict(bad)
    after = optimizer.state_dict()
    assert after.keys() == state.keys()
    for k, v in state.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)


# ----------------------------------------------------------------------------- shuffle_state

def test_shuffle_state_round_trips_and_resumes_the_same_shuffles():
    first = fm.Trainer(small_model(), seed=3)
    second = fm.Trainer(small_model(), seed=9)
    first._rng.permutation(10)  # move it on
    second.shuffle_state = first.shuffle_state
    assert second.shuffle_state == first.shuffle_state
    assert first.shuffle_state is not first.shuffle_state  # a copy on every read
    np.testing.assert_array_equal(first._rng.permutation(50), second._rng.permutation(50))


@pytest.mark.parametrize("change, exc, match", [
    (lambda s: [1, 2], TypeError, "shuffle_state must be a dict"),
    (lambda s: {**s, "extra": 1}, ValueError, "shuffle_state must have the keys"),
    (lambda s: {**s, "bit_generator": "MT19937"}, ValueError, "bit_generator"),
    (lambda s: {**s, "state": {"state": 1}}, ValueError, r"shuffle_state\['state'\]"),
    (lambda s: {**s, "state": {"state": -1, "inc": 1}}, ValueError, "must be >= 0"),
    (lambda s: {**s, "state": {"state": 2 ** 128, "inc": 1}}, ValueError, r"2\*\*128 - 1"),
    (lambda s: {**s, "has_uint32": 2}, ValueError, "has_uint32"),
    (lambda s: {**s, "uinteger": "0"}, TypeError, "uinteger"),
])
def test_a_bad_shuffle_state_is_refused_and_changes_nothing(change, exc, match):
    trainer = fm.Trainer(small_model(), seed=3)
    state = trainer.shuffle_state
    with pytest.raises(exc, match=match):
        trainer.shuffle_state = change(state)
    assert trainer.shuffle_state == state


def test_a_checkpoint_keeps_the_shuffle_state(tmp_path):
    trainer = trained_trainer()
    trainer.save_checkpoint(tmp_path / "c.npz")
    assert fm.Trainer.load_checkpoint(tmp_path / "c.npz").shuffle_state == trainer.shuffle_state


# ----------------------------------------------------------------------------- command line

def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def cli_data(tmp_path, X, y, name="data.npz"):
    path = tmp_path / name
    np.savez(path, X=X, y=y)
    return path


CLI_FAST = ["--epochs", "1", "--quiet", "--no-progress"]


def test_cli_a_label_of_a_billion_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_validation, "physical_memory", lambda: 8 << 30)
    y = np.arange(40) % 2
    y[0] = 10 ** 9
    path = cli_data(tmp_path, RNG.normal(size=(40, 3)), y)
    code, err = run_cli(["train", "--dataset", path, *CLI_FAST, "--output", tmp_path / "o"],
                        capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("fastmlp train: error: not enough memory for the model")
    assert "the largest label, 1000000000, makes 1000000001 outputs" in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_a_billion_hidden_units_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_validation, "physical_memory", lambda: 8 << 30)
    path = cli_data(tmp_path, RNG.normal(size=(40, 3)), np.arange(40) % 2)
    code, err = run_cli(["train", "--dataset", path, "--hidden", "1000000000", *CLI_FAST,
                         "--output", tmp_path / "o"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "not enough memory for the model" in err[0] and "8.0 GiB" in err[0]


def test_cli_hidden_sizes_beyond_the_limit_are_usage_errors(tmp_path, capsys):
    code, err = run_cli(["train", "--hidden", str(2 ** 31), *CLI_FAST, "--output",
                         tmp_path / "o"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "layer sizes must be <= 2147483647" in err[0]


def test_cli_features_that_overflow_float32_say_so(tmp_path, capsys):
    X = RNG.normal(size=(40, 3))
    X[3, 1] = 1e300
    path = cli_data(tmp_path, X, np.arange(40) % 2)
    code, err = run_cli(["train", "--dataset", path, *CLI_FAST, "--output", tmp_path / "o"],
                        capsys)
    assert code == 2 and len(err) == 1, err
    assert "X has values that overflow float32" in err[0] and "--dtype float64" in err[0]
    assert "NaN" not in err[0]
    code, err = run_cli(["train", "--dataset", path, "--dtype", "float64", "--no-standardize",
                         *CLI_FAST, "--output", tmp_path / "o64"], capsys)
    assert code == 0, err


def test_cli_regression_targets_that_overflow_float32_say_so(tmp_path, capsys):
    y = RNG.normal(size=40)
    y[5] = -1e300
    path = cli_data(tmp_path, RNG.normal(size=(40, 3)), y)
    code, err = run_cli(["train", "--dataset", path, "--loss", "mse", *CLI_FAST, "--output",
                         tmp_path / "o"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "y has values that overflow float32" in err[0]


@pytest.mark.parametrize("X_shape, y_shape, match", [
    ((40, 3), (40, 0), "array 'y' has shape (40, 0): no target columns"),
    ((40, 0), (40,), "array 'X' has shape (40, 0): no feature columns"),
])
def test_cli_arrays_without_columns_name_the_array(tmp_path, capsys, X_shape, y_shape, match):
    path = cli_data(tmp_path, np.zeros(X_shape), np.zeros(y_shape))
    code, err = run_cli(["train", "--dataset", path, "--loss", "mse", *CLI_FAST, "--output",
                         tmp_path / "o"], capsys)
    assert code == 2 and len(err) == 1, err
    assert match in err[0] and "units" not in err[0]
