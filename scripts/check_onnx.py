"""Runs the ONNX files scripts/check-onnx.sh exported with ONNX Runtime and compares them.

usage: check_onnx.py DIR   (DIR holds batch1, dynamic, gather, opset16, opset21, half, topk .onnx and ours.safetensors)
"""
import ast
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

# f32 graphs against the PyTorch reference and against our forward pass (the bound; measured ~3e-7).
F32_TOL = 1e-4
# GridSample and the GatherElements form compute the same bilinear sums in a different order.
GATHER_TOL = 1e-5
# f16 activations through 3 decoder layers; compared row by row after matching rows, since near-equal scores can
# swap places in the f16 top-k (measured ~6e-4).
HALF_TOL = 5e-3

here = os.path.dirname(os.path.abspath(__file__))
fixture = load_file(os.path.join(here, '..', 'fixtures', 'data', 'detector_tiny.io.safetensors'))
images = fixture['input_u8'].astype(np.float32) / 255
logits = fixture['dec.logits'][-1]
reference = np.concatenate([fixture['dec.boxes'][-1], 1 / (1 + np.exp(-logits))], -1)
out = sys.argv[1]
ours = load_file(os.path.join(out, 'ours.safetensors'))['ours']
failures = []


def check(what, got, want, tol):
    diff = float(np.abs(got.astype(np.float64) - want).max())
    ok = got.shape == want.shape and diff <= tol
    print(f'{"ok  " if ok else "FAIL"} {what}: shape {got.shape}, max |diff| {diff:.2e} (tolerance {tol:g})')
    if not ok:
        failures.append(what)


def session(name):
    path = os.path.join(out, f'{name}.onnx')
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert ast.literal_eval(meta['names']) == {0: 'cat', 1: 'dog', 2: 'traffic light'}, meta['names']
    assert ast.literal_eval(meta['imgsz']) == [256, 320] and meta['stride'] == '32' and meta['task'] == 'detect'
    s = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [i.name for i in s.get_inputs()] == ['images'] and [o.name for o in s.get_outputs()] == ['output0']
    return s


def run(s, x):
    return s.run(None, {'images': x})[0]


s = session('batch1')
for b in range(2):
    y = run(s, images[b:b + 1])
    check(f'batch1 image {b} vs reference', y, reference[b:b + 1], F32_TOL)
    check(f'batch1 image {b} vs ours', y, ours[b:b + 1], F32_TOL)

dynamic = run(session('dynamic'), images)
check('dynamic batch 2 vs reference', dynamic, reference, F32_TOL)
check('dynamic batch 2 vs ours', dynamic, ours, F32_TOL)
three = run(session('dynamic'), np.concatenate([images, images[:1]]))
check('dynamic batch 3 vs reference', three, np.concatenate([reference, reference[:1]]), F32_TOL)

gather = session('gather')
check('gather form vs GridSample form', run(gather, images), dynamic, GATHER_TOL)
check('gather form vs reference', run(gather, images), reference, F32_TOL)
for opset in ['opset16', 'opset21']:
    check(f'{opset} vs reference', run(session(opset), images), reference, F32_TOL)

topk = run(session('topk'), images)
check('top-k output vs reference RTDETRDecoder.postprocess', topk, fixture['dec.detections'], F32_TOL)

half = run(session('half'), images.astype(np.float16)).astype(np.float64)
assert half.shape == reference.shape, half.shape
distance = np.abs(half[:, :, None, :] - reference[:, None, :, :]).max(-1)
matched = distance.min(-1)
same_order = float((distance.argmin(-1) == np.arange(reference.shape[1])).mean())
check('half vs reference, rows matched', np.array([matched.max()]), np.zeros(1), HALF_TOL)
print(f'     half: {same_order:.0%} of rows in the reference order; max |diff| in place {np.abs(half - reference).max():.2e}')

if failures:
    sys.exit(f'{len(failures)} ONNX checks failed: {", ".join(failures)}')
print('all ONNX checks passed')
