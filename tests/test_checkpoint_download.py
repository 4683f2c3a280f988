"""Checkpoints by URL: torch.hub's cache, the same safe loader, and every failing download.

A local HTTP server on 127.0.0.1, started here, serves checkpoints made here and counts the
requests; TORCH_HOME points into tmp_path, so the user's cache is never touched.
"""
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from config_helpers import ROOT, demo_coco_options
from conftest import TINY_ARCH, save_code_running_checkpoint
from mmengine.config import Config
from reference_hire_mlp import RefHireMLP, randomize_

import mmhire.checkpoint as checkpoint
from mmhire import HireMLP
from mmhire.apis import check_pretrained
from mmhire.checkpoint import CheckpointError, cache_path, download, load_checkpoint_file
from mmhire.models.backbones.convnext import ConvNeXt
from mmhire.models.backbones.mlp_mixer import MlpMixer


class Server:
    """``routes``: path -> bytes (served whole), or a callable taking the handler."""

    def __init__(self):
        self.routes, self.requests = {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                elif callable(route):
                    route(self)
                else:
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def serve(self, path, body):
        self.routes[path] = body
        return self.url + path


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)  # in case something called set_dir()
    return tmp_path / 'torch_home'


def cached_files(torch_home):
    folder = torch_home / 'hub' / 'checkpoints'
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture(scope='module')
def released_bytes(tmp_path_factory):
    """A stand-in for hire_mlp_tiny.pth: the released layout of the reference classifier."""
    state = randomize_(RefHireMLP(TINY_ARCH['depths'], TINY_ARCH['embed_dims'])).state_dict()
    path = tmp_path_factory.mktemp('released') / 'hire_mlp_tiny.pth'
    torch.save({'model': state, 'epoch': 299}, path)
    return path.read_bytes()


def hire(checkpoint_path):
    model = HireMLP(arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=checkpoint_path))
    model.init_weights()
    return model.state_dict()


def test_url_loads_the_same_weights_as_the_file_and_the_second_run_reads_the_cache(
        server, released_bytes, tmp_path, torch_home):
    url = server.serve('/log/hire_mlp_tiny.pth', released_bytes)
    local = tmp_path / 'hire_mlp_tiny.pth'
    local.write_bytes(released_bytes)
    expected = hire(str(local))
    got = hire(url)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert cache_path(url) == str(torch_home / 'hub' / 'checkpoints' / 'hire_mlp_tiny.pth')
    assert open(cache_path(url), 'rb').read() == released_bytes
    assert cached_files(torch_home) == ['hire_mlp_tiny.pth']  # no temporary file left
    hire(url)  # a second build, as a second run: from the cache
    assert server.requests == ['/log/hire_mlp_tiny.pth']


@pytest.mark.parametrize('cls, arch', [
    (ConvNeXt, dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])),
    (MlpMixer, dict(embed_dims=32, num_layers=2, tokens_mlp_dims=16, channels_mlp_dims=64))])
def test_mmengine_backbones_load_urls_through_the_same_loader(cls, arch, server, tmp_path):
    """ConvNeXt and MLP-Mixer load through mmengine, whose http(s) loader mmhire replaces: an
    mmpretrain-layout file loads, and a file with pickled code is refused and never run."""
    torch.manual_seed(1)
    state = cls(arch=arch).state_dict()
    body = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in state.items()}}, body)
    url = server.serve('/mmpretrain.pth', body.read_bytes())
    torch.manual_seed(2)
    model = cls(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=url, prefix='backbone.'))
    model.init_weights()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    marker, evil = tmp_path / 'pwned', tmp_path / 'evil.pth'
    save_code_running_checkpoint(evil, marker, {'state_dict': {}})
    url = server.serve('/evil.pth', evil.read_bytes())
    with pytest.raises(CheckpointError, match='refusing to load'):
        cls(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=url)).init_weights()
    assert not marker.exists()


