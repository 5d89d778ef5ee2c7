import pytest
import torch

from prototokens import PrototokensError, get_layout
from prototokens.layout import LAYOUTS, E, M


@pytest.mark.parametrize("name, n, slots", [
    ("em", 4, [E, M, M, M]),
    ("e-only", 3, [E, E, E]),
    ("halves", 4, [E, E, M, M]),
    ("halves", 5, [E, E, E, M, M]),
    ("alternating", 4, [E, M, E, M]),
    ("alternating", 3, [E, M, E]),
    ("em-plus-one", 3, [E, M, M, M]),
    ("em", 1, [E]),
])
def test_layout_slots_follow_table_1(name, n, slots):
    layout = get_layout(name)
    assert layout.slots(n) == slots
    assert layout.n_inputs(n) == len(slots)


def test_only_em_plus_one_leaves_an_output_unused():
    assert {name: layout.outputs(3).start for name, layout in LAYOUTS.items()} == {
        "em": 0, "e-only": 0, "halves": 0, "alternating": 0, "em-plus-one": 1}
    assert get_layout("em-plus-one").outputs(3) == slice(1, 4)


def test_build_places_e_and_m_and_right_pads_with_m():
    e, m = torch.zeros(2, 3), torch.ones(2, 3)
    m[1] *= 2
    z = get_layout("em").build(e, m, [2, 4])
    assert z.shape == (2, 4, 3)
    assert z[0, :, 0].tolist() == [0, 1, 1, 1]  # 2 inputs, then padding
    assert z[1, :, 0].tolist() == [0, 2, 2, 2]


def test_output_at_position_i_ignores_inputs_after_i(tiny):
    torch.manual_seed(0)
    z = torch.randn(1, 10, tiny.d_model) * tiny.embedding_std
    changed = z.clone()
    changed[:, 6:] = torch.randn(1, 4, tiny.d_model)
    with torch.no_grad():
        a, b = tiny.logits(z), tiny.logits(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_unknown_layout_names_the_choices():
    with pytest.raises(PrototokensError, match="unknown layout 'zigzag'; choose one of: em"):
        get_layout("zigzag")
