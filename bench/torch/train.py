"""PyTorch side of compare.sh's training comparison: the work of pkg/ae's
BenchmarkTrain100k.

Fits a 30-64-16-64-30 denoising autoencoder (ReLU after the first and third
layers, as pkg/ae) on 100,000 synthetic rows of 30 numeric fields (each
row's fields share a normal "base" with weight j % 3, plus unit noise, as
the Go benchmark draws them) for 20 full epochs of mini-batches of 256 with
AdamW (lr 1e-3, weight decay 1e-5), swap noise 0.25 and gaussian noise 0.1
on the inputs and squared error against the clean rows. The Go trainer does
a little more per epoch (mask noise, a clean pass over all rows to trim the
worst 8%, a validation pass), so the comparison favours PyTorch slightly.
Prints one line: "torch <seconds>".
"""

import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    n, d = 100_000, 30
    base = torch.randn(n, 1)
    X = base * (torch.arange(d) % 3).float() + torch.randn(n, d)
    net = torch.nn.Sequential(
        torch.nn.Linear(d, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, d),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    cols = torch.arange(d)

    start = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 256):
            xb = X[perm[i:i + 256]]
            swap = torch.rand(xb.shape) < 0.25
            donors = X[torch.randint(0, n, xb.shape), cols]
            xn = torch.where(swap, donors, xb) + 0.1 * torch.randn(xb.shape)
            opt.zero_grad(set_to_none=True)
            loss = ((net(xn) - xb) ** 2).sum(1).mean()
            loss.backward()
            opt.step()
    print(f"torch {time.perf_counter() - start:.2f}")


if __name__ == "__main__":
    main()
