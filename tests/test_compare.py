"""mmhire.analysis.compare and .peers: size parsing, the peers' registry and its errors, the
flexibility and cost checks on small variants, and the report files."""
import json
import os

import pytest
import torch

from mmhire.analysis import compare, peers
from mmhire.errors import CompareError


def test_parse_size():
    assert compare.parse_size('800x1216') == (800, 1216)
    assert compare.parse_size(' 61X45') == (61, 45)
    for bad in ('800', '800by1216', '0x5', '-3x4', 'axb', '1x2x3'):
        with pytest.raises(CompareError, match='write HxW'):
            compare.parse_size(bad)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(CompareError, match="unknown backbone.*'resnet51'.*known: hire_t, hire_s"):
        peers.check_names(['hire_t', 'resnet51'])


def test_every_peer_declares_its_outputs():
    for name, peer in peers.PEERS.items():
        assert len(peer.channels) == (4 if peer.pyramid else 1), name
        assert len(peer.small_channels) == len(peer.channels), name


@pytest.mark.parametrize('name', [n for n, p in peers.PEERS.items() if p.pyramid])
def test_small_variants_give_the_declared_pyramid(name):
    model = peers.build_backbone(name, small=True)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == list(peers.out_channels(name, small=True))
    assert [o.shape[2] for o in outs] == [16, 8, 4, 2]  # strides 4, 8, 16, 32


def test_mlp_mixer_is_built_for_one_size():
    cfg = peers.backbone_cfg('mlp_mixer', small=True, img_size=(800, 1216))
    assert cfg['img_size'] == (800, 1216) and cfg['type'] == 'MlpMixer'
    assert peers.backbone_cfg('mlp_mixer')['img_size'] == (224, 224)
    assert peers.backbone_cfg('resnet18', scope='mmseg')['type'] == 'mmdet.ResNet'
    assert peers.backbone_cfg('hire_t', scope='mmseg')['type'] == 'HireMLP'


def test_a_failing_peer_is_a_cell_not_a_crash():
    result = compare.flexibility(['pvtv2_b0', 'mlp_mixer'], [(16, 16)], contexts=['backbone'],
                                 small=True, log=lambda line: None)
    # PVTv2's 7x7 stride-4 patch embedding, then a 3x3 stride-2 one, cannot take 16x16
    assert result['pvtv2_b0']['backbone']['16x16'].startswith('RuntimeError: ')
    assert result['mlp_mixer']['backbone']['16x16'] != 'ok'


def test_cost_and_report_files(tmp_path):
    costs = compare.cost(['hire_t', 'mlp_mixer'], (64, 96), scaling=(32, 64), small=True,
                         warmup=0, repeats=1, log=lambda line: None)
    hire = costs['hire_t']
    assert hire['params_m'] > 0 and hire['gmacs'] > 0 and hire['latency_ms'] > 0
    assert hire['scaling']['64x64']['gmacs'] > 3.5 * hire['scaling']['32x32']['gmacs']
    assert set(costs['mlp_mixer']) >= {'scaling'}
    flex = {'hire_t': {'backbone': {'64x96': 'ok'}, 'retinanet': {'64x96': 'ok'}}}
    report = compare.build_report(['hire_t', 'mlp_mixer'], flex, costs,
                                  meta=dict(date='2026-12-01', command='test'))
    out = tmp_path / 'report'
    paths = compare.write_report(report, str(out))
    data = json.loads(open(paths['report.json']).read())
    assert set(data['backbones']) == {'hire_t', 'mlp_mixer'}
    entry = data['backbones']['hire_t']
    assert entry['sizes'] == {'64x96': 'ok'} and entry['sizes_in'] == {'retinanet': {'64x96': 'ok'}}
    assert {'params_m', 'gmacs', 'latency_ms'} <= set(entry)
    text = open(paths['report.md']).read()
    assert '| HireMLP-T | ok |' in text and 'latency (ms) against resolution' in text
    assert sorted(f for f in os.listdir(out) if f.endswith('.png')) == [
        'latency_vs_resolution.png', 'macs_vs_resolution.png']
    # an earlier report is never overwritten
    before = open(paths['report.json']).read()
    with pytest.raises(CompareError, match='already holds a report'):
        compare.write_report(report, str(out))
    assert open(paths['report.json']).read() == before


def test_plots_line_only_when_there_are_plots():
    report = compare.build_report(['hire_t'], {'hire_t': {'backbone': {'64x96': 'ok'}}}, meta={})
    text = compare.report_markdown(report)
    assert '| HireMLP-T | ok |' in text and 'Plots' not in text
    report['meta']['plots'] = ['latency_vs_resolution.png']
    assert 'Plots: `latency_vs_resolution.png`' in compare.report_markdown(report)
