"""PyTorch side of compare.sh: the work of pkg/ae's BenchmarkScoreBatch30.

Scores pre-encoded batches of 1024 records with 30 numeric fields through a
30-64-16-64-30 autoencoder (ReLU after the first and third layers), as the
Go scorer does: clip the inputs to [-10, 10], run the network, take each
field's squared error against the unclipped input, divide by the field's
normaliser, take the square root and sum per record. One thread, no
autograd. Prints one line: "torch <records per second>"; with --info, the
PyTorch version and the BLAS library it loaded instead.

Debian's python3-torch calls whatever libblas.so.3 the alternatives system
points at; with only libblas3 (the reference BLAS) installed it is about 10x
slower than with OpenBLAS (apt-get install libopenblas0-pthread), so say
which one a figure was taken with.
"""

import os

import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time to spend measuring")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--info", action="store_true", help="print the version and BLAS library, then exit")
    args = ap.parse_args()

    if args.info:
        torch.randn(8, 8) @ torch.randn(8, 8)  # load the BLAS
        with open("/proc/self/maps") as f:
            libs = sorted({os.path.realpath(l.split()[-1]) for l in f if "blas" in l.lower() and "/" in l})
        print(f"PyTorch {torch.__version__}, BLAS {' '.join(libs) or 'none found'}")
        return

    torch.set_num_threads(1)
    torch.manual_seed(1)
    d = 30
    net = torch.nn.Sequential(
        torch.nn.Linear(d, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, d),
    ).eval()
    x = torch.randn(args.batch, d)
    norm = torch.rand(d) + 0.5

    def score():
        y = net(x.clamp(-10, 10))
        return ((y - x) ** 2 / norm).clamp_min(0).sqrt().sum(1)

    with torch.inference_mode():
        for _ in range(50):  # warm up
            score()
        n = 0
        start = time.perf_counter()
        while True:
            for _ in range(20):
                score()
            n += 20
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds:
                break
    print(f"torch {n * args.batch / elapsed:.0f}")


if __name__ == "__main__":
    main()
