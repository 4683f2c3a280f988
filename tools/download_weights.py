"""Download the authors' released Hire-MLP ImageNet-1K weights into torch.hub's cache.

    python tools/download_weights.py small            # tiny, small, base or all
    python tools/download_weights.py URL              # any http(s) checkpoint, e.g. a baseline's

The configs name these files by URL, and a run reads them from the cache
($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints) without going online.
For compute nodes without network: run this where there is network, with the same home (or
TORCH_HOME), or copy the printed files into that folder on the nodes. Each file is checked with
the same safe loader as a training run before it is kept.
"""
import argparse
import os.path as osp
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('weights', nargs='+', metavar='WHICH',
                        help="'tiny', 'small', 'base', 'all', or an http(s) URL")
    args = parser.parse_args(argv)
    from mmhire.checkpoint import RELEASED_URLS, cache_path, download, is_url
    from mmhire.errors import MMHireError
    urls = []
    for which in args.weights:
        if which == 'all':
            urls += RELEASED_URLS.values()
        elif which in RELEASED_URLS or is_url(which):
            urls.append(RELEASED_URLS.get(which, which))
        else:
            parser.error(f"unknown weights {which!r}: give tiny, small, base, all or a URL")
    for url in dict.fromkeys(urls):
        cached = osp.isfile(cache_path(url))
        try:
            path = download(url)
        except MMHireError as e:
            sys.exit(f'error: {e}')
        print(f"{path}  ({'already in the cache' if cached else 'downloaded'}: {url})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
