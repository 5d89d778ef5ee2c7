"""The command line: a thin layer over the public API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from .errors import PrototokensError
from .layout import DEFAULT_LAYOUT, LAYOUTS
from .model import DEFAULT_MODEL, DTYPES
from .optimizers import OPTIMIZERS
from .recipe import DEFAULT_RECIPE, INITS, OFF, RECIPES, get_recipe


def main(argv: list[str] | None = None) -> int:
    from . import distributed

    args = _parser().parse_args(argv)
    prefix = f"[rank {distributed.rank()}] " if distributed.active() else ""
    logging.basicConfig(level=logging.WARNING, format=prefix + "%(message)s")
    _quiet_libraries()
    try:
        _check_output(args)
        args.device = distributed.setup(getattr(args, "device", None))
        with _locked(args):
            code = args.run(args) or 0
        sys.stdout.flush()  # output still buffered for a closed pipe fails here, where it is caught below
        return code
    except PrototokensError as err:
        print(f"prototokens: error: {prefix}{err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prototokens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (head, less) closed our output: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        return 141
    finally:
        distributed.finish()


def _locked(args):
    """The lock on the output this command writes (an encode's file, a capacity or study folder)."""
    import contextlib

    from . import distributed

    output = getattr(args, "output", None) if args.run is _encode else getattr(args, "out", None)
    return distributed.lock(output) if output is not None else contextlib.nullcontext()


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage block: what is wrong and where to look."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prototokens", description="One-step text generation: two "
                                "proto-tokens that make a frozen causal LM write a text in one forward pass.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def model_options(q, default=DEFAULT_MODEL):
        q.add_argument("--model", default=default, help=f"embedded name, GGUF file, folder or hub id (default: {default or 'the one the file names'})")
        q.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        q.add_argument("--dtype", default="float32", choices=list(DTYPES))

    def recipe_options(q):
        q.add_argument("--layout", default=DEFAULT_LAYOUT, choices=list(LAYOUTS))
        q.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND[:MODE]",
                       help="run the optimiser's steps with the model's decoder layers under torch.compile (alone: "
                       "inductor): on a GPU, where launching kernels bounds a step, 9 s to compile, then steps 2.3x faster; "
                       "little gain on a CPU; the dtype checks, and so the files, stay eager")
        q.add_argument("--recipe", type=_recipe, help=f"{', '.join(RECIPES)}; NAME@VERSION for an earlier version, "
                       f"e.g. to resume a run it started (default {DEFAULT_RECIPE}; cramming with --mem)")
        q.add_argument("--steps", type=_whole_int, help="most optimisation steps per seed, for a text of up to --budget-tokens "
                       "tokens (0, with --init encoder:PATH: the encoder's guess as it is)")
        q.add_argument("--budget-tokens", type=_count_or_off, help="texts longer than this get --steps and --patience "
                       "times their length over it (fast: 32, so 2000 steps at 64 tokens); off: the same at every length")
        q.add_argument("--lr", type=float, help="learning rate (in embedding stds for a recipe that counts it so, as fast does)")
        q.add_argument("--optimizer", choices=list(OPTIMIZERS), help="the optimiser of (e, m) (default: the recipe's)")
        q.add_argument("--margin", type=float, help="logit lead every target must have, in every dtype the recipe checks")
        q.add_argument("--compute-dtype", choices=["auto", *DTYPES], help="weights the optimiser's forward and backward "
                       "run in; e and m stay float32 (default: the recipe's; fast: auto, bfloat16 where the hardware "
                       "computes it natively, else float32; --dtype is the weights the model loads in)")
        q.add_argument("--check-dtypes", type=_dtypes, help="comma-separated weight dtypes a text must decode exactly in to "
                       "count as solved (fast: float32,bfloat16; float32 alone skips bf16's check, which a CPU without "
                       "bf16 units can only emulate)")
        q.add_argument("--temperature", type=float, help="cross-entropy of the logits over this (below 1: sharper; fast "
                       "takes 0.5 since v11, the other presets 1; bench/RESULTS.md screens 0.5 and 0.25)")
        q.add_argument("--focus", type=float, help="focal objective: each target's cross-entropy times (1 - p)^FOCUS "
                       "(0: plain cross-entropy, every preset's; 2 solved more 64-token texts, bench/RESULTS.md)")
        q.add_argument("--lazy-polish", action="store_true", default=None, help="polish trains through a check dtype only "
                       "while that dtype's pass misses a target or the margin")
        q.add_argument("--focus-fade", action="store_true", default=None, help="the focal exponent fades as a text is "
                       "written: FOCUS x (1 - its accuracy)")
        q.add_argument("--patience", type=_count_or_off, help="give a seed up after this many steps without progress; off: "
                       "never (the paper's fixed budget)")
        q.add_argument("--starts", type=_positive_int, help="starts raced per text and seed, one batch row each, at every "
                       "length; after --race-steps only the most advanced goes on (default: the recipe's; fast: 4 beyond 32 tokens, 1 up to 32)")
        q.add_argument("--race-steps", type=_positive_int, help="steps the starts race for, at every length "
                       "(default: the recipe's; fast: 100)")
        q.add_argument("--average", type=float, help="also read an exponential moving average of (e, m) with this beta "
                       "every 10 steps, and stop a text at whichever of it and the iterate is solved first (0: off)")
        q.add_argument("--pace", type=_pace, help="STEP:ACCURACY: give a seed up at STEP if its best accuracy is below "
                       "ACCURACY (STEP for a text of --budget-tokens, scaled beyond; only where starts race); off: never")
        q.add_argument("--init", type=_init, help="normal: N(0,1) (paper); embedding-std: N(0, std(embeddings)^2); start: e at the document-start "
                       "token; encoder:PATH (encode only): the output of a trained encoder (its folder or file)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--restarts", type=_positive_int, default=3, help="seeds to try on texts not yet reconstructed (default 3)")
        q.add_argument("--shared-m", action="store_true", help="one m for all texts (default: one per text)")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    q = sub.add_parser("demo", help="encode a book passage on the embedded model, decode it, time it")
    model_options(q)
    q.add_argument("--tokens", type=_positive_int, default=32, help="passage length in tokens (default 32)")
    q.add_argument("--book", default="alice29")
    recipe_options(q)
    q.set_defaults(run=_demo)

    q = sub.add_parser("encode", help="find proto-tokens for texts")
    q.add_argument("text", nargs="?", help="the text (or use --file / --jsonl)")
    q.add_argument("--file", type=Path, help="a UTF-8 text file, encoded as one text")
    q.add_argument("--jsonl", type=Path, help='one text a line: a JSON string or {"text": ...}')
    q.add_argument("-o", "--output", type=Path, default=Path("out.proto.safetensors"))
    q.add_argument("--batch-size", type=_positive_int, default=8)
    q.add_argument("--force", action="store_true", help="overwrite the output instead of resuming it")
    q.add_argument("--trajectory", type=Path, help="write per-step loss and accuracy here (JSONL)")
    model_options(q)
    recipe_options(q)
    q.set_defaults(run=_encode)

    for name, run, text in (("decode", _decode, "print the text(s) decoded in one forward pass"),
                            ("verify", _verify, "decode and compare with the stored targets")):
        q = sub.add_parser(name, help=text)
        q.add_argument("files", type=Path, nargs="+", help="proto-token files, or a progressive climb's state (the exact "
                       "prefixes its texts have passed so far)")
        q.add_argument("--json", action="store_true", help="one JSON object a text")
        model_options(q, default=None)
        q.set_defaults(run=run)

    from .studies import STUDIES

    _study_parser(sub, "capacity", STUDIES["capacity"], model_options, recipe_options)

    q = sub.add_parser("report", help="tables and plots from run folders")
    q.add_argument("folder", type=Path)
    q.set_defaults(run=_report)

    _study_parsers(sub.add_parser("study", help="studies of proto-token space (Tables 1-2, Figs. 5-7, probing)")
                   .add_subparsers(required=True, metavar="STUDY"), model_options, recipe_options)

    _encoder_parsers(sub.add_parser("encoder", help="a learned encoder into proto-token space: train it on passages, split by book")
                     .add_subparsers(required=True, metavar="ACTION"), model_options)

    q = sub.add_parser("info", help="print the metadata of a proto-token file, or where a progressive climb's state stands")
    q.add_argument("files", type=Path, nargs="+")
    q.set_defaults(run=_info)
    return p


