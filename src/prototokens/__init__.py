"""prototokens: make a frozen causal LM write a text in one forward pass from two vectors."""

from . import encoder
from .decode import decode, decode_ids
from .encode import encode, encode_ids
from .errors import PrototokensError
from .layout import LAYOUTS, Layout, get_layout
from .metrics import c_tokens, h_lm, nats_to_bits, token_accuracy
from .model import DEFAULT_MODEL, FrozenLM, load_model
from .optimize import Fit, optimize
from .proto import ProtoTokens, TextRecord, load
from .recipe import RECIPES, Recipe, get_recipe

__version__ = "0.1.0"
__all__ = [
    "encoder", "decode", "decode_ids", "encode", "encode_ids", "PrototokensError", "LAYOUTS", "Layout",
    "get_layout", "c_tokens", "h_lm", "nats_to_bits", "token_accuracy", "DEFAULT_MODEL",
    "FrozenLM", "load_model", "Fit", "optimize", "ProtoTokens", "TextRecord", "load",
    "RECIPES", "Recipe", "get_recipe",
]
