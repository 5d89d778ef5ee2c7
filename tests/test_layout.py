import pytest
import torch

from prototokens import PrototokensError, get_layout
from prototokens.layout import LAYOUTS, E, M, S


@pytest.mark.parametrize("name, n, slots", [
    ("em", 4, [E, M, M, M]),
    ("e-only", 3, [E, E, E]),
    ("halves", 4, [E, E, M, M]),
    ("halves", 5, [E, E, E, M, M]),
    ("alternating", 4, [E, M, E, M]),
    ("alternating", 3, [E, M, E]),
    ("em-plus-one", 3, [E, M, M, M]),
    ("start-em-plus-one", 3, [S, E, M, M, M]),
    ("em", 1, [E]),
])
def test_layout_slots_follow_table_1(name, n, slots):
    layout = get_layout(name)
    assert layout.slots(n) == slots
    assert layout.n_inputs(n) == len(slots)


def test_only_the_plus_one_layouts_leave_outputs_unused():
    assert {name: layout.outputs(3).start for name, layout in LAYOUTS.items()} == {
        "em": 0, "e-only": 0, "halves": 0, "alternating": 0, "em-plus-one": 1, "start-em-plus-one": 2}
    assert get_layout("em-plus-one").outputs(3) == slice(1, 4)
    assert get_layout("start-em-plus-one").outputs(3) == slice(2, 5)


def test_build_places_e_and_m_and_right_pads_with_m():
    e, m = torch.zeros(2, 3), torch.ones(2, 3)
    m[1] *= 2
    z = get_layout("em").build(e, m, [2, 4])
    assert z.shape == (2, 4, 3)
    assert z[0, :, 0].tolist() == [0, 1, 1, 1]  # 2 inputs, then padding
    assert z[1, :, 0].tolist() == [0, 2, 2, 2]


def test_a_start_slot_holds_the_models_document_start_token_and_needs_the_model(tiny):
    layout = get_layout("start-em-plus-one")
    e, m = torch.zeros(2, tiny.d_model), torch.ones(2, tiny.d_model)
    z = layout.build(e, m, [1, 3], tiny)
    assert z.shape == (2, 5, tiny.d_model)
    start = tiny.embed(torch.tensor([tiny.start_id]))[0]
    assert torch.equal(z[0, 0], start) and torch.equal(z[1, 0], start)
    assert z[:, 1, 0].tolist() == [0, 0] and z[:, 2:, 0].tolist() == [[1, 1, 1], [1, 1, 1]]
    with pytest.raises(PrototokensError, match="start-em-plus-one holds the model's document-start token"):
        layout.build(e, m, [3])
    assert [name for name, layout in LAYOUTS.items() if layout.fixed_start] == ["start-em-plus-one"]


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
