#!/usr/bin/env python3
"""Exports pytorch-fid's Inception-v3 (the FID network: the 2015-12-05
TensorFlow weights, pool3 features, 2048-d) as the TorchScript module that
`madam-worker --fid-model PATH` reads (worker/fid_model.h):

    input  N x 3 x H x W float images in [0, 1]
    output N x 2048 pool3 features (the module resizes to 299 x 299 and
           scales to [-1, 1] itself, as pytorch-fid does)

Needs Python torch and pytorch-fid (`pip install pytorch-fid`). The weights
are not shipped with madam: pytorch-fid downloads
pt_inception-2015-12-05-6726825d.pth into the torch hub cache, or pass a
copy you already have with --weights.

    python3 tools/export_fid_inception.py --out fid_inception.pt \
        [--weights pt_inception-2015-12-05-6726825d.pth]

The script checks the exported module against pytorch-fid's own network on
random images before it returns.
"""
import argparse
import os
import sys
import tempfile

import torch


class PoolFeatures(torch.nn.Module):
    """pytorch-fid's InceptionV3 with its 4-D [N, 2048, 1, 1] output flattened."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, x):
        return self.inception(x)[0].flatten(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the TorchScript module")
    parser.add_argument("--weights", help="a local pt_inception-2015-12-05-6726825d.pth")
    args = parser.parse_args()

    from pytorch_fid import inception as fid_inception

    with tempfile.TemporaryDirectory() as hub:
        if args.weights:
            # load_state_dict_from_url finds the file in the hub cache and
            # downloads nothing.
            os.makedirs(os.path.join(hub, "checkpoints"))
            name = os.path.basename(fid_inception.FID_WEIGHTS_URL)
            os.symlink(os.path.abspath(args.weights), os.path.join(hub, "checkpoints", name))
            torch.hub.set_dir(hub)
        net = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                        resize_input=True, normalize_input=True,
                                        use_fid_inception=True).eval()
    module = PoolFeatures(net).eval()
    example = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        scripted = torch.jit.trace(module, example)
    torch.jit.save(scripted, args.out)

    loaded = torch.jit.load(args.out)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        want = net(images)[0].flatten(1)
        got = loaded(images)
    if got.shape != (4, 2048) or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        sys.exit("export check failed: the TorchScript module disagrees with pytorch-fid")
    print("wrote %s: N x 3 x H x W in [0, 1] -> N x 2048 (checked against pytorch-fid)" % args.out)


if __name__ == "__main__":
    main()
