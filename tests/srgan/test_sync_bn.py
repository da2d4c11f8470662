"""Synced BatchNorm in 2 real processes (gloo on 127.0.0.1) against nn.BatchNorm2d on the
concatenated batch in one process."""

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from srgan.generator import SRResNet
from srgan.sync_bn import SyncBatchNorm2d, broadcast_state, sync_batch_norm

SPLIT = (3, 2)  # unequal shares: the global count, not the world size, must weigh each rank
STEPS = 3


def _layers() -> list[nn.BatchNorm2d]:
    """Reference layers with non-trivial affine parameters and statistics; one with
    momentum None (a cumulative average)."""
    torch.manual_seed(1)
    layers = [nn.BatchNorm2d(4), nn.BatchNorm2d(4, momentum=None)]
    for bn in layers:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return layers


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output weights) per step for the whole batch; a loss sum(y * w) makes every
    output element's gradient distinct. The last step's mean is 50 standard deviations from
    zero, where a float32 E[x^2] - E[x]^2 would lose the variance."""
    g = torch.Generator().manual_seed(2)
    n = sum(SPLIT)
    offsets = [2.0] * (STEPS - 1) + [50.0]
    return [(torch.randn(n, 4, 5, 6, generator=g) + offset, torch.randn(n, 4, 5, 6, generator=g)) for offset in offsets]


def _run(layer: nn.Module, batches, rows: slice) -> dict:
    """Train-mode steps on `rows` of each batch; outputs, gradients and the buffers after."""
    out = {"y": [], "x_grad": [], "w_grad": [], "b_grad": []}
    for x, w in batches:
        x = x[rows].clone().requires_grad_(True)
        layer.zero_grad()
        y = layer(x)
        (y * w[rows]).sum().backward()
        out["y"].append(y.detach())
        out["x_grad"].append(x.grad)
        out["w_grad"].append(layer.weight.grad.clone())
        out["b_grad"].append(layer.bias.grad.clone())
    out["state"] = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.eval()
    out["eval_y"] = layer(batches[0][0][rows]).detach()
    return out


def _worker(rank: int, folder: str) -> None:
    # A file store: no port to pick (a free port found first can be taken by another
    # process, e.g. a Ray worker, before rank 0 binds it).
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        start = sum(SPLIT[:rank])
        rows = slice(start, start + SPLIT[rank])
        results = [_run(sync_batch_norm(layer, torch.device("cpu")), _batches(), rows) for layer in _layers()]

        # broadcast_state: rank 1's model becomes rank 0's, weights and buffers.
        model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        with torch.no_grad():
            for tensor in model.state_dict().values():
                tensor.fill_(rank + 1)
        broadcast_state(model, src=0)
        torch.save({"layers": results, "broadcast": model.state_dict()}, Path(folder) / f"rank{rank}.pt")
        dist.barrier()  # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("sync_bn")
    mp.spawn(_worker, args=(str(folder),), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("which", [0, 1], ids=["momentum", "cumulative"])
def test_two_processes_compute_batch_norm_of_the_concatenated_batch(ranks, which):
    reference = _run(_layers()[which], _batches(), slice(None))
    got = [r["layers"][which] for r in ranks]
    close = dict(rtol=1e-5, atol=1e-5)
    for step in range(STEPS):
        # Each process holds its rows of the output and of the input gradient ...
        torch.testing.assert_close(torch.cat([g["y"][step] for g in got]), reference["y"][step], **close)
        torch.testing.assert_close(torch.cat([g["x_grad"][step] for g in got]), reference["x_grad"][step], **close)
        # ... and its share of the weight gradients, which DDP's all-reduce adds up.
        for key in ("w_grad", "b_grad"):
            torch.testing.assert_close(got[0][key][step] + got[1][key][step], reference[key][step], **close)
    for g in got:  # both processes end with the running statistics of the whole batch
        assert g["state"].keys() == reference["state"].keys()
        for key, value in reference["state"].items():
            torch.testing.assert_close(g["state"][key], value, **close)
    torch.testing.assert_close(torch.cat([g["eval_y"] for g in got]), reference["eval_y"], **close)


def test_broadcast_state_gives_every_process_the_sources_weights_and_buffers(ranks):
    for key, value in ranks[1]["broadcast"].items():
        assert torch.equal(value, ranks[0]["broadcast"][key]), key
        assert torch.all(value == 1), key  # rank 0 filled its copy with 1, rank 1 with 2


def test_converted_generator_saves_as_plain_batch_norm_and_is_plain_in_one_process():
    plain = SRResNet(scale=2, num_blocks=2, num_features=8)
    synced = sync_batch_norm(copy.deepcopy(plain), torch.device("cpu"))
    assert (
        sum(isinstance(m, SyncBatchNorm2d) for m in synced.modules())
        == sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        == 5
    )
    assert list(synced.state_dict()) == list(plain.state_dict())
    x = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(synced(x), plain(x))  # no process group: BatchNorm2d, buffers updated alike
    SRResNet(scale=2, num_blocks=2, num_features=8).load_state_dict(synced.state_dict())
    for a, b in zip(synced.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b)
