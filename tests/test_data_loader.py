"""BatchLoader: coverage, reproducibility from (seed, epoch), mid-epoch resume, DDP rank shards."""

from __future__ import annotations

import io

import pytest
import torch

from cnnlab.data import BatchLoader, TensorPair
from cnnlab.errors import CheckpointError, ConfigError


def numbered(n: int) -> TensorPair:
    """x[i] holds the number i everywhere, so a batch tells which samples it holds."""
    return TensorPair(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone(),
                      torch.arange(n) % 7)  # fmt: skip


def ids(batch: tuple[torch.Tensor, torch.Tensor]) -> list[int]:
    return batch[0][:, 0, 0, 0].long().tolist()


def epoch_ids(loader: BatchLoader) -> list[list[int]]:
    return [ids(b) for b in loader]


def test_each_sample_once_per_epoch_and_lengths() -> None:
    loader = BatchLoader(numbered(103), 10, shuffle=True, seed=1)
    assert len(loader) == 11
    batches = epoch_ids(loader)
    assert [len(b) for b in batches] == [10] * 10 + [3]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103)) and flat != list(range(103))
    x, y = next(iter(BatchLoader(numbered(103), 10, shuffle=True, seed=1)))
    assert torch.equal(y, torch.tensor(ids((x, y))) % 7)  # x and y stay paired
    dropped = BatchLoader(numbered(103), 10, shuffle=False, drop_last=True)
    assert len(dropped) == 10 and epoch_ids(dropped)[0] == list(range(10))


def test_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = BatchLoader(numbered(50), 8, shuffle=True, seed=5), BatchLoader(numbered(50), 8, shuffle=True, seed=5)
    first_a, second_a = epoch_ids(a), epoch_ids(a)  # iterating again moves on to the next epoch
    b.set_epoch(1)
    assert epoch_ids(b) == second_a and first_a != second_a
    b.set_epoch(0)
    assert epoch_ids(b) == first_a
    assert epoch_ids(BatchLoader(numbered(50), 8, shuffle=True, seed=6)) != first_a


def test_resume_mid_epoch_from_state_dict() -> None:
    loader = BatchLoader(numbered(100), 7, shuffle=True, seed=3)
    loader.set_epoch(4)
    straight = epoch_ids(loader)
    cut = BatchLoader(numbered(100), 7, shuffle=True, seed=3)
    cut.set_epoch(4)
    it = iter(cut)
    before = [ids(next(it)) for _ in range(5)]
    buf = io.BytesIO()
    torch.save(cut.state_dict(), buf)  # what a checkpoint stores; plain types, loads weights_only
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert state["epoch"] == 4 and state["position"] == 5

    resumed = BatchLoader(numbered(100), 7, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # an engine loop calling set_epoch for the current epoch keeps the position
    after = epoch_ids(resumed)
    assert before + after == straight
    assert resumed.state_dict()["epoch"] == 5 and resumed.state_dict()["position"] == 0

    with pytest.raises(CheckpointError, match="batch_size"):
        BatchLoader(numbered(100), 8, shuffle=True, seed=3).load_state_dict(state)


def test_epoch_end_without_exhausting_the_iterator() -> None:
    """A loop that stops right after the last batch (max_steps) must not get an empty next epoch."""
    loader = BatchLoader(numbered(20), 5, shuffle=True, seed=0)
    it = iter(loader)
    for _ in range(len(loader)):
        next(it)
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (0, 4)
    nxt = epoch_ids(loader)
    assert len(nxt) == 4
    ref = BatchLoader(numbered(20), 5, shuffle=True, seed=0)
    ref.set_epoch(1)
    assert nxt == epoch_ids(ref)


@pytest.mark.parametrize(
    "world_size,n,drop_last", [(2, 100, False), (3, 100, False), (2, 64, True), (4, 10, False)]
)
def test_rank_shards_concatenate_to_the_single_process_batch(world_size: int, n: int, drop_last: bool) -> None:
    per_rank = 6
    single = BatchLoader(numbered(n), per_rank * world_size, shuffle=True, seed=9, drop_last=drop_last)
    ranks = [BatchLoader(numbered(n), per_rank, shuffle=True, seed=9, drop_last=drop_last, rank=r,
                         world_size=world_size) for r in range(world_size)]  # fmt: skip
    for epoch in (0, 1):
        for loader in (single, *ranks):
            loader.set_epoch(epoch)
        lengths = {len(r) for r in ranks}
        assert len(lengths) == 1  # every rank takes the same number of steps
        shards = [epoch_ids(r) for r in ranks]
        whole = epoch_ids(single)
        assert len(shards[0]) == len(whole) or (not drop_last and len(shards[0]) == len(whole) - 1)
        for k, shard_batches in enumerate(zip(*shards)):
            sizes = {len(s) for s in shard_batches}
            assert len(sizes) == 1 and sizes.pop() > 0  # equal, non-empty shares
            joined = [i for s in shard_batches for i in s]
            # the last global batch is cut to a multiple of world_size; otherwise identical
            assert joined == whole[k][: len(joined)]
            if k < n // (per_rank * world_size):
                assert joined == whole[k]
        seen = [i for s in shards for b in s for i in b]
        assert len(seen) == len(set(seen))  # disjoint
        assert len(seen) >= n - (n % (per_rank * world_size) if drop_last else world_size - 1)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(numbered(4), 0, shuffle=True)
    with pytest.raises(ConfigError, match="rank"):
        BatchLoader(numbered(4), 2, shuffle=True, rank=2, world_size=2)
