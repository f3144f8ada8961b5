"""Extract the shared CIFAR-10 JPEG archive for the cifar10 configs.

Examples:
    python tools/prepare_cifar10.py  # -> data/cifar10/{train,test}/<class>/

The data stays outside git (``data/`` is ignored); never commit it.
"""
import argparse
import os.path as osp
import tarfile

DEFAULT_ARCHIVE = '../shared/data/cifar10/cifar10-jpeg.tar.gz'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--archive', default=DEFAULT_ARCHIVE)
    parser.add_argument('--out', default='data/cifar10')
    args = parser.parse_args(argv)
    if osp.isdir(osp.join(args.out, 'train')):
        print(f'{args.out} already holds train/; nothing to do')
        return
    if not osp.isfile(args.archive):
        raise SystemExit(f'archive not found: {args.archive} (--archive)')
    with tarfile.open(args.archive) as tar:
        tar.extractall(args.out, filter='data')
    print(f'extracted {args.archive} to {args.out}')


if __name__ == '__main__':
    main()
