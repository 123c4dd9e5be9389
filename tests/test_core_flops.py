"""FLOP and parameter counting against hand-computed figures (1 multiply-add = 1 FLOP)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from egocache.core.flops import count_flops, count_params, recurrent_macs


def test_linear_is_batch_times_in_times_out():
    assert count_flops(nn.Linear(10, 7), torch.zeros(4, 10)) == 4 * 10 * 7


def test_conv2d_is_output_positions_times_kernel_volume():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # output 8 x 5 x 5 per image, each position 3*3*3 MACs, batch 2
    assert count_flops(conv, torch.zeros(2, 3, 10, 10)) == 2 * 8 * 5 * 5 * 3 * 3 * 3


def test_gru_is_counted_analytically_per_step():
    gru = nn.GRU(5, 7, batch_first=True)
    batch, steps = 2, 4
    per_step = 3 * (5 * 7 + 7 * 7) + 3 * 7
    assert count_flops(gru, torch.zeros(batch, steps, 5)) == batch * steps * per_step


def test_stacked_bidirectional_gru_uses_each_layers_input_size():
    gru = nn.GRU(5, 7, num_layers=2, bidirectional=True)
    layer0 = 2 * (3 * (5 * 7 + 7 * 7) + 3 * 7)
    layer1 = 2 * (3 * (14 * 7 + 7 * 7) + 3 * 7)
    assert count_flops(gru, torch.zeros(6, 3, 5)) == 6 * 3 * (layer0 + layer1)  # (steps, batch, in)


def test_lstm_and_packed_sequences():
    lstm = nn.LSTM(4, 6, batch_first=True)
    per_step = 4 * (4 * 6 + 6 * 6) + 3 * 6
    assert count_flops(lstm, torch.zeros(3, 5, 4)) == 3 * 5 * per_step
    packed = pack_padded_sequence(torch.zeros(3, 5, 4), [5, 2, 1], batch_first=True)
    assert recurrent_macs(lstm, packed) == (5 + 2 + 1) * per_step


class Head(nn.Module):
    """Linear -> GRU over time -> Linear on the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.gru = nn.GRU(16, 12, batch_first=True)
        self.out = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gru(self.inp(x))[0][:, -1])


def test_recurrent_work_is_not_counted_twice_inside_a_model():
    batch, steps = 2, 4
    expected = (batch * steps * 8 * 16 + batch * steps * (3 * (16 * 12 + 12 * 12) + 3 * 12)
                + batch * 12 * 3)
    assert count_flops(Head(), torch.zeros(batch, steps, 8)) == expected


class Attend(nn.Module):
    """Plain scaled dot-product attention."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_kernels_are_counted_on_cpu_and_meta(device):
    q = torch.zeros(2, 3, 10, 8, device=device)
    k = torch.zeros(2, 3, 12, 8, device=device)
    # Q K^T and A V: 2 * 3 * 10 * 12 * 8 MACs each
    assert count_flops(Attend(), (q, k, k)) == 2 * 2 * 3 * 10 * 12 * 8


def test_keyword_inputs_and_meta_device():
    with torch.device("meta"):
        model = nn.Linear(100, 50)
        x = torch.empty(3, 100)
    assert count_flops(model, {"input": x}) == 3 * 100 * 50


def test_counting_leaves_modes_and_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    model[0].eval()
    before = model[1].running_mean.clone()
    count_flops(model, torch.randn(8, 4) + 5.0)
    assert model.training and not model[0].training
    torch.testing.assert_close(model[1].running_mean, before)


def test_params_count_shared_tensors_once_and_trainable_only():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, shared, nn.Linear(3, 2))
    assert count_params(model) == 12 + 8
    model[2].weight.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 12 + 2