def _study_parsers(sub, model_options, recipe_options):
    """One subcommand per registered study (capacity has its own, at the top level)."""
    from .studies import STUDIES

    for name, module in STUDIES.items():
        if name != "capacity":
            _study_parser(sub, name, module, model_options, recipe_options)


def _study_parser(sub, name, module, model_options, recipe_options):
    """The subcommand of a study, its options from the fields of its config."""

    q = sub.add_parser(name, help=module.HELP)
    q.add_argument("-o", "--out", type=Path, required=True, help="study folder (resumed if it exists)")
    from_files = hasattr(module, "proto_files")  # from files: the model they name
    _config_options(q, module.Config)
    model_options(q, default=None if from_files else DEFAULT_MODEL)
    recipe_options(q)
    q.set_defaults(run=_study, study=module)


def _encoder_parsers(sub, model_options):
    from .encoder import Config

    q = sub.add_parser("train", help="train an encoder on passages of a source, split by book (resumed if the folder holds one)")
    q.add_argument("-o", "--out", type=Path, required=True, help="the encoder's folder: weights, checkpoint, snapshots, log")
    _config_options(q, Config)
    model_options(q)
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(run=_encoder_train)


def _config_options(q, config):
    """One option per field of a config dataclass, with its help text and default."""
    import dataclasses

    for f in dataclasses.fields(config):
        meta = f.metadata
        if meta.get("cli", True) is False:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if meta.get("positional"):
            q.add_argument(f.name, type=meta.get("type", str), nargs=meta.get("nargs"), help=meta["help"])
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(default, list):
            kind = type(default[0]) if default else str
            q.add_argument(flag, type=_comma(kind), default=default,
                           help=f"{meta['help']}, comma-separated (default {','.join(map(str, default))})")
        else:
            kind = _positive_int if meta.get("positive") else type(default)
            q.add_argument(flag, type=kind, default=default, choices=meta.get("choices"),
                           help=meta["help"] + ("" if default is None else f" (default {default})"))


