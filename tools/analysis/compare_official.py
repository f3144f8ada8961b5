"""Compare this project's ToMe or SPViT with its authors' code, number for
number, on the same (random) DeiT-S weights.

The official code is not part of this repository (its licence keeps it
out): pass a checkout of it with ``--official``.

    # facebookresearch/ToMe (needs timm): every layer's tokens and groups
    python tools/analysis/compare_official.py tome --official ../ToMe --r 8
    python tools/analysis/compare_official.py tome --official ../ToMe \\
        --size 512 --keep-ratio 0.75 --layers 0 3
    # PeiyanFlying/SPViT: training path (same seed), inference path (same
    # decisions: no Gumbel noise on either side, B=1)
    python tools/analysis/compare_official.py spvit --official ../SPViT
    python tools/analysis/compare_official.py spvit --official ../SPViT \\
        --mode eval

The weights are random but made to act like a trained model's (wider than
timm's init, so attention is not uniform and selectors keep about half).
"""
import argparse
import os.path as osp
import sys
import tempfile

import torch
import torch.nn.functional as F

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.utils.timm_keys import timm_vit_key, timm_vit_state_dict

SPVIT_LAYERS = [3, 6, 9]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('method', choices=['tome', 'spvit'])
    parser.add_argument('--official', required=True,
                        help='checkout of the official repository')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--r', type=int, default=8,
                        help='ToMe: tokens merged per reducing layer')
    parser.add_argument('--keep-ratio', type=float, default=None,
                        help='ToMe: keep this fraction instead of --r')
    parser.add_argument('--layers', type=int, nargs='+',
                        default=list(range(12)), help='ToMe: reducing layers')
    parser.add_argument('--alternate', default='sequence',
                        help="ToMe's option (the 0.1 rule: 'patches')")
    parser.add_argument('--mode', choices=['train', 'eval'], default='train',
                        help='SPViT: the path compared')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if not osp.isdir(args.official):
        parser.error(f'--official {args.official!r} is not a folder')
    return args


def randomise(model: torch.nn.Module) -> None:
    """Weights wider than timm's init: attention far from uniform."""
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.dim() > 1:
                    p.normal_(0, 0.05)
                elif isinstance(module, torch.nn.LayerNorm) and \
                        name == 'weight':
                    p.uniform_(0.5, 1.5)
                else:
                    p.normal_(0, 0.02)


def ours(size: int, token_cfg: dict, state_dict: dict,
         selector_layers=None) -> PrunedVisionTransformer:
    model = PrunedVisionTransformer(
        arch='deit-small', img_size=size, patch_size=16, out_type='raw',
        token_cfg=token_cfg)
    model.load_state_dict(
        timm_vit_state_dict(state_dict, selector_layers), strict=True)
    return model


