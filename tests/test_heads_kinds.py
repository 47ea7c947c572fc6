"""The head kinds beyond classification: output shapes, losses, pooling."""

from __future__ import annotations

import pytest
import torch

from adapterx.core.heads import HeadSpec, build_head, mean_pool


def test_tagging_head_ignores_non_first_subwords():
    head = build_head(8, HeadSpec("tagging", 5)).eval()
    hidden, mask = torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.long)
    logits = head(hidden, mask)
    assert logits.shape == (2, 6, 5)
    labels = torch.full((2, 6), -100)
    labels[0, 1], labels[1, 2] = 3, 0
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[0, 1], logits[1, 2]]), torch.tensor([3, 0]))
    assert head.loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_span_qa_head_masks_padding_and_averages_start_end_loss():
    head = build_head(8, HeadSpec("span_qa", 0)).eval()
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    logits = head(torch.randn(2, 4, 8), mask)
    assert logits.shape == (2, 4, 2)
    assert (logits[0, 3] < -1e30).all()
    loss = head.loss(logits, torch.tensor([[1, 2], [0, 0]]))
    start = torch.nn.functional.cross_entropy(logits[..., 0], torch.tensor([1, 0]))
    end = torch.nn.functional.cross_entropy(logits[..., 1], torch.tensor([2, 0]))
    assert loss.item() == pytest.approx(((start + end) / 2).item(), rel=1e-5)


def test_multiple_choice_head_scores_rows_per_example():
    head = build_head(8, HeadSpec("multiple_choice", 4)).eval()
    logits = head(torch.randn(3 * 4, 5, 8), torch.ones(12, 5, dtype=torch.long))
    assert logits.shape == (3, 4)
    assert head.loss(logits, torch.tensor([0, 3, 1])).ndim == 0


def test_mean_pool_uses_the_attention_mask():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.equal(pooled, torch.tensor([[2.0, 3.0]]))
    head = build_head(2, HeadSpec("retrieval", 0))
    assert torch.equal(head(hidden, torch.tensor([[1, 1, 0]])), pooled)
    assert not list(head.parameters())
