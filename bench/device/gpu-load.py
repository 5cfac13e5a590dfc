"""A known GPU load for the agent's NVML check: bf16 matrix products for SECONDS on GPU 0.

Read only with respect to the GPU's settings: it sets no clock, power limit or mode; it only
computes, so that the power the agent samples rises above idle and back.
Usage: python3 bench/device/gpu-load.py SECONDS
"""
import sys
import time

import torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
start = time.time()
n = 0
while time.time() - start < seconds:
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    n += 20
elapsed = time.time() - start
print(f"gpu-load: {n} bf16 8192^3 products in {elapsed:.1f} s = {2 * 8192**3 * n / elapsed / 1e12:.0f} TFLOP/s", flush=True)