def compare_tome(args) -> None:
    sys.path.insert(0, args.official)
    import timm
    import tome
    from tome.utils import parse_r

    torch.manual_seed(args.seed)
    official = timm.create_model(
        'deit_small_patch16_224', pretrained=False, img_size=args.size)
    randomise(official)
    official.eval()
    token_cfg = dict(type='ToMe', layers=args.layers,
                     alternate=args.alternate)
    if args.keep_ratio is None:
        token_cfg['r'] = args.r
    else:
        token_cfg['keep_ratio'] = args.keep_ratio
    model = ours(args.size, token_cfg, official.state_dict()).eval()
    plain = ours(args.size, None, official.state_dict()).eval()

    # the official schedule: what each of our layers asks for (the
    # official code clamps it as ours does)
    n, rs = (args.size // 16)**2, []
    for layer in model.layers:
        if layer.reducer is None:
            rs.append(0)
            continue
        rs.append(layer.reducer.step.requested(n))
        n -= layer.reducer.num_removed(n)
    tome.patch.timm(official, trace_source=True, prop_attn=True)
    official.r = rs

    caught = []
    for block in official.blocks:
        block.register_forward_hook(lambda m, i, o: caught.append(
            (o, official._tome_info['source'])))
    x = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        official._tome_info.update(
            r=parse_r(len(official.blocks), official.r), size=None,
            source=None)
        official.forward_features(x)
        mine = list(model._encode(x))
        unmerged = list(plain._encode(x))[-1][1]

    worst, all_same = 0., True
    E = model.num_extra_tokens
    for i, ((theirs, source), (_, y, tokens, _)) in enumerate(
            zip(caught, mine)):
        if i == len(caught) - 1:
            theirs = official.norm(theirs)  # ours yields after the norm
        if theirs.shape != y.shape:
            all_same = False
            print(f'layer {i:2d}: {theirs.shape[1]} tokens against '
                  f'{y.shape[1]}')
            continue
        diff = (theirs - y).abs().max().item()
        worst = max(worst, diff)
        same = None
        if source is not None and tokens is not None:
            # which original patches each output token stands for
            groups = torch.zeros_like(source)
            groups[:, :E, :E] = torch.eye(E)
            cells = torch.arange(source.shape[2] - E) + E
            for b in range(source.shape[0]):
                groups[b, E + tokens.assign[b], cells] = 1
            same = torch.equal(groups, source)
            all_same &= same
        print(f'layer {i:2d}: {y.shape[1]:4d} tokens, largest |official - '
              f'ours| {diff:.2e}, same groups in the same order: {same}')
    effect = (unmerged[:, 0] - mine[-1][1][:, 0]).abs().max().item()
    cls = (official.norm(caught[-1][0])[:, 0] -
           mine[-1][1][:, 0]).abs().max().item()
    print(f'ToMe {args.size}x{args.size} B={args.batch} r per layer {rs} '
          f'alternate={args.alternate!r}: largest |official - ours| '
          f'{worst:.2e} over all layers and tokens; class token at the end '
          f'{cls:.2e} (merging itself moves it by {effect:.2e}); same '
          f'tokens, groups and order in every layer: {all_same}')


def compare_spvit(args) -> None:
    sys.path.insert(0, args.official)
    import vit_l2_3keep_senet as spvit

    import mmtokenprune.ops.gumbel as gumbel
    torch.manual_seed(args.seed)
    official = spvit.VisionTransformerDiffPruning(
        patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4,
        qkv_bias=True, pruning_loc=SPVIT_LAYERS,
        token_ratio=[0.7, 0.49, 0.343])
    randomise(official)
    with torch.no_grad():  # logits wide enough for decisions either way
        for selector in official.score_predictor:
            selector.out_conv[0][4].weight.normal_(0, 1.)
            selector.out_conv[0][4].bias.zero_()
    token_cfg = dict(type='SPViT', keep_ratio=0.7, layers=SPVIT_LAYERS,
                     prop_attn=False, sample=args.mode == 'eval')
    model = ours(224, token_cfg, official.state_dict(), SPVIT_LAYERS)
    final = {}
    official.norm.register_forward_hook(
        lambda m, i, o: final.__setitem__('x', o))
    x = torch.randn(args.batch, 3, 224, 224)
    if args.mode == 'train':
        official.train()
        model.train()
        outs = []
        for net in (official, model):
            torch.manual_seed(args.seed)  # the same Gumbel draws
            net.zero_grad()
            if net is official:
                net(x)
                y = final['x']
            else:
                *_, (_, y, tokens, _) = net._encode(x)
            y.pow(2).mean().backward()
            outs.append(y)
        theirs, y = outs
        grads = dict(model.named_parameters())
        rel, worst = 0., None
        for key, p in official.named_parameters():
            if p.grad is None:
                continue
            g = grads[timm_vit_key(key, SPVIT_LAYERS)].grad
            diff = ((p.grad - g).abs().max() /
                    p.grad.abs().max().clamp(min=1e-12)).item()
            if diff > rel:
                rel, worst = diff, key
        print(f'SPViT training path, B={args.batch}, seed {args.seed}: '
              f'{y.shape[1]} tokens; largest |official - ours| '
              f'{(theirs - y).abs().max().item():.2e} (class token '
              f'{(theirs[:, 0] - y[:, 0]).abs().max().item():.2e}, packages '
              f'{(theirs[:, -3:] - y[:, -3:]).abs().max().item():.2e}); '
              f'kept {tokens.policy.sum(1).int().tolist()} of 196; largest '
              f'gradient difference {rel:.2e} of the largest gradient '
              f'({worst})')
        return

    # the same decisions: argmax of the scores, no Gumbel noise either side
    def argmax_softmax(logits, **kwargs):  # F.gumbel_softmax, no noise
        soft = logits.softmax(-1)
        one_hot = torch.zeros_like(soft).scatter_(
            -1, soft.argmax(-1, keepdim=True), 1.)
        return one_hot - soft.detach() + soft

    F.gumbel_softmax = argmax_softmax
    gumbel._sample_exponential = torch.ones_like
    spvit.file = osp.join(tempfile.mkdtemp(), 'scores.json')  # eval writes
    torch.Tensor.cuda = lambda self, *a, **k: self  # its eval calls .cuda()
    official.eval()
    model.eval()
    with torch.no_grad():
        for b in range(args.batch):
            xb = x[b:b + 1]
            # centre each selector's keep margin on this image, stage by
            # stage, so that argmax decisions keep about half
            for k, selector in enumerate(official.score_predictor):
                got = []
                hook = selector.register_forward_hook(
                    lambda m, i, o: got.append(o[0]))
                official(xb)
                hook.remove()
                margin = got[0][0, :, 0] - got[0][0, :, 1]
                bias = selector.out_conv[0][4].bias
                bias[0] -= margin.median() - 1e-3
                model.layers[SPVIT_LAYERS[k]].reducer.selector.out_conv[0][
                    4].bias.copy_(bias)
            official(xb)
            theirs = final['x']
            *_, (_, y, tokens, _) = model._encode(xb)
            N = tokens.num_tokens
            kept = theirs[0, 1 + tokens.anchor[0]]
            print(f'SPViT inference path, image {b}: kept {N} of 196; '
                  f'largest |official - ours|: class token '
                  f'{(theirs[0, 0] - y[0, 0]).abs().max().item():.2e}, kept '
                  f'tokens {(kept - y[0, 1:1 + N]).abs().max().item():.2e}, '
                  'packages '
                  f'{(theirs[0, -3:] - y[0, -3:]).abs().max().item():.2e}')


def main(argv=None):
    args = parse_args(argv)
    (compare_tome if args.method == 'tome' else compare_spvit)(args)


if __name__ == '__main__':
    main()
