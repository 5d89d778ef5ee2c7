"""The metrics against values computed by hand on the tiny model."""

import math

import pytest
import torch

from prototokens import h_lm, nats_to_bits, token_accuracy


def test_h_lm_is_the_summed_cross_entropy_of_the_text_after_the_start_token(tiny):
    ids = tiny.tokenize("Alice was beginning to get")
    assert len(ids) > 3
    with torch.no_grad():  # the model on token ids, not on embeddings: another path than h_lm's
        logits = tiny.model(input_ids=torch.tensor([[tiny.start_id, *ids]])).logits[0].double()
    # -log softmax of each target's logit, written out: logsumexp of the row minus the target's logit
    by_hand = sum(float(torch.logsumexp(logits[i], 0) - logits[i, t]) for i, t in enumerate(ids))
    assert h_lm(tiny, ids) == pytest.approx(by_hand, rel=1e-5)
    assert nats_to_bits(h_lm(tiny, ids)) == pytest.approx(by_hand / math.log(2), rel=1e-5)


def test_token_accuracy_counts_positions_over_the_target_length():
    assert token_accuracy([1, 2, 3], [1, 2, 4]) == 2 / 3
    assert token_accuracy([1, 2], [1, 2, 3, 4]) == 2 / 4  # a short prediction misses the rest
    assert token_accuracy([1, 2, 3, 4], [1, 2]) == 1.0  # what follows the target is not scored