def _comma(kind):
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} values separated by commas, got {text!r}") from None
    return parse


def _whole_int(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return int(value)


def _count_or_off(value: str) -> "int | str":
    if value == OFF:
        return OFF
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'off', got {value!r}")
    return int(value)


def _recipe(value: str) -> str:
    try:
        get_recipe(value)
    except PrototokensError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _dtypes(value: str) -> tuple[str, ...]:
    names = tuple(value.split(","))
    if not all(n in DTYPES for n in names):
        raise argparse.ArgumentTypeError(f"expected dtypes from {', '.join(DTYPES)}, comma-separated, got {value!r}")
    return names


def _pace(value: str) -> "tuple[int, float] | str":
    if value == OFF:
        return value
    step, _, accuracy = value.partition(":")
    try:
        pace = int(step), float(accuracy)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:ACCURACY (e.g. 300:0.5) or off, got {value!r}") from None
    if pace[0] < 1 or not 0 < pace[1] <= 1:
        raise argparse.ArgumentTypeError(f"expected a step of at least 1 and an accuracy in (0, 1], got {value!r}")
    return pace


def _init(value: str) -> str:
    if value in INITS or (value.startswith("encoder:") and len(value) > len("encoder:")):
        return value
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(INITS)} or encoder:PATH, got {value!r}")


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def _check_output(args) -> None:
    """Refuse an output that cannot be written, before any work starts: the folder of an
    output file, or of a run or study folder, must exist and be writable."""
    for path in (getattr(args, key, None) for key in ("output", "trajectory", "out")):
        if not isinstance(path, Path):
            continue
        if not path.parent.is_dir():
            raise PrototokensError(f"cannot write {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise PrototokensError(f"cannot write {path}: permission denied")
        if path.is_dir() != (path is getattr(args, "out", None)) and path.exists():
            raise PrototokensError(f"cannot write {path}: it is a {'folder' if path.is_dir() else 'file'}")


def _quiet_libraries():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _load(args, model: str):
    from .model import load_model

    return load_model(model, device=args.device, dtype=args.dtype, compile=getattr(args, "compile", None))


def _encoder_path(args) -> Path | None:
    """The encoder named by ``--init encoder:PATH``, if any."""
    init = getattr(args, "init", None) or ""
    return Path(init.removeprefix("encoder:")) if init.startswith("encoder:") else None


def _overrides(args) -> dict:
    """The recipe fields the command line changes."""
    encoder = _encoder_path(args)
    if encoder is not None and args.run is not _encode:
        raise PrototokensError("--init encoder:PATH works with encode only")
    if args.steps == 0 and encoder is None:
        raise PrototokensError("--steps 0 only scores the start: give --init encoder:PATH to decode an encoder's guess")
    return dict(max_steps=args.steps, lr=args.lr, init=None if encoder else args.init, margin=args.margin,
                patience=args.patience, temperature=args.temperature, focus=args.focus, focus_fade=args.focus_fade, optimizer=args.optimizer,
                lazy_polish=args.lazy_polish,
                dtype=args.compute_dtype, check_dtypes=args.check_dtypes, budget_tokens=args.budget_tokens, starts=args.starts,
                race_steps=args.race_steps, average=args.average, pace=args.pace,
                race_above=None if args.starts is None else 0)


def _encode_options(args) -> dict:
    from . import distributed
    from .layout import get_layout

    recipe = get_layout(args.layout).recipe(args.recipe).with_overrides(**_overrides(args))
    return dict(layout=args.layout, recipe=recipe, seed=args.seed, restarts=1 if args.steps == 0 else args.restarts,
                shared="m" if args.shared_m else None, progress=not args.quiet and distributed.is_main())


def _read_texts(args) -> list[str]:
    from .data.user import jsonl_texts, read_utf8

    given = [x for x in (args.text, args.file, args.jsonl) if x is not None]
    if len(given) != 1:
        raise PrototokensError("give exactly one of: a text, --file F, --jsonl F")
    if args.text is not None:
        texts = [args.text]
    elif args.file is not None:
        texts = [read_utf8(args.file)]
    else:
        texts = list(jsonl_texts(args.jsonl).values())
    for n, text in enumerate(texts, 1):
        if not text.strip():
            raise PrototokensError("the text is empty" if len(texts) == 1 else f"text {n} is empty")
    return texts


def _encode(args):
    import shutil

    from . import distributed
    from .encode import encode, encode_sharded, parts_folder

    texts = _read_texts(args)
    options = _encode_options(args)
    lm = _load(args, args.model)
    parts = parts_folder(args.output)
    if _encoder_path(args) is not None:
        from .encoder import load

        options["start"] = load(_encoder_path(args), lm)
    if args.force and distributed.is_main():
        args.output.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    distributed.barrier()
    if options["shared"] or not (distributed.active() or parts.is_dir()):  # one process, as ever
        proto = None
        if distributed.is_main():  # a shared vector ties the texts into one batch: rank 0 runs it
            with distributed.alone():
                proto = encode(lm, texts, batch_size=args.batch_size, trajectory=args.trajectory is not None,
                               checkpoint=args.output, **options)
                proto.save(args.output)
        distributed.barrier()
    else:  # under torchrun, or resuming a torchrun job's parts
        del options["shared"]
        proto = encode_sharded(lm, texts, args.output, batch_size=args.batch_size,
                               trajectory=args.trajectory is not None, **options)
    if proto is None:
        return 0  # not rank 0: rank 0 merged and reports
    if args.trajectory:
        with args.trajectory.open("w") as f:
            for i, steps in enumerate(proto.trajectory):
                for step in steps:
                    f.write(json.dumps({"text": i, **step._asdict()}) + "\n")
    for i, t in enumerate(proto.texts):
        print(f"text {i}: {t.n_tokens} tokens, accuracy {t.accuracy:.3f}, {t.status}, "
              f"{t.steps} steps (seed {t.seed}{f' start {t.start}' if t.start else ''}; {t.total_steps} in all)")
    print(f"wrote {args.output}")
    return 0 if all(t.status == "solved" for t in proto.texts) else 1


def _load_files(args, paths: list[Path]):
    """The proto-token files, and the model they name (or --model), checked against each. A
    progressive climb's state reads as the exact prefixes its texts have passed so far."""
    from . import progressive
    from .proto import load

    protos = {f: None if progressive.is_state(f) else load(f) for f in paths}
    names = {progressive.summary(f)["model"]["name"] if p is None else p.model["name"] for f, p in protos.items()}
    if args.model is None and len(names) > 1:
        raise PrototokensError(f"the files were made for different models ({', '.join(sorted(names))}); decode them separately")
    lm = _load(args, args.model or names.pop())
    protos = {f: progressive.passed_prefixes(f, lm) if p is None else p for f, p in protos.items()}
    for f, p in protos.items():
        p.check_model(lm, str(f))
    return lm, [protos[f] for f in paths]


def _decode(args):
    from .decode import decode

    lm, protos = _load_files(args, args.files)
    texts = iter(decode(lm, protos))
    for f, p in zip(args.files, protos):
        for i in range(len(p)):
            text = next(texts)
            print(json.dumps({"file": str(f), "text": i, "decoded": text}) if args.json else text)


def _verify(args):
    from .decode import decode_ids
    from .metrics import c_tokens

    lm, protos = _load_files(args, args.files)
    predicted = iter(decode_ids(lm, protos))
    exact = True
    for f, p in zip(args.files, protos):
        for i, t in enumerate(p.texts):
            c = c_tokens(next(predicted), t.target_ids)
            exact &= c == t.n_tokens
            row = {"file": str(f), "text": i, "c_tokens": c, "n_tokens": t.n_tokens, "accuracy": c / t.n_tokens}
            print(json.dumps(row) if args.json else f"{f} text {i}: {c}/{t.n_tokens} tokens, accuracy {c / t.n_tokens:.3f}")
    return 0 if exact else 1


def _info(args):
    from . import progressive
    from .proto import load

    for f in args.files:
        if progressive.is_state(f):
            print(json.dumps({"file": str(f), "climb": progressive.summary(f)}, indent=2))
            continue
        meta = load(f).metadata()
        for t in meta["texts"]:
            t["target_ids"] = f"<{len(t['target_ids'])} ids>"
        print(json.dumps({"file": str(f)} | meta, indent=2))


def _study(args):
    import dataclasses

    from . import distributed

    module = args.study
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Config) if hasattr(args, f.name)}
    config = module.Config(**given | {"recipe": args.recipe, "overrides": _overrides(args), "layout": args.layout,
                                      "progress": not args.quiet and distributed.is_main()})
    if hasattr(module, "proto_files"):
        lm, _ = _load_files(args, module.proto_files(config))
    else:
        lm = _load(args, args.model)
    if getattr(module, "SHARDED", False) or not distributed.active():
        module.run(lm, config, args.out)  # under torchrun the ranks share its units
    else:  # a study whose units are not shared out runs on rank 0 while the others wait
        if distributed.is_main():
            with distributed.alone():
                module.run(lm, config, args.out)
        distributed.barrier()
    if not distributed.is_main():
        return 0
    for path in module.report(args.out):
        print(path.read_text() + f"\nwrote {path}" if path.suffix == ".md" else f"wrote {path}")


