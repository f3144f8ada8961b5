"""Train a model from an mmseg or mmpretrain config with mmengine's Runner.

Examples:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch
"""
import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.utils.checkpoint_file import check_checkpoint_file
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
    try:
        cfg = config_from_args(args)
    except (FileNotFoundError, SyntaxError) as err:  # they name the file
        parser.error(str(err))
    if args.amp:
        enable_amp(cfg)
    set_resume(cfg, args.resume)
    if cfg.get('load_from', None):
        key = ('`--resume`' if args.resume not in (None, 'auto') else
               '`load_from`')
        try:
            check_checkpoint_file(cfg.load_from, key)
        except (OSError, ValueError) as err:
            parser.error(str(err))
    runner = build_runner(cfg)
    runner.train()
    finish_distributed()
    return runner


if __name__ == '__main__':
    main()
