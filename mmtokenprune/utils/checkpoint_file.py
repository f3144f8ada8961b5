"""Refuse a checkpoint file that cannot be one, naming it and its key.

torch's own errors for a bad file name neither the file nor where it came
from ("PytorchStreamReader failed reading zip archive", or "Weights only
load failed ... Re-running torch.load with weights_only=False will likely
succeed", wrong for a file that is not a checkpoint at all). The tools call
:func:`check_checkpoint_file` on every checkpoint a user names, before a
model or Runner reads it. The check reads the file's first bytes and a zip
archive's directory only, never the tensors.
"""
import os.path as osp
import zipfile

__all__ = ['check_checkpoint_file']

_PICKLE_PROTO = b'\x80'  # torch's legacy (pre-1.6) format is a pickle


def check_checkpoint_file(path: str, key: str) -> None:
    """Raise unless ``path`` exists and looks like a torch checkpoint.

    A torch checkpoint is a zip archive with a ``data.pkl`` record (torch
    >= 1.6) or a pickle (the legacy format). Remote paths (``s3://``,
    ``https://`` ...) are left to mmengine's loaders.

    Args:
        path (str): the checkpoint file.
        key (str): where it was given, for the message (a config key such as
            ``load_from``, or a command-line argument such as
            ``the CHECKPOINT argument``).

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if it is neither a torch zip checkpoint nor a pickle
            (truncated, a zip of something else, or another kind of file).
    """
    if '://' in str(path):
        return
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint file {path!r} ({key}) does not exist.')
    with open(path, 'rb') as f:
        head = f.read(4)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError(f'checkpoint file {path!r} ({key}) is a damaged '
                             f'zip archive ({err}).') from err
        if not any(n == 'data.pkl' or n.endswith('/data.pkl')
                   for n in names):
            raise ValueError(
                f'checkpoint file {path!r} ({key}) is a zip archive but not '
                'a torch checkpoint (it has no data.pkl record).')
        return
    if head.startswith(_PICKLE_PROTO):
        return
    size = osp.getsize(path)
    why = ('a zip archive cut short: the file is truncated (an interrupted '
           'download or save?)' if head.startswith(b'PK') else
           'neither a zip archive nor a pickle')
    raise ValueError(f'checkpoint file {path!r} ({key}; {size} bytes) is '
                     f'not a torch checkpoint: {why}.')