def _encoder_train(args):
    import dataclasses

    from . import distributed
    from .encoder import Config, train

    if distributed.active():
        raise PrototokensError("encoder train runs in one process; start it without torchrun")
    config = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    encoder = train(_load(args, args.model), config, args.out, progress=not args.quiet)
    with (args.out / "log.jsonl").open() as f:
        last = json.loads(f.readlines()[-1])
    print(f"step {last['step']}, {last['seconds']:.0f} s: training loss {last['loss']:.3f}, accuracy {last['accuracy']:.3f}; "
          f"zero-shot on held-out passages {json.dumps(last.get('held_out_accuracy'))} "
          f"(held out: {', '.join(encoder.meta['training']['held_out_texts'])})")
    print(f"wrote {args.out / 'encoder.safetensors'}")


def _report(args):
    from .studies import write_report

    for path in write_report(args.folder):
        print(f"wrote {path}")


def _demo(args):
    import torch

    from .data import book_text, passage
    from .decode import decode_ids
    from .encode import encode_ids
    from .metrics import token_accuracy
    from .speed import time_decode

    lm = _load(args, args.model)
    target = passage(lm, book_text(args.book), args.tokens, start_char=1000)
    print(f"model: {lm.name} ({lm.fingerprint}), device {lm.device}, {lm.dtype}")
    print(f"passage ({args.book}, {len(target)} tokens): {lm.detokenize(target)!r}\n")
    started = time.perf_counter()
    proto = encode_ids(lm, [target], **_encode_options(args))
    seconds = time.perf_counter() - started
    decoded = decode_ids(lm, proto)[0]
    record = proto.texts[0]
    print(f"decoded in one forward pass: {lm.detokenize(decoded)!r}")
    print(f"token accuracy: {token_accuracy(decoded, target):.3f} ({record.status}); "
          f"{record.steps} optimisation steps, {seconds:.1f} s to encode")
    timing = time_decode(lm, proto)
    print(f"decode: one pass {timing['one_pass_s'] * 1e3:.1f} ms vs greedy generation of the same "
          f"{len(target)} tokens with a KV cache {timing['greedy_s'] * 1e3:.1f} ms: {timing['ratio']:.1f}x "
          f"faster (medians, same model and dtype, torch threads {torch.get_num_threads()})")
    return 0 if record.status == "solved" else 1


if __name__ == "__main__":
    sys.exit(main())
