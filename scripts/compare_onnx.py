"""Runs MODEL.onnx with ONNX Runtime on the `images` tensor of IO.safetensors and compares the output with its `ours`
tensor row by row; exits non-zero when the rows are not a permutation of ours or a matched row differs by more than
TOL. Used by the #[ignore]d full-size export tests.

usage: compare_onnx.py MODEL.onnx IO.safetensors TOL
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

path, io_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
onnx.checker.check_model(path, full_check=True)
io = load_file(io_path)
so = ort.SessionOptions()
so.intra_op_num_threads = 2
s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
got = s.run(None, {'images': io['images']})[0].astype(np.float64)
want = io['ours'].astype(np.float64)
if got.shape != want.shape:
    sys.exit(f'{path}: output {got.shape}, ours {want.shape}')
# Queries come in the order of the encoder's top-k scores; two scores within rounding of each other may swap places
# between runtimes, so rows are matched first: the matching must be a permutation and every matched row within TOL.
distance = np.abs(got[:, :, None, :] - want[:, None, :, :]).max(-1)
match = distance.argmin(-1)
permutation = all(sorted(m) == list(range(want.shape[1])) for m in match)
diff = float(distance.min(-1).max())
swapped = int((match != np.arange(want.shape[1])).sum())
print(f'{path}: output {got.shape}, max |ort - ours| {diff:.2e} over matched rows (tolerance {tol:g}), '
      f'{swapped} rows in another place, in place {np.abs(got - want).max():.2e}')
sys.exit(0 if permutation and diff <= tol else 1)