def truncated(body):
    def send(handler):  # announces the whole file, sends half, hangs up
        handler.send_response(200)
        handler.send_header('Content-Length', str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:len(body) // 2])
        handler.close_connection = True
    return send


def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


BAD = {  # case -> (what the server does, what the one-line error says)
    '404': (None, r'cannot download http://127\.0\.0\.1:\d+/x\.pth: the server answered HTTP 404'),
    'truncated': ('truncated', r"'http://127.*/x\.pth' is truncated or corrupted"),
    'html': (b'<!DOCTYPE html>\n<html><body>Sign in</body></html>\n', 'is an HTML page'),
    'evil': ('evil', 'refusing to load .*could run code'),
    'scheme': (None, r"cannot download 'ftp://.*mmhire downloads http:// and https://"),
    'offline': (None, r'cannot download http://127\.0\.0\.1:\d+/x\.pth \(Connection refused; '
                      'no network'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_downloads_are_one_line_and_leave_the_cache_clean(case, server, released_bytes,
                                                              tmp_path, torch_home):
    body, message = BAD[case]
    marker = tmp_path / 'pwned'
    if body == 'truncated':
        body = truncated(released_bytes)
    elif body == 'evil':
        save_code_running_checkpoint(tmp_path / 'evil.pth', marker, {'model': {}})
        body = (tmp_path / 'evil.pth').read_bytes()
    url = server.serve('/x.pth', body) if body is not None else server.url + '/x.pth'
    if case == 'scheme':
        url = 'ftp://127.0.0.1/x.pth'
    elif case == 'offline':
        url = f'http://127.0.0.1:{closed_port()}/x.pth'
    for attempt in (lambda: hire(url), lambda: check_pretrained(Config(dict(model=dict(
            backbone=dict(type='HireMLP', init_cfg=dict(type='Pretrained', checkpoint=url))))))):
        with pytest.raises(CheckpointError, match=message) as e:
            attempt()
        assert '\n' not in str(e.value) and e.value.__cause__ is None
        assert cached_files(torch_home) == []  # no partial, no evil, no error page
    assert not marker.exists()
    if case in ('404', 'offline'):  # the error names the cache path and the manual fix
        assert f'save it as {cache_path(url)}' in str(e.value)
        assert 'model.backbone.init_cfg.checkpoint=PATH' in str(e.value)


def test_a_server_that_does_not_answer_fails_within_the_timeout(server):
    url = server.serve('/slow.pth', lambda handler: time.sleep(5))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r'no answer within 0\.5 s'):
        download(url, timeout=0.5)
    assert time.perf_counter() - start < 4


def test_a_cache_that_cannot_be_written_is_one_line(server, released_bytes, torch_home):
    url = server.serve('/hire_mlp_tiny.pth', released_bytes)
    torch_home.write_text('a file where the cache folder should be')
    with pytest.raises(CheckpointError, match=r'cannot download .* into .*: set TORCH_HOME'):
        download(url)
    assert server.requests == []


def test_a_broken_file_in_the_cache_is_named_and_kept(server, torch_home):
    """Not ours to delete: the error says what it is and how to download again."""
    url = server.serve('/hire_mlp_tiny.pth', b'not a checkpoint')
    os.makedirs(osp.dirname(cache_path(url)))
    with open(cache_path(url), 'wb') as f:
        f.write(b'garbage')
    with pytest.raises(CheckpointError, match=r'cached download of http.*delete it to download'):
        load_checkpoint_file(url)
    assert open(cache_path(url), 'rb').read() == b'garbage' and server.requests == []


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'download_weights', osp.join(ROOT, 'tools', 'download_weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_download_weights_tool(server, released_bytes, monkeypatch, capsys, torch_home):
    urls = {arch: server.serve(f'/log/hire_mlp_{arch}.pth', released_bytes)
            for arch in ('tiny', 'small', 'base')}
    monkeypatch.setattr(checkpoint, 'RELEASED_URLS', urls)
    tool = load_tool()
    assert tool.main(['small']) == 0
    assert f'{cache_path(urls["small"])}  (downloaded' in capsys.readouterr().out
    assert tool.main(['all']) == 0
    out = capsys.readouterr().out
    assert f'{cache_path(urls["small"])}  (already in the cache' in out
    assert cached_files(torch_home) == ['hire_mlp_base.pth', 'hire_mlp_small.pth',
                                        'hire_mlp_tiny.pth']
    assert sorted(server.requests) == sorted(f'/log/hire_mlp_{a}.pth' for a in urls)
    with pytest.raises(SystemExit, match='error: cannot download .*HTTP 404'):
        tool.main([server.url + '/missing.pth'])
    with pytest.raises(SystemExit):
        tool.main(['huge'])
    assert "unknown weights 'huge'" in capsys.readouterr().err


def test_train_stops_before_the_data_on_a_failing_download(demo_data, server, torch_home):
    """tools/train.py: the preflight check downloads, and a failure is one line, no traceback."""
    env = dict(os.environ, TORCH_HOME=str(torch_home), PYTHONWARNINGS='ignore')
    out = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/maskrcnn_hire_t_fpn_1x_coco.py',
         '--work-dir', str(torch_home / 'work'), '--cfg-options',
         f'model.backbone.init_cfg.checkpoint={server.url}/hire_mlp_tiny.pth',
         *demo_coco_options(demo_data)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and 'the server answered HTTP 404' in lines[0], out.stderr[-3000:]
    assert server.requests == ['/hire_mlp_tiny.pth']


def test_the_suite_cannot_reach_the_internet(torch_home):
    """conftest.py's guard: the configs' real URL fails at once, as on an offline node."""
    with pytest.raises(ConnectionRefusedError, match='must not connect to 93.184.216.34'):
        socket.create_connection(('93.184.216.34', 443), timeout=1)
    url = checkpoint.RELEASED_URLS['small']
    with pytest.raises(CheckpointError, match=f'cannot download {url} .*no network.* save it as '
                                              f'{cache_path(url)}'):
        load_checkpoint_file(url)
    assert cached_files(torch_home) == []
