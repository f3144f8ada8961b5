"""Train a model from an mmseg or mmpretrain config with mmengine's Runner.

Examples:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch
"""
import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.utils.launch import (base_parser, build_runner,
                                       config_from_args, enable_amp,
                                       finish_distributed, set_resume)


def main(argv=None):
    """Parse ``argv``, train, and return the Runner."""
    parser = base_parser('Train a model with mmengine Runner')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision (needs a GPU)')
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if args.amp:
        enable_amp(cfg)
    set_resume(cfg, args.resume)
    runner = build_runner(cfg)
    runner.train()
    finish_distributed()
    return runner


if __name__ == '__main__':
    main()
